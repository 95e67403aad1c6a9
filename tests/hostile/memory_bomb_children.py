# Each child stays under the per-process address-space limit; together they exceed the session's memory.
import os
import time

for _ in range(4):
    if os.fork() == 0:
        block = bytearray(150 << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(2)
        os._exit(0)
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    if os.WIFSIGNALED(status):
        os.kill(os.getpid(), os.WTERMSIG(status))
