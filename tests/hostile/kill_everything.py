# Signals every process it can reach, then its parent, then the pid given in argv[1] (the test's own).
import os
import signal
import sys

try:
    os.kill(-1, signal.SIGKILL)
except OSError as e:
    print("kill(-1):", e.strerror)
for pid in (os.getppid(), int(sys.argv[1])):
    try:
        os.kill(pid, signal.SIGKILL)
        print("signalled", pid)
    except OSError as e:
        print("kill", pid, e.strerror)
print("still alive")
