# Writes to the stream named in argv[1] forever.
import sys

stream = sys.stdout if sys.argv[1] == "stdout" else sys.stderr
line = "y" * 1023 + "\n"
while True:
    stream.write(line)
