"""PID 1 of every sandbox session (RUNS INSIDE THE SANDBOX; standard library only).

Every backend starts this file as the only program of a session: bubblewrap
as PID 1 of a fresh set of namespaces (``process``), a hardened container's
command (``docker``), or a plain child process (``unsafe``). The host then
sends requests; each answer carries only **raw facts** (wait status, CPU and
wall time, peak RSS, whether the wall clock or the host stopped it). The host
classifies them (``sandbox/verdict.py``): nothing here decides ``ok`` or
``timeout``.

Requests (JSON objects; ``op`` picks one):
- ``put``: files into the work dir (the session's, kept until ``reset``).
- ``exec``: one program: an argv to ``execve``, or Python source run as
  ``__main__`` of a fork of this already-warm interpreter (no exec, ~1 ms).
  Descriptors 0-2 (and optional 3, 4) are the host's pipes.
- ``pair``: two programs joined by a socket on descriptor 3 of each: a
  *judge* (trusted code: forked from us, so it inherits our "not dumpable",
  and fed its input through a descriptor only it holds) and a *candidate*
  (made dumpable and the OOM killer's first choice, like every program). The
  judge's descriptor 1 is its report; the candidate can neither read nor
  write it, nor ptrace the judge or open its ``/proc`` entries.
- ``reset``: end of a scored item: kill everything but us, wipe the work dir
  and scratch areas and SysV IPC, say whether that left the session clean.
After each ``exec``/``pair`` every other process is killed and the scratch
areas (not the work dir) are wiped before the answer's ``clean`` report.

Transports: ``fds`` (SOCK_SEQPACKET on an inherited descriptor; pipes and
file memfds ride along as SCM_RIGHTS, so program data never passes through
this process) and ``stream`` (4-byte length + JSON on stdin/stdout, data in
base64; the docker backend, whose attach stream can't carry descriptors).

Being PID 1 of its pid namespace (``process``, ``docker``) no program can
kill or stop it; not dumpable, none can ptrace it or read its memory or
descriptors. ``unsafe`` is none of that and cleans up by process group.
"""
import base64
import ctypes
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import struct
import sys
import time

PR_SET_DUMPABLE = 4
M_PERTURB = -6
_libc = ctypes.CDLL(None, use_errno=True)

# Imported once per session so forked runs get them for free: what the code task's in-sandbox
# programs import and what short programs commonly import.
PRELOAD = ("marshal", "resource", "select", "_json", "_signal", "_ctypes", "subprocess", "tempfile",
           "types", "atexit", "traceback", "base64",
           "math", "collections", "itertools", "functools", "heapq", "bisect", "string", "re",
           "typing", "random", "copy", "operator", "json", "fractions", "decimal", "datetime",
           "statistics", "dataclasses", "enum", "array", "struct", "hashlib", "threading")

CONTAINED = True  # PID 1 of our own pid namespace; False for the unsafe backend
# RLIMIT_NPROC counts a uid's processes in its user namespace: ours alone under bwrap, but every
# container's under docker (no user namespace), where the container's pids cgroup bounds them.
NPROC_LIMIT = True
WORK = "/box"
SCRATCH = ("/tmp", "/dev/shm")
MAX_FDS_PER_MESSAGE = 60
GRACE_S = 0.2  # after the main process ends, how long leftover writers may hold its pipes


# ---------------------------------------------------------------- cleanup

def _others():
    me = str(os.getpid())
    return [p for p in os.listdir("/proc") if p.isdigit() and p != me]


_children = {}  # pid -> process group, for the unsafe backend's cleanup
_exits = {}  # pid -> (wait status, rusage)


def reap():
    """Collect every exited child (as PID 1 we inherit all orphans)."""
    while True:
        try:
            pid, status, rusage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _exits[pid] = (status, rusage)


def kill_everything_else():
    """SIGKILL every other process of the session until none is left; True if that worked."""
    if not CONTAINED:
        for pid in list(_children):
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for attempt in range(100):
            reap()
            if all(p in _exits for p in _children):
                _children.clear()
                _exits.clear()
                return True
            time.sleep(0.002)
        return False
    for attempt in range(200):
        reap()
        if not _others():
            _exits.clear()
            _children.clear()
            return True
        try:
            os.kill(-1, signal.SIGKILL)  # from PID 1: everyone else in the namespace
        except OSError:
            pass
        time.sleep(min(0.001 * attempt, 0.02))
    return False


