# Forks without end; every child forks too. Must hit the process limit, not the host.
import os

while True:
    try:
        os.fork()
    except OSError:
        pass
