# Starts sleeping children until fork fails and reports how many it got.
import os
import sys

n = 0
try:
    while n < 1000:
        if os.fork() == 0:
            import time
            time.sleep(30)
            os._exit(0)
        n += 1
except OSError as e:
    print(f"fork failed after {n}: {e.strerror}", file=sys.stderr)
print(n)