def remove_sysv_ipc():
    """Shared memory, semaphores and message queues outlive processes: drop them all."""
    if not CONTAINED:
        return True
    for table, remove in (("shm", lambda i: _libc.shmctl(i, 0, None)),
                          ("sem", lambda i: _libc.semctl(i, 0, 0)),
                          ("msg", lambda i: _libc.msgctl(i, 0, None))):
        try:
            with open("/proc/sysvipc/" + table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            remove(int(row.split()[1]))
        try:
            with open("/proc/sysvipc/" + table) as f:
                if f.read().splitlines()[1:]:
                    return False
        except OSError:
            pass
    return True


def _unlock(top):
    """Give every directory under top back its owner's rwx (programs chmod 000 to jam cleanup)."""
    stack = [top]
    while stack:
        path = stack.pop()
        try:
            os.chmod(path, 0o700)
            with os.scandir(path) as entries:
                stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
        except OSError:
            pass


def wipe(root):
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    for name in names:
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            _unlock(path)
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass
    try:
        return not os.listdir(root)
    except OSError:
        return True


_modes = {}
RESET_MODES = True  # bwrap sessions own their scratch roots; a container's /dev/mqueue is not ours


def reset_dir(path):
    """A root back to how the session started: its mode, no extended attributes."""
    if not RESET_MODES:
        return True
    try:
        os.chmod(path, _modes.get(path, 0o755))
        for name in os.listxattr(path):
            os.removexattr(path, name)
        return not os.listxattr(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False


def tidy(roots):
    """Every other process gone and ``roots`` emptied; True when the session is provably clean."""
    clean = kill_everything_else()
    for root in roots:
        clean = reset_dir(root) and wipe(root) and clean
    clean = remove_sysv_ipc() and clean
    return bool(clean and kill_everything_else())


def _read_counter(paths, key):
    """One counter from a cgroup v1 or v2 events file, or None if unreadable."""
    for path in paths:
        try:
            with open(path) as f:
                for line in f:
                    name, _, value = line.partition(" ")
                    if name == key:
                        return int(value)
        except OSError:
            continue
    return None


def _limit_counters():
    """(OOM kills, refused forks) of our container's cgroup, where we can read them (docker)."""
    return (_read_counter(("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"), "oom_kill"),
            _read_counter(("/sys/fs/cgroup/pids/pids.events", "/sys/fs/cgroup/pids.events"), "max"))


def _limits_hit(before):
    after = _limit_counters()
    hit = [b is not None and a is not None and a > b for b, a in zip(before, after)]
    return {"oom_killed": hit[0], "pid_limit_hit": hit[1]}


# ---------------------------------------------------------------- child side

_NOT_DEFAULT = []  # signals whose disposition in this process isn't SIG_DFL (found once, at start)


def _find_changed_signals():
    """Every signal we (or whoever started us) gave a disposition: what a child must reset. Found
    once so a run resets a handful, not all 64 (a third of a millisecond per run)."""
    out = []
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            if signal.getsignal(sig) is not signal.SIG_DFL:
                out.append(sig)
        except (OSError, ValueError):
            pass
    _NOT_DEFAULT[:] = out


def _child_signals():
    """What a fresh program starts with: default dispositions, nothing blocked."""
    signal.set_wakeup_fd(-1)
    for sig in _NOT_DEFAULT:
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _python_signals():
    """A fresh interpreter's: SIGINT raises, SIGPIPE and SIGXFSZ ignored."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


_HARD = {}  # resource -> the session's hard limit, inherited by every child


def _set_limits(lim):
    cpu = max(1, int(lim["cpu_time_s"] + 0.999))
    pairs = [(resource.RLIMIT_CPU, (cpu, cpu + 1)),
             (resource.RLIMIT_FSIZE, (lim["file_size_mb"] << 20,) * 2),
             (resource.RLIMIT_NOFILE, (lim["nofile"],) * 2),
             (resource.RLIMIT_CORE, (0, 0))]
    if lim.get("memory_mb"):  # None: the cgroup (and the runtime's own flag) bound memory
        pairs.append((resource.RLIMIT_AS, (lim["memory_mb"] << 20,) * 2))
    if CONTAINED:
        pairs += [(resource.RLIMIT_MEMLOCK, (0, 0)), (resource.RLIMIT_MSGQUEUE, (0, 0))]
    if NPROC_LIMIT:
        pairs.append((resource.RLIMIT_NPROC, (lim["nproc"],) * 2))
    if lim.get("stack_mb"):
        pairs.append((resource.RLIMIT_STACK, (lim["stack_mb"] << 20,) * 2))
    for res, value in pairs:
        hard = _HARD.get(res)
        if hard is None:
            hard = _HARD[res] = resource.getrlimit(res)[1]  # the session's, fixed: read once
        if hard != resource.RLIM_INFINITY and value[1] > hard:
            value = (min(value[0], hard), hard)
        resource.setrlimit(res, value)


def _become(spec, fds, judge):
    """In a forked child: become the program ``spec`` describes. Never returns.

    ``fds``: target descriptor -> our descriptor. Only those survive."""
    try:
        os.setsid()
        _child_signals()
        targets = sorted(fds)
        # Move sources out of the target range first, so dup2 never clobbers one still needed.
        moved = {t: os.dup(fds[t]) for t in targets}
        for t in targets:
            os.dup2(moved[t], t, inheritable=True)
        top = max(targets) if targets else -1
        for fd in range(top + 1):  # the few low descriptors that are not the run's
            if fd not in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        os.closerange(top + 1, 1 << 20)  # close_range(2): everything above, in one call
        os.chdir(spec.get("cwd") or WORK)
        _set_limits(spec["limits"])
        if not judge:
            # Our "not dumpable" makes /proc/self root-owned; the program gets a normal one.
            # A judge keeps it: the candidate beside it must not reach into it.
            _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
            try:
                with open("/proc/self/oom_score_adj", "w") as f:
                    f.write("1000")  # the program, never the supervisor or a judge, dies first
            except OSError:
                pass
        os.environ.clear()
        os.environ.update(spec.get("env") or {})
        if spec.get("argv") is not None and not spec.get("python"):
            try:
                os.execvpe(spec["argv"][0], spec["argv"], dict(os.environ))
            except OSError as e:
                os.write(2, ("cannot run %s: %s\n" % (spec["argv"][0], e.strerror)).encode())
                os._exit(127)
        source = _python_source(spec)
    except BaseException as e:  # noqa: BLE001
        try:
            os.write(2, ("sandbox supervisor: run setup failed: %s: %s\n" % (type(e).__name__, e)).encode())
        finally:
            os._exit(125)
    _run_python(source, spec)


CODE_HEADER = b"RSCODE1\n"  # then our bytecode magic, an 8-byte length, marshal data, and the source


def _python_source(spec):
    """The program's source, or its code object when the host sent one compiled by a Python
    with our bytecode magic (saves compiling it in every run)."""
    py = spec["python"]
    if "fd" in py:  # a memfd only this child holds (a judge's program never lies in the work dir)
        fd = py["fd"]
        os.lseek(fd, 0, os.SEEK_SET)
        data = b""
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            data += chunk
        os.close(fd)
    else:
        with open(py["path"], "rb") as f:
            data = f.read()
    if data.startswith(CODE_HEADER):
        import marshal
        magic = sys.modules["_frozen_importlib_external"].MAGIC_NUMBER
        head = len(CODE_HEADER)
        size = int.from_bytes(data[head + 4:head + 12], "big")
        if data[head:head + 4] == magic:
            return marshal.loads(data[head + 12:head + 12 + size])
        return data[head + 12 + size:]
    return data


def _run_python(source, spec):
    """Run ``source`` as ``__main__`` the way ``python3 -I`` would, then exit like it."""
    import builtins
    import types
    _python_signals()
    path = spec["python"].get("path") or spec["python"].get("name") or "main.py"
    sys.argv = [path] + list(spec.get("argv") or [])
    path = os.path.join(os.getcwd(), path)  # as python3 -I main.py names it in tracebacks
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__cached__ = None
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    sys.stdin = sys.__stdin__ = _stream(0, "rb", "surrogateescape")
    sys.stdout = sys.__stdout__ = _stream(1, "wb", "surrogateescape")
    sys.stderr = sys.__stderr__ = _stream(2, "wb", "backslashreplace", line_buffering=True)
    _ORIGINAL_STREAMS[:] = [sys.stdout, sys.stderr]
    # The program starts this many frames deeper than in a fresh interpreter: it gets them back.
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    del frame
    sys.setrecursionlimit(sys.getrecursionlimit() + depth)
    status, interrupted = 0, False
    try:
        exec(source if isinstance(source, types.CodeType) else compile(source, path, "exec"), main.__dict__)
    except SystemExit as e:
        status = _exit_status_of(e)
    except BaseException as e:  # noqa: BLE001 - reported like the interpreter does
        interrupted = isinstance(e, KeyboardInterrupt)
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
        e.__traceback__ = tb
        try:
            sys.excepthook(type(e), e, tb)
        except BaseException:  # noqa: BLE001
            pass
        status = 1
    status = _finalize(status)
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status)


def _stream(fd, mode, errors, line_buffering=False):
    import io
    try:
        raw = io.open(fd, mode, closefd=False)
    except OSError:
        raw = io.open(os.open(os.devnull, os.O_RDWR), mode)
    return io.TextIOWrapper(raw, encoding="utf-8", errors=errors, newline="\n", line_buffering=line_buffering)


def _exit_status_of(exc):
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(str(code) + "\n")
    except Exception:  # noqa: BLE001
        pass
    return 1


_ORIGINAL_STREAMS = []


def _finalize(status):
    """What interpreter shutdown does before exiting: join threads, atexit hooks, flush stdio
    (the streams the program replaced too, as the interpreter flushes ``sys.__stdout__``)."""
    try:
        threading = sys.modules.get("threading")
        if threading is not None:
            threading._shutdown()
        import atexit
        atexit._run_exitfuncs()
    except SystemExit as e:
        status = _exit_status_of(e)
    except BaseException:  # noqa: BLE001
        pass
    seen = set()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__, *_ORIGINAL_STREAMS):
        if stream is None or id(stream) in seen:
            continue
        seen.add(id(stream))
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            if stream is sys.stdout or stream is sys.__stdout__:
                status = 120
    return status


def _fork(spec, fds, judge=False):
    pid = os.fork()
    if pid == 0:
        _become(spec, fds, judge)
    _children[pid] = pid
    return pid


# ---------------------------------------------------------------- waiting

def _facts(pid):
    status, rusage = _exits.get(pid, (None, None))
    return {"wait_status": status,
            "cpu_s": (rusage.ru_utime + rusage.ru_stime) if rusage else None,
            "maxrss_kb": rusage.ru_maxrss if rusage else None}


class _Waiter:
    """Wait for ``main`` (and the other ``pids``) under a wall clock, pumping pipes we own,
    and serving the host's ``kill`` while waiting."""

    def __init__(self, control, wakeup, control_read=None):
        self.control = control  # readable socket for the host's "kill", or None
        self.control_read = control_read  # reads one message from it; None when the host is gone
        self.wakeup = wakeup

    def wait(self, main, pids, wall_s, sinks=None, cap=0, feeds=None):
        """``sinks``: {fd: bytearray} we read; ``feeds``: {fd: memoryview} we write (closed when done).
        Returns (timed_out, killed_by_host, over_output)."""
        sinks = dict(sinks or {})
        feeds = dict(feeds or {})
        sel = selectors.DefaultSelector()
        sel.register(self.wakeup, selectors.EVENT_READ)
        if self.control is not None:
            sel.register(self.control, selectors.EVENT_READ)
        for fd in sinks:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        for fd in feeds:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_WRITE)
        t0 = time.monotonic()
        deadline = t0 + wall_s
        timed_out = host_kill = over = False
        ended_at = None
        try:
            while True:
                reap()
                now = time.monotonic()
                if ended_at is None and main in _exits:
                    ended_at = now
                    for pid in pids:  # the partners of a pair end with the judge
                        if pid != main and pid not in _exits:
                            _kill_tree(pid)
                if ended_at is not None and (not sinks or now - ended_at > GRACE_S) and all(
                        p in _exits for p in pids):
                    break
                if ended_at is None and now >= deadline:
                    timed_out = True
                    for pid in pids:
                        _kill_tree(pid)
                    ended_at = now
                    continue
                wait = GRACE_S / 4 if ended_at is not None else max(0.0, deadline - now)
                for key, _ in sel.select(wait):
                    fd = key.fd
                    if fd == self.wakeup:
                        try:
                            os.read(fd, 4096)
                        except OSError:
                            pass
                    elif self.control is not None and key.fileobj is self.control:
                        if self.control_read() is None:
                            raise EOFError("the host hung up")
                        host_kill = True
                        for pid in pids:
                            _kill_tree(pid)
                        ended_at = ended_at or time.monotonic()
                    elif fd in feeds:
                        try:
                            view = feeds[fd]
                            feeds[fd] = view[os.write(fd, view[:1 << 16]):]
                        except BlockingIOError:
                            continue
                        except OSError:
                            feeds[fd] = b""
                        if not feeds[fd]:
                            sel.unregister(fd)
                            os.close(fd)
                            del feeds[fd]
                    elif fd in sinks:
                        try:
                            chunk = os.read(fd, 1 << 16)
                        except BlockingIOError:
                            continue
                        if not chunk:
                            sel.unregister(fd)
                            del sinks[fd]
                            continue
                        buf = sinks[fd]
                        room = cap - len(buf)
                        buf += chunk[:max(room, 0)]
                        if len(chunk) > room and not over:
                            over = True
                            for pid in pids:
                                _kill_tree(pid)
                            ended_at = ended_at or time.monotonic()
        finally:
            sel.close()
            for fd in feeds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        while not all(p in _exits for p in pids):
            for pid in pids:
                if pid not in _exits:
                    _kill_tree(pid)
            time.sleep(0.001)
            reap()
        return timed_out, host_kill, over, time.monotonic() - t0



def _kill_tree(pid):
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass


# ---------------------------------------------------------------- operations

class Session:
    def __init__(self, waiter):
        self.waiter = waiter

    def put(self, names, sources):
        """``sources``: an fd (memfd) or bytes per name."""
        for name, src in zip(names, sources):
            path = os.path.join(WORK, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o755 if name.endswith(".sh") else 0o644)
            try:
                if isinstance(src, int):
                    os.lseek(src, 0, os.SEEK_SET)
                    size = os.fstat(src).st_size
                    while size > 0:
                        n = os.sendfile(out, src, None, size)
                        if n <= 0:
                            break
                        size -= n
                else:
                    view = memoryview(src)
                    while view:
                        view = view[os.write(out, view):]
            finally:
                os.close(out)

    def exec(self, req, fds, sinks=None, cap=0, feeds=None):
        counters = _limit_counters()
        pid = _fork(req, fds)
        for fd in set(fds.values()):
            _close(fd)
        timed_out, host_kill, over, wall = self.waiter.wait(pid, [pid], req["wall_time_s"], sinks, cap, feeds)
        out = {"main": _facts(pid), "timed_out": timed_out, "killed_by_host": host_kill, "over_output": over,
               "wall_s": wall, **_limits_hit(counters)}
        out["clean"] = tidy(self.after(req))
        return out

    def after(self, req):
        """What to wipe after a run: the scratch areas, and the work dir too when it is the
        session's last (its end-of-session wipe, without another round trip)."""
        return ((WORK,) + SCRATCH) if req.get("then_reset") else SCRATCH

    def pair(self, req, judge_fds, cand_fds, spec_source=None, sinks=None, cap=0):
        """The candidate first (in the stream transport the judge's input has not even reached
        us yet), then the judge."""
        counters = _limit_counters()
        j_end, c_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cand_fds = {**cand_fds, 3: c_end.fileno()}
        cand = _fork(req["candidate"], cand_fds)
        c_end.close()
        for fd in set(cand_fds.values()) - {c_end.fileno()}:
            _close(fd)
        spec_fd = spec_source() if callable(spec_source) else None
        judge_fds = {**judge_fds, 3: j_end.fileno()}
        if spec_fd is not None:
            judge_fds[4] = spec_fd
        judge = _fork(req["judge"], judge_fds, judge=True)
        j_end.close()
        for fd in set(judge_fds.values()) - {j_end.fileno()}:
            _close(fd)
        timed_out, host_kill, over, wall = self.waiter.wait(judge, [judge, cand], req["wall_time_s"], sinks, cap)
        out = {"judge": _facts(judge), "candidate": _facts(cand), "timed_out": timed_out,
               "killed_by_host": host_kill, "over_output": over, "wall_s": wall, **_limits_hit(counters)}
        out["clean"] = tidy(self.after(req))
        return out

    def reset(self):
        return {"clean": tidy((WORK,) + SCRATCH)}


def _close(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def _memfd(data):
    """A read-only descriptor of a memfd holding ``data`` (a program's stdin must not be writable)."""
    fd = os.memfd_create("sandbox-data", 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    ro = os.open("/proc/self/fd/%d" % fd, os.O_RDONLY)
    os.close(fd)
    return ro


def _warm_up():
    import gc
    if "site" not in sys.modules:  # programs expect what site gives python3 -I: exit/quit
        import site as site_module
        site_module.main()
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    gc.collect()
    gc.freeze()  # forked runs then don't copy-on-write every object's GC header


def _wakeup_pipe():
    r, w = os.pipe()
    os.set_blocking(w, False)
    os.set_blocking(r, False)
    signal.set_wakeup_fd(w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    _find_changed_signals()
    for res in (resource.RLIMIT_CPU, resource.RLIMIT_FSIZE, resource.RLIMIT_NOFILE, resource.RLIMIT_CORE,
                resource.RLIMIT_AS, resource.RLIMIT_NPROC, resource.RLIMIT_MEMLOCK, resource.RLIMIT_MSGQUEUE,
                resource.RLIMIT_STACK):
        _HARD[res] = resource.getrlimit(res)[1]
    return r


# ---------------------------------------------------------------- fds transport (process, unsafe)

def serve_fds(sock_fd):
    sock = socket.socket(fileno=sock_fd)

    def control_read():
        try:
            msg = sock.recv(1 << 16)
        except OSError:
            return None
        return msg or None

    session = Session(_Waiter(sock, _wakeup_pipe(), control_read))
    send = lambda msg: sock.send(json.dumps(msg).encode())  # noqa: E731
    send({"event": "ready", "pid": os.getpid()})
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, MAX_FDS_PER_MESSAGE)
        except OSError:
            return
        if not msg:
            return
        try:
            req = json.loads(msg)
            op = req["op"]
            put = req.get("put")  # files riding along with a run: placed first, their fds lead
            if put:
                session.put(put, fds[:len(put)])
                for fd in fds[:len(put)]:
                    _close(fd)
                fds = fds[len(put):]
            if op == "put":
                session.put(req["names"], fds)
                out = {"ok": True}
            elif op == "exec":
                out = session.exec(req, dict(zip(req["fd_targets"], fds)))
                fds = []
            elif op == "pair":
                n = len(req["judge_fd_targets"])
                jf = dict(zip(req["judge_fd_targets"], fds[:n]))
                cf = dict(zip(req["candidate_fd_targets"], fds[n:]))
                out = session.pair(req, jf, cf)
                fds = []
            elif op == "reset":
                out = session.reset()
            elif op == "kill":
                continue  # a kill that arrived after its run ended: nothing to do, no answer
            else:
                out = {"error": "unknown op %r" % op}
        except EOFError:
            return
        except Exception as e:  # noqa: BLE001 - the host retires a session that answers this
            out = {"error": "%s: %s" % (type(e).__name__, e), "clean": False}
        finally:
            for fd in fds:
                _close(fd)
        send(dict(out, event="done"))


# ---------------------------------------------------------------- stream transport (docker)

def _read_exactly(stream, n):
    data = stream.read(n)
    return data if data is not None and len(data) == n else None


def serve_stream():
    inp, outp = sys.stdin.buffer, sys.stdout.buffer

    def read_msg():
        header = _read_exactly(inp, 4)
        if header is None:
            return None
        body = _read_exactly(inp, struct.unpack(">I", header)[0])
        return None if body is None else json.loads(body)

    def send(msg):
        data = json.dumps(msg).encode()
        outp.write(struct.pack(">I", len(data)) + data)
        outp.flush()

    # The host's "kill" can't be read while we wait here (one request at a time on this stream):
    # the host enforces output caps by the cap we apply ourselves, and time by our wall clock.
    waiter = _Waiter(None, _wakeup_pipe())
    session = Session(waiter)
    b64 = base64.b64decode
    send({"event": "ready", "pid": os.getpid()})
    while True:
        try:
            req = read_msg()
        except ValueError:
            return
        if req is None:
            return
        try:
            op = req["op"]
            cap = req.get("output_bytes", 1 << 20)
            if op == "put":
                names = list(req["files"])
                session.put(names, [b64(req["files"][n]) for n in names])
                del req
                out = {"ok": True}
            elif op == "exec":
                pipes, sinks, names, feeds = _stream_pipes(req["fd_targets"], req.pop("feeds_b64", {}))
                out = session.exec(req, pipes, sinks, cap, feeds)
                out["outputs"] = {str(t): base64.b64encode(bytes(sinks[fd])).decode() for fd, t in names.items()}
            elif op == "pair":
                jp, js, jn, _ = _stream_pipes(req["judge_fd_targets"], req.pop("judge_feeds_b64", {}))
                cp, cs, cn, _ = _stream_pipes(req["candidate_fd_targets"], {})

                def spec_source():
                    # Read only now: the candidate was forked before this entered our memory.
                    spec = read_msg()
                    fd = _memfd(b64(spec["spec_b64"]))
                    spec.clear()
                    return fd

                sinks = {**js, **cs}
                out = session.pair(req, jp, cp, spec_source, sinks, cap)
                out["outputs"] = {"judge:%s" % t: base64.b64encode(bytes(js[fd])).decode() for fd, t in jn.items()}
                out["outputs"].update({"candidate:%s" % t: base64.b64encode(bytes(cs[fd])).decode()
                                       for fd, t in cn.items()})
            elif op == "reset":
                out = session.reset()
            else:
                out = {"error": "unknown op %r" % op}
        except Exception as e:  # noqa: BLE001 - PID 1 answers, never dies: the host retires us
            out = {"error": "%s: %s" % (type(e).__name__, e), "clean": False}
        send(dict(out, event="done"))


INPUT_TARGETS = (0, 3)  # stdin and a side input; every other descriptor is an output we collect


def _stream_pipes(targets, feeds_b64):
    """Our pipes for a run's descriptors: inputs are fed from ``feeds_b64`` ({target: base64}),
    outputs read here. Returns (child fds by target, our read ends -> buffer, our read ends ->
    target, our write ends -> data)."""
    child, sinks, names, feeds = {}, {}, {}, {}
    for t in targets:
        if t in (4, 5) and str(t) in feeds_b64:  # a judge's input and program: memfds
            child[t] = _memfd(base64.b64decode(feeds_b64[str(t)]))
            continue
        if t == 0:  # stdin is a file, as judges give it: fstat() tells its size, seeking works
            child[t] = _memfd(base64.b64decode(feeds_b64.get("0") or ""))
            continue
        r, w = os.pipe()
        if t in INPUT_TARGETS:
            child[t] = r
            data = base64.b64decode(feeds_b64[str(t)]) if feeds_b64.get(str(t)) else b""
            if data:
                feeds[w] = memoryview(data)
            else:
                os.close(w)
        else:
            child[t] = w
            sinks[r] = bytearray()
            names[r] = t
    return child, sinks, names, feeds


def main(argv):
    global CONTAINED, WORK, SCRATCH, RESET_MODES, NPROC_LIMIT
    mode = argv[1] if len(argv) > 1 else "stream"
    # Not dumpable: programs (same uid) can't ptrace us or open /proc/<us>/fd to forge answers.
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if mode == "fds":
        WORK = argv[3] if len(argv) > 3 else "/box"
        if len(argv) > 4 and argv[4] == "unsafe":
            CONTAINED = NPROC_LIMIT = False
            SCRATCH = ()
            try:
                os.setsid()
            except OSError:
                pass
    else:
        WORK = "/work"
        SCRATCH = ("/tmp", "/dev/shm", "/dev/mqueue")
        RESET_MODES = False
        NPROC_LIMIT = False
    for root in (WORK,) + SCRATCH:
        try:
            _modes[root] = os.stat(root).st_mode & 0o7777
        except OSError:
            pass
    _warm_up()
    if mode == "fds":
        serve_fds(int(argv[2]))
    else:
        serve_stream()


if __name__ == "__main__":
    main(sys.argv)
