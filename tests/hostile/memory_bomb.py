# Tries to lift its own limits, then allocates and touches memory without end.
import resource

for res in (resource.RLIMIT_AS, resource.RLIMIT_DATA, resource.RLIMIT_RSS):
    try:
        resource.setrlimit(res, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass
hoard = []
while True:
    hoard.append(bytearray(16 << 20))
