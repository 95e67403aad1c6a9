"""PID 1 of every warm sandbox container: runs sessions one at a time, on request.

Started as the container's command (``python3 -I -S -c``), so the image stays
a plain base plus a user and this code versions with the service. Protocol on
the container's attached stdin/stdout: a 4-byte big-endian length, then JSON;
one request, one answer. Being PID 1 it can't be killed or stopped by the
programs it runs (the kernel drops their signals to a namespace's init), and
it inherits every orphan. Before answering it kills every other process,
wipes the writable areas and SysV IPC, and says whether that left the
container clean; the host recycles any container that is not. Standard
library only: it runs under the image's Python, not the service's.

A python request with ``"fork": true`` (the docker backend's default) is not
an exec of ``python3``: the supervisor forks and the child becomes the program
through the same steps as the warm mode below (``_child_start``,
``_child_finish``, ``_warm_exec_main``), fed from files and stdin that arrived
in the request. Since that child is a copy of this process, which held earlier
runs' data, the host starts the supervisor with glibc malloc only, no tcache
and freed memory overwritten (``docker.RUNNER_ENV``).

The process backend starts the same code as PID 1 of its warm bubblewrap
sessions (``warm`` mode, ``serve_warm``; see ``sandbox/process_warm.py``):
there a python run is a fork of this interpreter rather than a new one, and
the same cleanup (``kill_everything_else``, ``wipe``, ``remove_sysv_ipc``)
runs between runs.
"""
import base64
import ctypes
import json
import os
import resource
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import time

WORK_ROOT = "/work"
SCRATCH = ("/dev/shm", "/dev/mqueue")  # writable outside /work: wiped too
COMPILE_OUTPUT_CHARS = 4000
COMPILE_OUTPUT_BYTES = 64 << 10
PATH = "/usr/local/bin:/usr/bin:/bin"
PR_SET_DUMPABLE = 4
M_PERTURB = -6
_libc = ctypes.CDLL(None, use_errno=True)


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


def oom_kills():
    return _read_counter(("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"), "oom_kill")


def pid_limit_hits():
    return _read_counter(("/sys/fs/cgroup/pids/pids.events", "/sys/fs/cgroup/pids.events"), "max")


_exits = {}  # pid -> (wait status, rusage) of children we wait for; other orphans are just reaped
_wakeup_r = None  # readable whenever SIGCHLD arrived


def reap():
    """Collect every exited child. As PID 1 we inherit all orphans: unreaped, their
    zombies would eat the pid limit."""
    while True:
        try:
            pid, status, rusage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _exits[pid] = (status, rusage)


def _rlimits_setter(cpu_s, fsize_mb, nofile):
    cpu = max(1, int(cpu_s + 0.999))

    def apply():
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_mb << 20, fsize_mb << 20))
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def _limits_setter(cpu_s, fsize_mb, nofile):
    set_rlimits = _rlimits_setter(cpu_s, fsize_mb, nofile)

    def apply():
        set_rlimits()
        # Undo the inherited non-dumpable flag first: it makes /proc/self root-owned.
        _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
        try:  # the program, never this server, is the OOM killer's first choice
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")
        except OSError:
            pass
    return apply


def stash_stdin(data):
    """The program's stdin as an open, already unlinked file: it gets the data, never a path,
    and our memory does not hold a copy while it runs."""
    path = os.path.join(WORK_ROOT, ".stdin")
    with open(path, "wb") as f:
        f.write(data)
    stdin_f = open(path, "rb")
    os.unlink(path)
    return stdin_f


class _ForkedPython:
    """A python run forked from this interpreter, with the few ``Popen`` attributes ``spawn`` uses."""

    def __init__(self, source, argv, cwd, env, stdin, apply_limits):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            _fork_python_child(source, argv, cwd, env, stdin.fileno(), out_w, err_w, apply_limits)
        os.close(out_w)
        os.close(err_w)
        self.stdout = os.fdopen(out_r, "rb", buffering=0)
        self.stderr = os.fdopen(err_r, "rb", buffering=0)
        self.returncode = None


def _fork_python_child(source, argv, cwd, env, stdin_fd, out_fd, err_fd, apply_limits):
    """In the forked child: become ``python3 -I main.py`` fed from the docker stream's request. Never returns."""
    try:
        _child_start()
        _libc.mallopt(M_PERTURB, 0)  # the supervisor's free-time scrubbing is not the program's cost
        for target, fd in enumerate((stdin_fd, out_fd, err_fd)):
            os.dup2(fd, target)
        _fresh_stdio()
        _child_finish(cwd, env, argv, apply_limits)
    except BaseException as e:  # noqa: BLE001
        os.write(2, ("sandbox supervisor: run setup failed: %s: %s\n" % (type(e).__name__, e)).encode())
        os._exit(125)
    _warm_exec_main(source.encode(), os.path.join(cwd, "main.py"))


