# Fills the directory in argv[1]: one ever-growing file, then many files. Reports how far it got.
import json
import os
import sys

target = sys.argv[1]
chunk = b"\0" * (1 << 20)
report = {}
try:
    with open(os.path.join(target, "big"), "wb", buffering=0) as f:
        while True:
            f.write(chunk)
except OSError as e:
    report["big_error"] = e.strerror
report["big_bytes"] = os.path.getsize(os.path.join(target, "big"))
total = 0
try:
    for i in range(100000):
        with open(os.path.join(target, f"f{i}"), "wb", buffering=0) as f:
            for _ in range(4):
                total += f.write(chunk)
except OSError as e:
    report["many_error"] = e.strerror
report["many_bytes"] = total
print(json.dumps(report))
