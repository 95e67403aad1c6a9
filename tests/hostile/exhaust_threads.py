# Starts threads until the process limit refuses one; reports the count.
import threading
import time

n = 0
try:
    while n < 10000:
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        n += 1
except RuntimeError:
    pass
print(n)