def _fresh_stdio():
    """The standard streams a fresh ``python3 -I`` makes under C.UTF-8: the supervisor's own wrap
    its request stream (closefd=False on both, so dropping the old ones closes nothing)."""
    import io

    def stream(fd, mode, errors, line_buffering=False):
        return io.TextIOWrapper(io.open(fd, mode, closefd=False), encoding="utf-8", errors=errors,
                                newline="\n", line_buffering=line_buffering)
    sys.stdin = sys.__stdin__ = stream(0, "rb", "surrogateescape")
    sys.stdout = sys.__stdout__ = stream(1, "wb", "surrogateescape")
    sys.stderr = sys.__stderr__ = stream(2, "wb", "backslashreplace", line_buffering=True)


def spawn(cmd, cwd, env, stdin, wall_s, cpu_s, fsize_mb, nofile, out_cap, python_source=None):
    """Run cmd in its own session; returns a dict describing what happened. With python_source,
    cmd is the program's argv and the run is a fork of this interpreter (no exec)."""
    t0 = time.monotonic()
    if python_source is not None:
        proc = _ForkedPython(python_source, cmd, cwd, env, stdin, _rlimits_setter(cpu_s, fsize_mb, nofile))
    else:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=stdin, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=_limits_setter(cpu_s, fsize_mb, nofile))
    bufs = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    sel = selectors.DefaultSelector()
    for stream in bufs:
        sel.register(stream, selectors.EVENT_READ)
    sel.register(_wakeup_r, selectors.EVENT_READ)
    deadline = t0 + wall_s
    timed_out = over_output = False
    exited_at = None

    def kill_group():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if proc.pid not in _exits:  # a forked run killed before its own setsid has no group yet
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except OSError:
                pass

    # Until the program exits, even if it closed its pipes, and then until the pipes drain.
    while exited_at is None or len(sel.get_map()) > 1:
        now = time.monotonic()
        if exited_at is None:
            reap()
            if proc.pid in _exits:
                exited_at = now
                kill_group()  # background children of the program end with it
        if exited_at is None and now >= deadline:
            timed_out = True
            kill_group()
            break
        # Daemons in other sessions may hold the pipes open forever: once the
        # program itself is gone, drain briefly and stop.
        if exited_at is not None and now - exited_at > 0.2:
            break
        wait = 0.05 if exited_at is not None else max(0.0, deadline - now)
        for key, _ in sel.select(wait):
            if key.fileobj is _wakeup_r:
                os.read(_wakeup_r, 4096)
                continue
            chunk = os.read(key.fd, 65536)
            if not chunk:  # EOF
                sel.unregister(key.fileobj)
                continue
            buf = bufs[key.fileobj]
            buf += chunk
            if len(buf) > out_cap:
                over_output = True
        if over_output:
            kill_group()
            break
    sel.close()
    while proc.pid not in _exits:
        try:
            _, status, rusage = os.wait4(proc.pid, 0)
            _exits[proc.pid] = (status, rusage)
        except ChildProcessError:  # reaped meanwhile by reap()
            reap()
    status, rusage = _exits.pop(proc.pid)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    proc.stderr.close()
    return {
        "exit_code": proc.returncode,
        "stdout": bytes(bufs[proc.stdout][:out_cap]),
        "stderr": bytes(bufs[proc.stderr][:out_cap]),
        "wall": time.monotonic() - t0,
        "cpu": rusage.ru_utime + rusage.ru_stime,
        "peak_kb": rusage.ru_maxrss,
        "timed_out": timed_out,
        "over_output": over_output,
    }


def kill_everything_else():
    """SIGKILL every other process in the container until none is left; True if that worked."""
    for attempt in range(200):
        reap()
        if not [p for p in os.listdir("/proc") if p.isdigit() and p != "1"]:
            _exits.clear()
            return True
        try:
            os.kill(-1, signal.SIGKILL)  # from PID 1: everyone else in the namespace
        except OSError:
            pass
        time.sleep(min(0.001 * attempt, 0.02))
    return False


def remove_sysv_ipc():
    """Shared memory, semaphores and message queues outlive processes: drop them all."""
    ipc_rmid = 0
    for table, remove in (("shm", lambda i: _libc.shmctl(i, ipc_rmid, None)),
                          ("sem", lambda i: _libc.semctl(i, 0, ipc_rmid)),
                          ("msg", lambda i: _libc.msgctl(i, ipc_rmid, None))):
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
    """Give every directory under top back its owner's rwx (programs chmod 000 to jam
    the cleanup); iterative, so depth costs no recursion."""
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


