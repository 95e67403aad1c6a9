# Tries to reach a TCP service on the host's loopback (port in argv[1]) and any outside address.
import socket
import sys

for host in ("127.0.0.1", "localhost", "10.0.0.1", "8.8.8.8"):
    try:
        socket.create_connection((host, int(sys.argv[1])), timeout=1).close()
        print("CONNECTED", host)
    except OSError as e:
        print("refused", host, e.strerror)
