# Double-forks a setsid daemon that outlives the program, tries to leave a file behind and act later.
# argv: marker. The daemon re-executes itself with the marker in its argv so the test can look for it.
import os
import sys
import time

marker = sys.argv[1]
if len(sys.argv) > 2:  # the daemon itself
    for _ in range(50):
        for path in (f"/tmp/{marker}", f"/box/{marker}", f"/root/{marker}"):
            try:
                with open(path, "w") as f:
                    f.write("still here")
            except OSError:
                pass
        time.sleep(0.1)
    sys.exit(0)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-I", "main.py", marker, "daemon"])
    os._exit(0)
os.wait()
print("parent done")
