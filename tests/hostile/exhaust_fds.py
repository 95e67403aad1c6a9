# Opens files until the descriptor limit refuses one; reports the count.
fds = []
try:
    while len(fds) < 100000:
        fds.append(open("/dev/null"))
except OSError as e:
    print(len(fds), e.strerror)