def _memory_message(stderr):
    tail = stderr[-4096:]
    return b"MemoryError" in tail or b"std::bad_alloc" in tail


def session(req):
    lim = req["limits"]
    oom_before = oom_kills()
    run_dir = os.path.join(WORK_ROOT, "run-%s" % req["id"])
    os.mkdir(run_dir, 0o700)
    files = req.pop("files")
    while files:
        name, data = files.popitem()
        path = os.path.join(run_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        del data
    stdin = stash_stdin(base64.b64decode(req.pop("stdin")))
    env = {"PATH": PATH, "HOME": run_dir, "TMPDIR": run_dir, "LANG": "C.UTF-8"}
    common = dict(cwd=run_dir, env=env, fsize_mb=lim["file_size_mb"], nofile=lim["nofile"])

    if req["language"] == "cpp":
        with open(os.path.join(run_dir, "main.cpp"), "w") as f:
            f.write(req["source"])
        cc = spawn(["g++", "-O2", "-std=c++17", "-o", "main", "main.cpp"], stdin=subprocess.DEVNULL,
                   wall_s=lim["compile_s"], cpu_s=lim["compile_s"], out_cap=COMPILE_OUTPUT_BYTES, **common)
        if cc["exit_code"] != 0 or cc["timed_out"]:
            text = (cc["stderr"] + cc["stdout"]).decode("utf-8", "replace")
            why = "compiler timed out" if cc["timed_out"] else "compilation failed"
            return {"status": "compile_error", "exit_code": cc["exit_code"], "detail": why,
                    "compile_output": text[-COMPILE_OUTPUT_CHARS:], "wall": cc["wall"], "cpu": cc["cpu"],
                    "oom": (oom_kills() or 0) > (oom_before or 0)}
        cmd = ["./main"]
    else:
        with open(os.path.join(run_dir, "main.py"), "w") as f:
            f.write(req["source"])
        cmd = ["python3", "-I", "main.py"]
        if req.get("fork"):
            common["python_source"] = req["source"]
            cmd = []

    r = spawn(cmd + req["argv"], stdin=stdin, wall_s=lim["wall_time_s"],
              cpu_s=lim["cpu_time_s"], out_cap=lim["output_bytes"], **common)
    stdin.close()
    oom_after = oom_kills()
    oom = oom_before is not None and oom_after is not None and oom_after > oom_before
    code = r["exit_code"]
    # SIGXCPU comes from RLIMIT_CPU; SIGKILL follows at the hard limit if it was ignored.
    cpu_limited = code == -signal.SIGXCPU or (code == -signal.SIGKILL and r["cpu"] >= lim["cpu_time_s"])
    if r["over_output"]:
        status, detail = "output_limit", "output exceeded %d bytes on a stream" % lim["output_bytes"]
    elif r["timed_out"]:
        status, detail = "timeout", "wall time limit of %gs exceeded" % lim["wall_time_s"]
    elif cpu_limited:
        status, detail = "timeout", "CPU time limit of %gs exceeded" % lim["cpu_time_s"]
    elif oom and code != 0:
        status, detail = "memory_limit", "killed by the out-of-memory killer"
    elif code != 0 and _memory_message(r["stderr"]):
        status, detail = "memory_limit", "the program ran out of memory"
    elif code == -signal.SIGKILL and r["peak_kb"] >= 0.9 * (lim["memory_mb"] << 10):
        # Runtimes without a readable OOM counter (e.g. gVisor) still show the kill at the limit.
        status, detail = "memory_limit", "killed at the memory limit"
    elif code != 0:
        status = "runtime_error"
        detail = "killed by signal %d" % -code if code < 0 else "exit code %d" % code
    else:  # a program that survives a child's OOM kill (e.g. a test harness) still succeeded
        status, detail = "ok", "a child process was killed by the out-of-memory killer" if oom else ""
    return {"status": status, "exit_code": code, "detail": detail, "wall": r["wall"], "cpu": r["cpu"],
            "peak_mb": r["peak_kb"] / 1024.0, "oom": oom,
            "stdout": base64.b64encode(r["stdout"]).decode(), "stderr": base64.b64encode(r["stderr"]).decode()}


def handle(req):
    pids_before = pid_limit_hits()
    try:
        out = session(req)
    except Exception as e:  # noqa: BLE001 - reported to the host, which recycles the container
        out = {"status": "sandbox_error", "detail": "runner: %s: %s" % (type(e).__name__, e)}
    clean = kill_everything_else()
    for root in (WORK_ROOT,) + SCRATCH:
        clean = wipe(root) and clean
    clean = remove_sysv_ipc() and clean
    pids_after = pid_limit_hits()
    out["pid_limit_hit"] = pids_before is not None and pids_after is not None and pids_after > pids_before
    out["clean"] = clean and kill_everything_else()
    return out


def read_exactly(stream, n):
    data = stream.read(n)
    return data if data is not None and len(data) == n else None


def serve():
    global _wakeup_r
    # Not dumpable: the program (same uid) can't ptrace us or open our
    # /proc/1/fd/* to read requests or forge answers.
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    _warm_up(site=True)
    _wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    os.set_blocking(_wakeup_r, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = read_exactly(inp, 4)
        if header is None:
            return  # the host hung up: the container ends with us
        body = read_exactly(inp, struct.unpack(">I", header)[0])
        if body is None:
            return
        try:
            req = json.loads(body)
            del body
            answer = json.dumps(handle(req)).encode()
            del req
        except Exception as e:  # noqa: BLE001 - PID 1 must answer, never die: the host retires us
            answer = json.dumps({"status": "sandbox_error", "clean": False,
                                 "detail": "runner: %s: %s" % (type(e).__name__, e)}).encode()
        out.write(struct.pack(">I", len(answer)) + answer)
        out.flush()


# -- warm Python sessions of the process backend ---------------------------------------
# The same supervisor, started by bubblewrap as PID 1 of a long-lived session
# (``bwrap --as-pid-1 python3 -I -c <this file> warm <fd>``). Requests arrive
# on a SOCK_SEQPACKET socket with the run's pipes and memfds attached
# (SCM_RIGHTS), so no program data ever passes through this process's memory.
# A python run is a fork of this already-warm interpreter that executes the
# source as ``__main__`` (no exec, no interpreter start).

WARM_WORK = "/box"
WARM_SCRATCH = ("/box", "/tmp", "/dev/shm")
# Imported once per session so forked runs get them for free: the harness's
# imports and what short programs commonly import.
WARM_PRELOAD = ("marshal", "resource", "select", "_json", "_signal", "_ctypes", "subprocess", "tempfile",
                "types", "atexit", "traceback",
                "math", "collections", "itertools", "functools", "heapq", "bisect", "string", "re",
                "typing", "random", "copy", "operator", "json", "fractions", "decimal", "datetime",
                "statistics", "dataclasses", "enum", "array", "struct", "hashlib", "threading")


def reset_dir(path, mode):
    """A scratch root back to how the session started: its mode and no extended attributes
    (a run may chmod it or tag it with user.* xattrs for the next one to read)."""
    try:
        os.chmod(path, mode)
        for name in os.listxattr(path):
            os.removexattr(path, name)
        return not os.listxattr(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _warm_up(site=False):
    """Load what forked runs should find loaded. The docker supervisor starts with ``-S`` (fast
    PID 1), but programs expect what ``site`` gives ``python3 -I``: ``exit``/``quit``, dist-packages."""
    import gc
    if site and "site" not in sys.modules:
        import site as site_module
        site_module.main()
    for name in WARM_PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    gc.collect()
    gc.freeze()  # forked runs then don't copy-on-write every object's GC header


def _warm_child_signals():
    """What a fresh interpreter starts with: defaults, SIGINT raising, SIGPIPE/SIGXFSZ ignored."""
    signal.set_wakeup_fd(-1)  # the docker supervisor's: the program must not get our SIGCHLD bytes
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _copy_in(src_fd, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.lseek(src_fd, 0, os.SEEK_SET)
        size = os.fstat(src_fd).st_size
        while size > 0:
            n = os.sendfile(out, src_fd, None, size)
            if n <= 0:
                break
            size -= n
    finally:
        os.close(out)


def _warm_limits(lim):
    cpu = max(1, int(lim["cpu_time_s"] + 0.999))
    for res, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)),
                       (resource.RLIMIT_AS, (lim["memory_mb"] << 20,) * 2),
                       (resource.RLIMIT_FSIZE, (lim["file_size_mb"] << 20,) * 2),
                       (resource.RLIMIT_NPROC, (lim["nproc"],) * 2),
                       (resource.RLIMIT_NOFILE, (lim["nofile"],) * 2),
                       (resource.RLIMIT_CORE, (0, 0)), (resource.RLIMIT_MEMLOCK, (0, 0)),
                       (resource.RLIMIT_MSGQUEUE, (0, 0))):
        resource.setrlimit(res, value)


def _exit_status_of(exc):
    """Exit status for an uncaught SystemExit, as the interpreter computes it."""
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


def _child_start():
    """First steps of every forked python run: its own session, a fresh interpreter's signals."""
    os.setsid()
    _warm_child_signals()


def _child_finish(cwd, env, argv, apply_limits):
    """Last steps before the source runs: only fds 0-2 left, the run's rlimits, the OOM killer's
    first choice, the scrubbed environment and argv."""
    for fd in [int(f) for f in os.listdir("/proc/self/fd")]:
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass
    os.chdir(cwd)
    apply_limits()
    # Undo the inherited non-dumpable flag (it makes /proc/self root-owned); ours stays set.
    _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")  # the program, never the supervisor, is the OOM killer's first choice
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["main.py"] + list(argv)


def _warm_child(req, fds):
    """In the forked child: become a fresh-looking ``python3 -I main.py`` and run the source. Never returns."""
    try:
        _child_start()
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        source = b""
        for name, fd in zip(req["files"], fds[3:]):
            _copy_in(fd, os.path.join(WARM_WORK, name))
            if name == "main.py":
                os.lseek(fd, 0, os.SEEK_SET)
                source = os.read(fd, os.fstat(fd).st_size + 1)
        _child_finish(WARM_WORK, req["env"], req["argv"], lambda: _warm_limits(req["limits"]))
    except BaseException as e:  # noqa: BLE001
        os.write(2, ("sandbox supervisor: run setup failed: %s: %s\n" % (type(e).__name__, e)).encode())
        os._exit(125)
    _warm_exec_main(source, os.path.join(WARM_WORK, "main.py"))


def _warm_exec_main(source, path):
    import builtins
    import types
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__cached__ = None
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    # The program starts this many frames deeper than in a fresh interpreter: it gets them back.
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    del frame
    sys.setrecursionlimit(sys.getrecursionlimit() + depth)
    status, interrupted = 0, False
    try:
        exec(compile(source, main.__file__, "exec"), main.__dict__)
    except SystemExit as e:
        status = _exit_status_of(e)
    except BaseException as e:  # noqa: BLE001 - reported like the interpreter does
        interrupted = isinstance(e, KeyboardInterrupt)
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
        e.__traceback__ = tb  # hide this frame, as the interpreter shows only the program's
        try:
            sys.excepthook(type(e), e, tb)
        except BaseException:  # noqa: BLE001
            pass
        status = 1
    status = _warm_finalize(status)
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status)


