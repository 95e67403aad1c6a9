"""The process sandbox (bubblewrap) against ordinary and hostile programs, for real: no mocks.

Hostile programs live in tests/hostile/. After every test nothing may be left
running under a sandbox uid, and nothing may have been written to the host.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import re
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from sandbox.process import ProcessConfig, ProcessSandbox
from sandbox.types import Limits, RunStatus, SandboxUnavailable

HOSTILE = Path(__file__).parent / "hostile"
QUICK = Limits(wall_time_s=3, cpu_time_s=2, memory_mb=256, max_processes=16, output_bytes=64 * 1024, file_size_mb=4)

pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap is not installed (apt-get install bubblewrap)")


def hostile(name: str) -> str:
    return (HOSTILE / name).read_text()


def _boot_ticks() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK")


class RecordingSandbox(ProcessSandbox):
    """The real sandbox, remembering which slot uid each run used and when."""

    def __init__(self) -> None:
        super().__init__()
        self.windows: list[tuple[int, float, float]] = []

    def run(self, *args, **kwargs):
        start = _boot_ticks()
        result = super().run(*args, **kwargs)
        if "slot" in result.extra and self.pool.uid_base is not None:
            self.windows.append((self.pool.uid_base + result.extra["slot"], start - 1, _boot_ticks() + 1))
        return result


@pytest.fixture(scope="module")
def sandbox() -> RecordingSandbox:
    sb = RecordingSandbox()
    sb.check()
    yield sb
    sb.close()


def _survivors(windows: list[tuple[int, float, float]], sessions: set[int] = frozenset()) -> list[str]:
    """Host processes started by one of these runs (its slot uid, inside its time window).

    ``sessions``: the live warm sessions' bwrap and supervisor, which outlive runs by design
    (what a run leaves *inside* a warm session is tested in test_sandbox_warm.py).
    """
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) in sessions:
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            started = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        except (OSError, IndexError, ValueError):
            continue
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        if any(uid == u and t0 <= started <= t1 for u, t0, t1 in windows):
            found.append(f"{pid} uid={uid}")
    return found


def _processes_with(marker: str) -> list[str]:
    hits = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                hits.append(pid)
        except OSError:
            pass
    return hits


@pytest.fixture(autouse=True)
def nothing_survives(sandbox: RecordingSandbox):
    sandbox.windows.clear()
    yield
    deadline = time.monotonic() + 2
    while (left := _survivors(sandbox.windows, sandbox.session_pids())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"sandbox processes survived the run: {left}"


# -- ordinary programs -------------------------------------------------------------------


def test_python_reads_stdin_and_writes_stdout(sandbox):
    r = sandbox.run("python", "import sys\nprint(sys.stdin.read().upper())", stdin=b"hello")
    assert r.status == RunStatus.ok, r
    assert r.exit_code == 0
    assert r.stdout == b"HELLO\n"
    assert r.wall_time_s > 0 and r.cpu_time_s > 0


def test_cpp_compiles_and_runs_with_stdin(sandbox):
    src = "#include <iostream>\nint main(){long a,b; std::cin>>a>>b; std::cout<<a*b<<'\\n';}"
    r = sandbox.run("cpp", src, stdin=b"6 7")
    assert r.status == RunStatus.ok, r
    assert r.stdout == b"42\n"


def test_cpp_build_has_its_own_memory_budget_and_the_program_has_memory_mb(sandbox):
    src = ("#include <bits/stdc++.h>\nint main(){ std::vector<char> v; std::regex r(\"a+\");\n"
           " try { v.resize(200u << 20); std::cout << \"allocated\"; } catch (std::bad_alloc&) { std::cout << \"refused\"; } }")
    r = sandbox.run("cpp", src, limits=Limits(wall_time_s=30, memory_mb=128))
    assert r.status == RunStatus.ok, r
    assert r.stdout == b"refused"
    assert r.peak_memory_mb <= 129


def test_cpp_compile_error_carries_the_diagnostics(sandbox):
    r = sandbox.run("cpp", "int main() { return undeclared; }")
    assert r.status == RunStatus.compile_error
    assert "undeclared" in r.compile_output


def test_python_exit_code_is_a_runtime_error(sandbox):
    r = sandbox.run("python", "import sys\nprint('partial')\nsys.exit(3)")
    assert r.status == RunStatus.runtime_error
    assert r.exit_code == 3
    assert r.stdout == b"partial\n"


def test_python_exception_is_a_runtime_error_with_traceback(sandbox):
    r = sandbox.run("python", "1/0")
    assert r.status == RunStatus.runtime_error
    assert r.exit_code == 1
    assert b"ZeroDivisionError" in r.stderr


def test_extra_files_and_argv_reach_the_program(sandbox):
    src = "import sys\nprint(open('data/in.txt').read(), sys.argv[1:])"
    r = sandbox.run("python", src, files={"data/in.txt": b"payload"}, argv=["a", "b c"])
    assert r.status == RunStatus.ok, r
    assert r.stdout == b"payload ['a', 'b c']\n"


def test_program_may_fork_a_few_children_and_run_gxx(sandbox):
    src = (
        "import subprocess\n"
        "open('t.cpp','w').write('int main(){return 7;}')\n"
        "subprocess.run(['g++','-O2','-o','t','t.cpp'],check=True)\n"
        "print(subprocess.run(['./t']).returncode)\n"
    )
    r = sandbox.run("python", src, limits=Limits(wall_time_s=20))
    assert r.status == RunStatus.ok, r
    assert r.stdout == b"7\n"


def test_runs_from_many_threads_stay_separate(sandbox):
    results = {}

    def one(i: int) -> None:
        results[i] = sandbox.run("python", f"import time\ntime.sleep(0.2)\nprint({i})")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {i: (r.status, r.stdout) for i, r in results.items()} == {i: (RunStatus.ok, f"{i}\n".encode()) for i in range(6)}


def test_concurrent_processes_never_share_a_slot_uid(sandbox, tmp_path):
    # Each run reports its host uid and the time it was alive; two worker processes and this one
    # run at once. Overlapping runs must have different uids (RLIMIT_NPROC counts per uid).
    if sandbox.pool.uid_base is None:
        pytest.skip("not root: every run uses the service's uid")
    src = "import os, time\nt0 = time.time(); time.sleep(0.3)\nprint(os.getuid(), t0, time.time())"
    worker = (
        "import sys\nsys.path.insert(0, %r)\nfrom sandbox.process import ProcessSandbox\n"
        "sb = ProcessSandbox()\nfor _ in range(3):\n    print(sb.run('python', %r).stdout.decode(), end='')\n"
    ) % (str(Path(__file__).parent.parent), src)
    procs = [subprocess.Popen([sys.executable, "-c", worker], stdout=subprocess.PIPE) for _ in range(2)]
    lines = [sandbox.run("python", src).stdout.decode() for _ in range(3)]
    lines += [p.communicate(timeout=60)[0].decode() for p in procs]
    runs = [tuple(float(x) for x in line.split()) for chunk in lines for line in chunk.splitlines()]
    assert len(runs) == 9
    for i, (uid, a0, a1) in enumerate(runs):
        for other_uid, b0, b1 in runs[i + 1:]:
            if a0 < b1 and b0 < a1:
                assert uid != other_uid


def test_program_inherits_only_stdin_stdout_and_stderr(sandbox):
    src = "import os\nprint(sorted(int(f) for f in os.listdir('/proc/self/fd')))"
    r = sandbox.run("python", src, files={"extra.txt": b"x"})
    assert r.stdout == b"[0, 1, 2, 3]\n"  # 3: the directory listing itself


def test_check_explains_a_missing_bwrap():
    sb = ProcessSandbox(ProcessConfig(bwrap="/nonexistent/bwrap"))
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        sb.check()


# -- processes ----------------------------------------------------------------------------


def test_python_fork_bomb_is_contained(sandbox):
    r = sandbox.run("python", hostile("fork_bomb.py"), limits=QUICK)
    assert r.status in (RunStatus.timeout, RunStatus.runtime_error), r
    assert r.wall_time_s < QUICK.wall_time_s + 2


def test_cpp_fork_bomb_is_contained(sandbox):
    r = sandbox.run("cpp", hostile("fork_bomb.cpp"), limits=Limits(wall_time_s=3, max_processes=16))
    assert r.status == RunStatus.timeout, r


@pytest.mark.parametrize("cgroups", [True, False], ids=["with-cgroups", "rlimit-only"])
def test_process_limit_bites(cgroups):
    sb = ProcessSandbox(dataclasses.replace(ProcessConfig.from_env(), cgroups=cgroups))
    r = sb.run("python", hostile("count_children.py"), limits=Limits(wall_time_s=5, max_processes=10))
    assert r.status == RunStatus.ok, r
    assert 0 < int(r.stdout) < 10
    assert b"fork failed" in r.stderr


def test_thread_exhaustion_stops_at_the_process_limit(sandbox):
    r = sandbox.run("python", hostile("exhaust_threads.py"), limits=QUICK)
    assert r.status == RunStatus.ok, r
    assert int(r.stdout) < QUICK.max_processes


def test_fd_exhaustion_stops_at_the_descriptor_limit(sandbox):
    r = sandbox.run("python", hostile("exhaust_fds.py"), limits=QUICK)
    assert r.status == RunStatus.ok, r
    count, error = r.stdout.decode().split(" ", 1)
    assert int(count) < 256 and "Too many open files" in error


def test_setsid_daemon_dies_with_the_run_and_leaves_nothing(sandbox):
    marker = f"rs-daemon-{uuid.uuid4().hex}"
    r = sandbox.run("python", hostile("daemon.py"), argv=[marker], limits=QUICK)
    assert r.status == RunStatus.ok, r
    assert r.stdout == b"parent done\n"
    time.sleep(0.5)  # the daemon would write again every 0.1 s if it were alive
    assert _processes_with(marker) == []
    assert not any(Path(d, marker).exists() for d in ("/tmp", "/root", "/box"))


def test_kill_everything_reaches_only_the_sandbox(sandbox):
    r = sandbox.run("python", hostile("kill_everything.py"), argv=[str(os.getpid())], limits=QUICK)
    assert r.status == RunStatus.ok, r
    assert b"still alive" in r.stdout
    assert sandbox.run("python", "print('next')").stdout == b"next\n"


# -- time and output ----------------------------------------------------------------------


def test_cpu_spin_ignoring_signals_is_a_timeout(sandbox):
    r = sandbox.run("python", hostile("cpu_spin.py"), limits=Limits(wall_time_s=30, cpu_time_s=1))
    assert r.status == RunStatus.timeout, r
    assert "CPU" in r.detail  # stopped by the CPU limit (SIGKILL at the hard limit), not the wall clock
    assert r.exit_code == -9


def test_sleeping_forever_hits_the_wall_time_limit(sandbox):
    r = sandbox.run("python", hostile("sleep_forever.py"), limits=Limits(wall_time_s=1))
    assert r.status == RunStatus.timeout
    assert 1 <= r.wall_time_s < 5


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_endless_output_is_cut_and_killed(sandbox, stream):
    r = sandbox.run("python", hostile("endless_output.py"), argv=[stream], limits=QUICK)
    assert r.status == RunStatus.output_limit, r
    assert len(getattr(r, stream)) == QUICK.output_bytes
    assert r.wall_time_s < QUICK.wall_time_s


# -- memory and disk ----------------------------------------------------------------------


def test_python_memory_bomb_that_lifts_its_rlimits_is_a_memory_limit(sandbox):
    r = sandbox.run("python", hostile("memory_bomb.py"), limits=QUICK)
    assert r.status == RunStatus.memory_limit, r
    assert r.peak_memory_mb <= QUICK.memory_mb + 1


def test_cpp_memory_bomb_is_a_memory_limit(sandbox):
    r = sandbox.run("cpp", hostile("memory_bomb.cpp"), limits=Limits(wall_time_s=10, memory_mb=256))
    assert r.status == RunStatus.memory_limit, r


def test_memory_is_bounded_for_the_whole_session_not_per_process(sandbox):
    if not sandbox.pool.use_cgroups:
        pytest.skip(f"no cgroups here: {sandbox.isolation()['cgroups']}")
    r = sandbox.run("python", hostile("memory_bomb_children.py"), limits=Limits(wall_time_s=8, memory_mb=300))
    assert r.status == RunStatus.memory_limit, r
    assert r.peak_memory_mb <= 301


@pytest.mark.parametrize("where", ["/box", "/tmp"])
def test_disk_fill_is_bounded(sandbox, where):
    r = sandbox.run("python", hostile("disk_fill.py"), argv=[where], limits=QUICK)
    assert r.status == RunStatus.ok, r
    report = json.loads(r.stdout)
    assert report["big_bytes"] <= QUICK.file_size_mb << 20
    assert report["big_error"] == "File too large"
    assert report["many_error"] == "No space left on device"
    assert report["many_bytes"] <= 64 << 20


# -- confinement --------------------------------------------------------------------------


def test_secrets_in_the_environment_and_host_files_stay_out(sandbox, monkeypatch):
    secret = f"hunter2-{uuid.uuid4().hex}"
    monkeypatch.setenv("REWARD_SERVICE_FAKE_SECRET", secret)
    r = sandbox.run("python", hostile("read_secrets.py"), limits=QUICK)
    assert r.status == RunStatus.ok, r
    out = r.stdout.decode()
    assert secret not in out
    env = eval(out.splitlines()[0][len("ENV "):])  # the program's own environment, as printed
    assert set(env) <= {"PATH", "LANG", "HOME", "PWD", "LC_CTYPE"}
    for path in ("/etc/shadow", "/etc/passwd", "/root/.bashrc", "/work/notes/preamble.md", "/home"):
        assert f"{path} No such file or directory" in out


def test_loopback_services_of_the_host_are_unreachable(sandbox):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        r = sandbox.run("python", hostile("connect_loopback.py"), argv=[str(port)], limits=QUICK)
        assert r.status == RunStatus.ok, r
        assert b"CONNECTED" not in r.stdout
        assert [line.split()[0] for line in r.stdout.splitlines()] == [b"refused"] * 4
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


def test_nothing_a_run_listens_on_survives_into_the_next_run_of_its_slot(tmp_path):
    # Slots reuse one network namespace across runs: a listener left by a daemon must be gone.
    config = dataclasses.replace(ProcessConfig.from_env(), slots=1, uid_base=3_000_900, state_dir=str(tmp_path))
    sb = ProcessSandbox(config)
    name = f"rs-listener-{uuid.uuid4().hex}"
    listen = ("import os, socket, time\ns = socket.socket(socket.AF_UNIX); s.bind('\\0%s'); s.listen()\n"
              "if os.fork() == 0:\n    os.setsid(); time.sleep(30)\nprint('listening')") % name
    connect = ("import socket\ntry:\n    socket.socket(socket.AF_UNIX).connect('\\0%s'); print('CONNECTED')\n"
               "except OSError as e:\n    print(e.strerror)") % name
    assert sb.run("python", listen, limits=QUICK).stdout == b"listening\n"
    assert sb.run("python", connect, limits=QUICK).stdout == b"Connection refused\n"
    sb.close()


def test_kernel_interfaces_no_program_needs_are_refused(sandbox):
    if "deny-list" not in sandbox.isolation()["seccomp"]:
        pytest.skip("no seccomp filter on this architecture")
    r = sandbox.run("python", hostile("kernel_doors.py"), limits=QUICK)
    assert r.status == RunStatus.ok, r
    refused = json.loads(r.stdout)
    assert refused == dict.fromkeys(refused, errno.EPERM)


def test_writes_outside_the_work_dir_do_not_reach_the_host(sandbox):
    name = f"rs-escape-{uuid.uuid4().hex}"
    r = sandbox.run("python", hostile("write_outside.py"), argv=[name], limits=QUICK)
    assert r.status == RunStatus.ok, r
    out = r.stdout.decode()
    for d in ("/work", "/root", "/usr", "/etc", "/"):
        assert f"denied {d} " in out
    host_dirs = ("/tmp", "/work", "/work/main", "/root", "/home", "/usr", "/etc", "/", "/dev/shm", os.getcwd())
    assert not any(Path(d, name).exists() for d in host_dirs)


def test_a_spawned_shell_is_just_as_confined(sandbox):
    r = sandbox.run("python", hostile("shell.py"), limits=QUICK)
    assert r.status == RunStatus.ok, r
    out = r.stdout.decode()
    uid = int(out.split()[0])
    assert uid != 0
    assert "/etc/shadow: No such file" in out
    assert "Read-only file system" in out
    assert re.search(r"/dev/tcp/127.0.0.1/22: (Connection refused|Network is unreachable)", out)


# -- compile bombs ------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["include_urandom.cpp", "template_bomb.cpp"])
def test_compile_bombs_are_bounded_and_leave_the_sandbox_healthy(sandbox, source):
    strict = ProcessSandbox(dataclasses.replace(ProcessConfig.from_env(), compile_time_s=4, compile_memory_mb=512))
    t0 = time.monotonic()
    r = strict.run("cpp", hostile(source), limits=Limits(wall_time_s=2))
    assert r.status == RunStatus.compile_error, r
    assert time.monotonic() - t0 < 4 + 2
    assert sandbox.run("python", "print('ok')").stdout == b"ok\n"


def test_cpp_compile_time_does_not_count_against_the_program(sandbox):
    src = "#include <bits/stdc++.h>\nint main(){ std::cout << std::regex_match(\"aa\", std::regex(\"a+\")); }"
    r = sandbox.run("cpp", src, limits=Limits(wall_time_s=0.5, cpu_time_s=1))
    assert r.status == RunStatus.ok, r
    assert r.stdout == b"1"
    assert r.extra["compile_time_s"] > r.wall_time_s
