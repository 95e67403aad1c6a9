"""Warm sessions of the process sandbox: what one run leaves behind must not reach the next.

Real bwrap, no mocks. Every pair of runs here goes through the same warm
session (one idle session per process, sequential runs), which each test
checks through ``extra["slot"]`` and ``extra["session_run"]``.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import traceback
import uuid

import pytest

from sandbox.process import ProcessConfig, ProcessSandbox
from sandbox.types import Limits, RunStatus

QUICK = Limits(wall_time_s=3, cpu_time_s=2, memory_mb=256, max_processes=16, output_bytes=64 * 1024, file_size_mb=4)

pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap is not installed (apt-get install bubblewrap)")

OTHER_PROCESSES = "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid())))"


@pytest.fixture(scope="module")
def sandbox() -> ProcessSandbox:
    sb = ProcessSandbox(dataclasses.replace(ProcessConfig.from_env(), warm=True, warm_sessions=1))
    sb.check()
    yield sb
    sb.close()


def same_session(first, second) -> bool:
    return (first.extra.get("warm") and first.extra["slot"] == second.extra["slot"]
            and second.extra["session_run"] == first.extra["session_run"] + 1)


def run_pair(sandbox, first_source: str, second_source: str, **first_kwargs):
    first = sandbox.run("python", first_source, limits=QUICK, **first_kwargs)
    second = sandbox.run("python", second_source, limits=QUICK)
    assert same_session(first, second), (first.extra, second.extra)
    return first, second


def test_python_runs_are_warm_by_default_and_cold_on_request():
    assert ProcessConfig().warm
    cold = ProcessSandbox(dataclasses.replace(ProcessConfig.from_env(), warm=False))
    r = cold.run("python", "print(6 * 7)")
    assert r.status == RunStatus.ok and r.stdout == b"42\n"
    assert "warm" not in r.extra


def test_a_leftover_daemon_is_gone_before_the_next_run(sandbox):
    daemon = ("import os, time\n"
              "if os.fork() == 0:\n"
              "    os.setsid()\n"
              "    if os.fork() == 0:\n"
              "        time.sleep(60)\n"
              "    os._exit(0)\n"
              "print('left one')")
    first, second = run_pair(sandbox, daemon, OTHER_PROCESSES)
    assert first.stdout == b"left one\n"
    assert second.stdout == b"[]\n"


@pytest.mark.parametrize("where", ["/tmp", "/dev/shm", "/box", "/box/sub/dir"])
def test_files_left_anywhere_writable_are_gone_for_the_next_run(sandbox, where):
    name = uuid.uuid4().hex
    leave = (f"import os\nos.makedirs({where!r}, exist_ok=True)\nopen(os.path.join({where!r}, {name!r}), 'w').write('x')\n"
             f"os.chmod({where!r}, 0o500) if {where!r}.startswith('/box/') else None\nprint('left')")
    look = "import os\nprint([d for d in ('/tmp', '/dev/shm', '/box') for f in os.listdir(d) if f != 'main.py'])"
    first, second = run_pair(sandbox, leave, look)
    assert first.stdout == b"left\n", first
    assert second.stdout == b"[]\n", second


def test_a_sysv_shared_memory_segment_is_removed_before_the_next_run(sandbox):
    leave = ("import ctypes\nlibc = ctypes.CDLL(None)\n"
             "print(libc.shmget(0x5eed, 4096, 0o1000 | 0o666) >= 0)")  # IPC_CREAT
    look = "print(open('/proc/sysvipc/shm').read().splitlines()[1:])"
    first, second = run_pair(sandbox, leave, look)
    assert first.stdout == b"True\n", first
    assert second.stdout == b"[]\n", second


def test_a_patched_module_cache_does_not_reach_the_next_run(sandbox):
    patch = ("import sys, json, math, builtins\n"
             "json.dumps = lambda *a, **k: 'hacked'\n"
             "math.pi = 3\n"
             "builtins.len = lambda x: 0\n"
             "sys.modules['collections'] = None\n"
             "sys.path.insert(0, '/tmp')\n"
             "open('/tmp/heapq.py', 'w').write('hacked = True')\n"
             "print('patched')")
    look = ("import sys, json, math, collections, heapq\n"
            "print(json.dumps([1]), math.pi == 3.141592653589793, len('ab'), '/tmp' in sys.path,"
            " hasattr(heapq, 'hacked'))")
    first, second = run_pair(sandbox, patch, look)
    assert first.stdout == b"patched\n", first
    assert second.stdout == b"[1] True 2 False False\n", second


def test_signals_to_the_supervisor_are_dropped_and_the_session_carries_on(sandbox):
    attack = ("import os, signal\n"
              "for sig in (signal.SIGSTOP, signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGSEGV):\n"
              "    os.kill(os.getppid(), sig)\n"
              "    os.kill(1, sig)\n"
              "try:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
              "print('sent', os.getppid())")
    first, second = run_pair(sandbox, attack, "print('next')")
    assert first.status == RunStatus.ok and first.stdout == b"sent 1\n", first
    assert second.status == RunStatus.ok and second.stdout == b"next\n", second


def test_the_supervisor_memory_descriptors_and_tracing_are_closed_to_runs(sandbox):
    probe = ("import ctypes, os\n"
             "for path in ('/proc/1/mem', '/proc/1/environ', '/proc/1/fd', '/proc/1/maps'):\n"
             "    try:\n"
             "        (os.listdir if path.endswith('fd') else lambda p: open(p, 'rb').read(1))(path)\n"
             "        print('READ', path)\n"
             "    except OSError as e:\n"
             "        print('denied', path)\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "print('ptrace', libc.ptrace(16, 1, None, None), ctypes.get_errno())\n"  # PTRACE_ATTACH
             "buf = ctypes.create_string_buffer(8)\n"
             "class iovec(ctypes.Structure):\n"
             "    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]\n"
             "local = iovec(ctypes.addressof(buf), 8)\n"
             "remote = iovec(0x400000, 8)\n"
             "print('vm_readv', libc.process_vm_readv(1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0))")
    r = sandbox.run("python", probe, limits=QUICK)
    assert r.status == RunStatus.ok, r
    assert b"READ" not in r.stdout, r.stdout
    assert b"ptrace -1 1\n" in r.stdout  # EPERM
    assert b"vm_readv -1\n" in r.stdout


def test_a_timeout_is_enforced_inside_the_session_and_the_next_run_is_fine(sandbox):
    # The supervisor keeps the wall clock itself, kills the run and everything it started, and
    # the session (with a compiled program in it, for the next tests) stays usable.
    hang = sandbox.run("python", "import os, time\nprint('x', flush=True)\nos.fork()\ntime.sleep(60)",
                       limits=dataclasses.replace(QUICK, wall_time_s=1))
    assert hang.status == RunStatus.timeout and hang.stdout == b"x\n", hang
    assert hang.wall_time_s < 1.5
    nxt = sandbox.run("python", OTHER_PROCESSES, limits=QUICK)
    assert nxt.status == RunStatus.ok and nxt.stdout == b"[]\n", nxt


def test_a_memory_limit_hit_replaces_the_session(sandbox):
    bomb = sandbox.run("python", "import resource\nx = bytearray(400 << 20)\nprint(len(x))", limits=QUICK)
    assert bomb.status == RunStatus.memory_limit, bomb
    nxt = sandbox.run("python", "print(sum(range(10)))", limits=QUICK)
    assert nxt.status == RunStatus.ok and nxt.stdout == b"45\n", nxt


def test_a_run_behaves_like_a_fresh_interpreter(sandbox):
    src = ("import sys, os, atexit, threading, time\n"
           "atexit.register(lambda: print('atexit'))\n"
           "threading.Thread(target=lambda: (time.sleep(0.05), print('thread'))).start()\n"
           "print(__name__, sys.argv, os.getcwd(), sorted(os.environ), sys.flags.isolated, '' in sys.path)\n"
           "sys.stdout.write('unflushed')\n"
           "sys.exit(3)")
    r = sandbox.run("python", src, argv=["a"], limits=QUICK)
    assert r.exit_code == 3, r
    assert r.stdout == (b"__main__ ['main.py', 'a'] /box ['HOME', 'LANG', 'PATH'] 1 False\n"
                        b"unflushedthread\natexit\n"), r.stdout


def test_tracebacks_show_only_the_program(sandbox):
    r = sandbox.run("python", "def f():\n    raise ValueError('boom')\nf()", limits=QUICK)
    assert r.status == RunStatus.runtime_error and r.exit_code == 1
    assert r.stderr.startswith(b'Traceback (most recent call last):\n  File "/box/main.py", line 3'), r.stderr
    assert r.stderr.endswith(b"ValueError: boom\n")


def test_a_session_is_replaced_after_warm_runs_runs():
    sb = ProcessSandbox(dataclasses.replace(ProcessConfig.from_env(), warm=True, warm_sessions=1, warm_runs=2))
    try:
        runs = [sb.run("python", "pass").extra["session_run"] for _ in range(3)]
    finally:
        sb.close()
    assert runs == [1, 2, 1]


def test_runs_inherit_only_their_own_descriptors(sandbox):
    r = sandbox.run("python", "import os\nprint(sorted(int(f) for f in os.listdir('/proc/self/fd')))",
                    files={"a.txt": b"x", "b/c.txt": b"y"}, limits=QUICK)
    assert r.stdout == b"[0, 1, 2, 3]\n", r


def test_a_run_with_more_files_than_one_message_carries_gets_them_all(sandbox):
    files = {f"f{i}.txt": b"x" for i in range(130)}
    r = sandbox.run("python", "import os\nprint(len(os.listdir('.')))", files=files, limits=QUICK)
    assert r.status == RunStatus.ok and r.stdout == b"131\n", r


def test_a_scratch_root_locked_or_tagged_by_a_run_is_restored_for_the_next(sandbox):
    tamper = ("import os\n"
              "os.setxattr('/tmp', 'user.note', b'for the next run')\n"
              "os.chmod('/tmp', 0o500)\nos.chmod('/box', 0o000)\nprint('tampered')")
    look = ("import os\n"
            "print(os.listxattr('/tmp'), oct(os.stat('/tmp').st_mode & 0o777), oct(os.stat('/box').st_mode & 0o777),"
            " sorted(os.listdir('/box')))")
    first, second = run_pair(sandbox, tamper, look)
    assert first.stdout == b"tampered\n", first
    assert second.stdout == b"[] 0o755 0o755 ['main.py']\n", second


def test_a_session_that_dies_under_a_run_gives_a_clean_status_and_the_next_run_works(sandbox):
    import signal
    import threading
    import time

    results = []
    runner = threading.Thread(target=lambda: results.append(
        sandbox.run("python", "import time\nprint('started', flush=True)\ntime.sleep(5)", limits=dataclasses.replace(QUICK, wall_time_s=10))))
    runner.start()
    time.sleep(0.5)
    for pid in sandbox.session_pids():  # what an OOM kill of the supervisor would do
        os.kill(pid, signal.SIGKILL)
    runner.join(10)
    (r,) = results
    assert r.status == RunStatus.runtime_error and "session ended" in r.detail, r
    assert r.wall_time_s < 3
    nxt = sandbox.run("python", "print('next')", limits=QUICK)
    assert nxt.status == RunStatus.ok and nxt.stdout == b"next\n" and nxt.extra["session_run"] == 1, nxt


def test_a_forked_service_process_starts_its_own_sessions_and_leaves_the_parents_alone(sandbox):
    before = sandbox.run("python", "print('parent')", limits=QUICK)

    def forked_child_run() -> int:
        pid = os.fork()
        if pid == 0:
            try:
                r = sandbox.run("python", "print('child')", limits=QUICK)
                ok = r.stdout == b"child\n" and r.extra["slot"] != before.extra["slot"] and r.extra["session_run"] == 1
                sandbox.close()  # what a forked worker does before it exits: its sessions go with it
                if not ok:
                    os.write(2, f"forked child got {r}\n".encode())
                os._exit(0 if ok else 1)
            except BaseException as e:  # noqa: BLE001
                os.write(2, f"forked child failed: {type(e).__name__}: {e}\n{traceback.format_exc()}".encode())
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    # The service forks single-threaded workers; pytest's process has the threads of earlier tests,
    # and a fork can catch one of them holding a lock: one more fork before calling it a failure.
    assert forked_child_run() == 0 or forked_child_run() == 0
    after = sandbox.run("python", "print('parent')", limits=QUICK)
    assert same_session(before, after), (before.extra, after.extra)


def test_a_fork_leaves_descriptors_that_reuse_a_closed_sessions_numbers_alone():
    # A closed session still known to its pool (something holds it) kept the numbers of its closed
    # descriptors; a fork closed those numbers again in the child, by then other files' (CI: EBADF).
    sb = ProcessSandbox(dataclasses.replace(ProcessConfig.from_env(), warm=True, warm_sessions=1))
    try:
        assert sb.run("python", "print(1)", limits=QUICK).status == RunStatus.ok
        held = list(sb._sessions._all)
        numbers = {fd for live in held for fd in (live.outer_pidfd, live.inner_pidfd, live.slot.lock_fd) if fd >= 0}
        sb.close()
        assert held and all(live.closed for live in held)
        opened = [os.open(os.devnull, os.O_RDONLY) for _ in range(max(numbers) + 4)]
        reused = [fd for fd in opened if fd in numbers]
        assert reused
        pid = os.fork()
        if pid == 0:
            try:
                for fd in reused:
                    os.fstat(fd)
                os._exit(0)
            except OSError:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child lost a descriptor it had not closed"
        for fd in opened:
            os.close(fd)
    finally:
        sb.close()


def test_a_memory_limit_below_the_supervisors_own_use_is_a_memory_limit_not_a_sandbox_error(sandbox):
    r = sandbox.run("python", "print('small')", limits=dataclasses.replace(QUICK, memory_mb=12))
    assert r.status in (RunStatus.memory_limit, RunStatus.ok), r  # ok: it ran cold
    nxt = sandbox.run("python", "print('next')", limits=QUICK)
    assert nxt.status == RunStatus.ok and nxt.stdout == b"next\n", nxt


def test_a_run_may_recurse_as_deep_as_in_a_fresh_interpreter(sandbox):
    src = "import sys\ndef f(n):\n    return f(n - 1) if n else 0\nf(995)\nprint('deep')"
    bare = __import__("subprocess").run([ProcessConfig.from_env().python, "-I", "-c", src], capture_output=True)
    r = sandbox.run("python", src, limits=QUICK)
    assert bare.stdout == b"deep\n" and r.stdout == b"deep\n", (bare, r)
