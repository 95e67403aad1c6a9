# Tries to leave a file (named argv[1]) in host places: /tmp, /work, /root, /home, /usr, /etc and cwd.
import os
import sys

name = sys.argv[1]
for d in ("/tmp", "/work", "/work/main", "/root", "/home", "/usr", "/etc", "/", "/dev/shm", "."):
    try:
        with open(os.path.join(d, name), "w") as f:
            f.write("escaped?")
        print("wrote", d)
    except OSError as e:
        print("denied", d, e.strerror)