def _warm_finalize(status):
    """What interpreter shutdown does before exiting: join threads, atexit hooks, flush stdio."""
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
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except BaseException:  # noqa: BLE001
            if stream is sys.stdout:
                status = 120
    return status


def _warm_wait(child):
    """Reap everything until the run's main process exits; its (status, rusage)."""
    while True:
        try:
            pid, status, rusage = os.wait4(-1, 0)
        except ChildProcessError:
            return None, None
        if pid == child:
            return status, rusage


def _warm_send(sock, msg):
    sock.send(json.dumps(msg).encode())


def serve_warm(sock_fd):
    import socket
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    # As PID 1 only signals we handle can reach us from inside; Python's own SIGINT handler goes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=sock_fd)
    modes = {root: os.stat(root).st_mode & 0o7777 for root in WARM_SCRATCH}
    _warm_up()
    _warm_send(sock, {"event": "ready"})
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, 64)
        except OSError:
            return
        if not msg:
            return  # the host hung up: the session ends with us
        child = None
        try:
            req = json.loads(msg)
            child = os.fork()
            if child == 0:
                _warm_child(req, fds)
        except Exception as e:  # noqa: BLE001 - the host retires this session
            _warm_send(sock, {"event": "exited", "error": "%s: %s" % (type(e).__name__, e)})
        finally:
            for fd in fds:
                os.close(fd)
        if child is not None:
            status, rusage = _warm_wait(child)
            _warm_send(sock, {"event": "exited", "exit_code": os.waitstatus_to_exitcode(status) if status is not None else None,
                              "cpu": (rusage.ru_utime + rusage.ru_stime) if rusage else 0.0})
        clean = kill_everything_else()
        for root in WARM_SCRATCH:
            clean = reset_dir(root, modes[root]) and wipe(root) and clean
        clean = remove_sysv_ipc() and clean
        _warm_send(sock, {"event": "clean", "clean": bool(clean and kill_everything_else() and child is not None)})


if __name__ == "__main__":
    if sys.argv[1:2] == ["warm"]:
        serve_warm(int(sys.argv[2]))
    else:
        serve()
