"""The docker sandbox backend against a real engine and the real sandbox image.

Everything but the unreachable-engine test is skipped, with the reason shown,
when no engine answers or the image is missing (deploy/start-dockerd.sh,
deploy/sandbox/build-image.sh).
"""
from __future__ import annotations

import dataclasses
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from sandbox.docker import DockerConfig, DockerSandbox
from sandbox.types import Limits, RunStatus, SandboxUnavailable

FAST = Limits(wall_time_s=3, cpu_time_s=2)


def _config(pool_size: int) -> DockerConfig:
    """The configured image and runtime (REWARD_SERVICE_* env), with a test-sized pool."""
    return dataclasses.replace(DockerConfig.from_env(), pool_size=pool_size)


def _engine_problem() -> str | None:
    try:
        DockerSandbox(_config(1)).check()
    except SandboxUnavailable as e:
        return str(e)
    return None


@pytest.fixture(scope="module")
def sandbox():
    problem = _engine_problem()
    if problem:
        pytest.skip(f"docker sandbox unavailable: {problem}")
    # One container: consecutive runs provably share it.
    sb = DockerSandbox(_config(1))
    yield sb
    sb.close()


def run_py(sandbox, source: str, limits: Limits = FAST, **kw):
    return sandbox.run("python", source, limits=limits, **kw)


# -- availability ------------------------------------------------------------

def test_check_names_the_problem_when_no_engine_answers(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(SandboxUnavailable, match="no Docker engine reachable"):
        DockerSandbox(DockerConfig(pool_size=1)).check()


def test_check_names_the_build_script_when_the_image_is_missing(sandbox):
    with pytest.raises(SandboxUnavailable, match="deploy/sandbox/build-image.sh"):
        DockerSandbox(DockerConfig(image="reward-service-no-such-image:nope", pool_size=1)).check()


def test_check_refuses_a_runtime_the_engine_does_not_know(sandbox):
    with pytest.raises(SandboxUnavailable, match="REWARD_SERVICE_DOCKER_RUNTIME"):
        DockerSandbox(DockerConfig(runtime="no-such-runtime", pool_size=1)).check()


# -- ordinary programs -------------------------------------------------------

def test_python_reads_stdin_and_writes_stdout(sandbox):
    r = run_py(sandbox, "import sys\nprint(sys.stdin.read().upper(), end='')", stdin=b"hello docker")
    assert r.status == RunStatus.ok, r
    assert r.exit_code == 0
    assert r.stdout == b"hello docker".upper()


def test_files_are_placed_beside_the_program(sandbox):
    r = run_py(sandbox, "print(open('solution.py').read(), end='')", files={"solution.py": b"answer = 42\n"})
    assert r.status == RunStatus.ok, r
    assert r.stdout == b"answer = 42\n"


def test_cpp_is_compiled_and_run_with_stdin(sandbox):
    src = "#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a*b<<'\\n';return 0;}\n"
    r = sandbox.run("cpp", src, stdin=b"6 7", limits=FAST)
    assert r.status == RunStatus.ok, r
    assert r.stdout == b"42\n"


def test_cpp_that_does_not_build_is_a_compile_error_with_diagnostics(sandbox):
    r = sandbox.run("cpp", "int main() { return undefined_name; }\n", limits=FAST)
    assert r.status == RunStatus.compile_error
    assert "undefined_name" in r.compile_output


def test_python_exception_is_a_runtime_error_with_its_traceback(sandbox):
    r = run_py(sandbox, "raise ValueError('boom')")
    assert r.status == RunStatus.runtime_error
    assert r.exit_code == 1
    assert b"ValueError: boom" in r.stderr


def test_cpp_crash_is_a_runtime_error_with_the_signal(sandbox):
    r = sandbox.run("cpp", "int main() { volatile int *p = nullptr; *p = 1; }\n", limits=FAST)
    assert r.status == RunStatus.runtime_error, r
    assert r.exit_code == -11


# -- limits ------------------------------------------------------------------

def test_cpu_spin_ignoring_sigterm_times_out(sandbox):
    r = run_py(sandbox, "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: pass",
               limits=Limits(wall_time_s=5, cpu_time_s=1))
    assert r.status == RunStatus.timeout, r
    assert "CPU" in r.detail


def test_sleeping_forever_times_out_on_the_wall_clock(sandbox):
    r = run_py(sandbox, "import time\ntime.sleep(3600)", limits=Limits(wall_time_s=1, cpu_time_s=1))
    assert r.status == RunStatus.timeout, r
    assert "wall" in r.detail
    assert r.wall_time_s < 3


def test_closing_its_output_does_not_let_a_program_escape_the_wall_clock(sandbox):
    r = run_py(sandbox, "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(3600)",
               limits=Limits(wall_time_s=1, cpu_time_s=1))
    assert r.status == RunStatus.timeout, r
    assert "outside" not in r.detail  # the supervisor's own clock caught it

def test_memory_bomb_is_a_memory_limit(sandbox):
    bomb = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))"
    r = run_py(sandbox, bomb, limits=Limits(wall_time_s=10, cpu_time_s=10, memory_mb=128))
    assert r.status == RunStatus.memory_limit, r


def test_a_program_that_outlives_its_childs_memory_bomb_succeeds_and_says_so(sandbox):
    parent = (
        "import os\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    chunks = []\n"
        "    while True:\n"
        "        chunks.append(bytearray(16 << 20))\n"
        "print(os.waitpid(pid, 0)[1])\n"
    )
    r = run_py(sandbox, parent, limits=Limits(wall_time_s=10, cpu_time_s=10, memory_mb=128))
    assert r.status == RunStatus.ok, r
    # The child is stopped at the limit: by its address-space limit (MemoryError, exit 1) or,
    # past it, by the container's OOM killer (SIGKILL), which the detail then mentions.
    assert r.stdout in (b"256\n", b"9\n"), r
    if r.stdout == b"9\n":
        assert "out-of-memory" in r.detail

def test_cpp_memory_bomb_is_a_memory_limit(sandbox):
    bomb = ("#include <cstring>\n#include <vector>\n"
            "int main() { std::vector<char*> v; for (;;) { char *p = new char[1 << 24];"
            " std::memset(p, 1, 1 << 24); v.push_back(p); } }\n")
    r = sandbox.run("cpp", bomb, limits=Limits(wall_time_s=10, cpu_time_s=10, memory_mb=128))
    assert r.status == RunStatus.memory_limit, r

def test_memory_limit_can_be_raised_above_the_containers_starting_budget(sandbox):
    hog = "x = bytearray(700 << 20)\nprint(len(x) >> 20)"
    r = run_py(sandbox, hog, limits=Limits(wall_time_s=10, cpu_time_s=10, memory_mb=1024))
    assert r.status == RunStatus.ok, r
    assert r.stdout == b"700\n"


def test_process_limit_bounds_the_session(sandbox):
    forks = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(30):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print(n)\n"
    )
    r = run_py(sandbox, forks, limits=Limits(wall_time_s=5, cpu_time_s=5, max_processes=8))
    assert r.status == RunStatus.ok, r
    assert int(r.stdout) == 7  # the program itself is one of the 8

def test_fork_bomb_is_contained_and_the_next_run_works(sandbox):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    r = run_py(sandbox, bomb, limits=Limits(wall_time_s=2, cpu_time_s=2))
    assert r.status != RunStatus.ok
    after = run_py(sandbox, "print('alive')")
    assert after.status == RunStatus.ok, after
    assert after.stdout == b"alive\n"


def test_endless_output_is_cut_at_the_limit(sandbox):
    r = run_py(sandbox, "while True:\n    print('x' * 1000)",
               limits=Limits(wall_time_s=5, cpu_time_s=5, output_bytes=64 << 10))
    assert r.status == RunStatus.output_limit, r
    assert len(r.stdout) == 64 << 10


def test_filling_the_work_tmpfs_fails_inside_and_leaves_nothing_behind(sandbox):
    fill = (
        "import errno\n"
        "block = b'x' * (1 << 20)\n"
        "try:\n"
        "    for i in range(10000):\n"
        "        with open(f'fill{i}', 'wb') as f:\n"
        "            for _ in range(8):\n"
        "                f.write(block)\n"
        "except OSError as e:\n"
        "    print(errno.errorcode[e.errno])\n"
    )
    r = run_py(sandbox, fill, limits=Limits(wall_time_s=20, cpu_time_s=20, memory_mb=512))
    assert r.status == RunStatus.ok, r
    assert r.stdout.strip() in (b"ENOSPC", b"EFBIG"), r
    after = run_py(sandbox, "import os\nprint(sorted(os.listdir('/work')) == ['main.py'] and os.getcwd() == '/work')")
    assert after.stdout == b"True\n", after


def test_a_program_cannot_signal_the_sandbox_supervisor(sandbox):
    probe = (
        "import os, signal\n"
        "for sig in (signal.SIGSTOP, signal.SIGKILL):\n"
        "    os.kill(os.getppid(), sig)\n"
        "print(os.getppid(), 'still supervised')\n"
    )
    r = run_py(sandbox, probe)
    assert r.status == RunStatus.ok, r
    assert r.stdout == b"1 still supervised\n"


def test_a_sandbox_that_stops_answering_is_cut_off_from_outside_and_replaced(sandbox):
    frozen = run_py(sandbox, "pass").extra["container"]
    sandbox._docker().api.pause(frozen)  # the whole container, supervisor included, stops
    r = run_py(sandbox, "print('never runs')", limits=Limits(wall_time_s=1, cpu_time_s=1))
    assert r.status == RunStatus.timeout, r
    assert "outside" in r.detail
    after = run_py(sandbox, "print('next')")
    assert after.stdout == b"next\n"
    assert after.extra["container"] != frozen


# -- isolation between runs --------------------------------------------------

DAEMON = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            with open('/work/daemon-was-here', 'w') as f:
                f.write('x')
            time.sleep(0.05)
    os._exit(0)
time.sleep(0.3)
print(os.path.exists('/work/daemon-was-here'))
"""

LOOK_AROUND = """
import os
mine = {1, os.getpid()}
foreign = [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in mine]
print(foreign, sorted(os.listdir('/work')) == ['main.py'] and os.getcwd() == '/work', os.listdir('/dev/shm'))
"""


def test_a_setsid_daemon_does_not_survive_into_the_next_run(sandbox):
    first = run_py(sandbox, DAEMON)
    assert first.status == RunStatus.ok, first
    assert first.stdout == b"True\n"  # the daemon really ran
    second = run_py(sandbox, LOOK_AROUND)
    assert second.extra["container"] == first.extra["container"]  # same warm container
    assert second.stdout == b"[] True []\n", second


def test_unreadable_directories_and_links_left_behind_are_still_wiped(sandbox):
    jam = (
        "import os\n"
        "os.makedirs('d/e/f')\n"
        "open('d/e/f/x', 'w').write('x')\n"
        "os.chmod('d/e', 0)\n"
        "os.chmod('d', 0o100)\n"
        "os.symlink('/', '/work/root-link')\n"
        "os.mkfifo('/work/fifo')\n"
        "os.makedirs('/dev/shm/a/b')\n"
        "os.chmod('/dev/shm/a', 0)\n"
    )
    first = run_py(sandbox, jam)
    assert first.status == RunStatus.ok, first
    second = run_py(sandbox, LOOK_AROUND)
    assert second.stdout == b"[] True []\n", second
    assert second.extra["container"] == first.extra["container"]  # cleaned, not replaced

def test_sysv_shared_memory_does_not_survive_into_the_next_run(sandbox):
    make = ("import ctypes\n"
            "libc = ctypes.CDLL(None)\n"
            "print(libc.shmget(0, 4096, 0o1600) >= 0)\n")  # IPC_PRIVATE, IPC_CREAT | 0600
    first = run_py(sandbox, make)
    assert first.stdout == b"True\n", first
    second = run_py(sandbox, "print(open('/proc/sysvipc/shm').read().splitlines()[1:])")
    assert second.extra["container"] == first.extra["container"]
    assert second.stdout == b"[]\n", second


def test_the_program_cannot_read_the_supervisors_memory_or_descriptors(sandbox):
    probe = (
        "for path in ('/proc/1/fd/0', '/proc/1/fd/1', '/proc/1/mem', '/proc/1/environ'):\n"
        "    try:\n"
        "        open(path, 'rb').read(1)\n"
        "        print(path, 'readable')\n"
        "    except OSError:\n"
        "        print(path, 'denied')\n"
    )
    r = run_py(sandbox, probe)
    assert r.stdout.decode().split() == ["/proc/1/fd/0", "denied", "/proc/1/fd/1", "denied",
                                         "/proc/1/mem", "denied", "/proc/1/environ", "denied"]

def test_killing_every_process_from_inside_does_not_break_the_pool(sandbox):
    kill_all = (
        "import os, signal, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "os.kill(-1, signal.SIGKILL)\n"
        "print(os.waitpid(-1, 0)[1] == signal.SIGKILL)\n"
    )
    r = run_py(sandbox, kill_all)
    assert r.stdout == b"True\n", r  # its children died, the supervisor did not
    after = run_py(sandbox, "print('still here')")
    assert after.status == RunStatus.ok, after
    assert after.stdout == b"still here\n"
    assert after.extra["container"] == r.extra["container"]


# -- what the program can reach ----------------------------------------------

def test_no_network_not_even_the_hosts_loopback_listener(sandbox):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    probe = (
        "import os, socket\n"
        "print(sorted(os.listdir('/sys/class/net')))\n"
        f"for host in ('127.0.0.1', '172.17.0.1', '8.8.8.8'):\n"
        "    try:\n"
        f"        socket.create_connection((host, {port}), timeout=1).close()\n"
        "        print(host, 'connected')\n"
        "    except OSError as e:\n"
        "        print(host, 'refused')\n"
    )
    try:
        r = run_py(sandbox, probe)
    finally:
        server.close()
    assert r.status == RunStatus.ok, r
    assert r.stdout.decode().splitlines() == ["['lo']", "127.0.0.1 refused", "172.17.0.1 refused", "8.8.8.8 refused"]


def test_environment_holds_no_secrets(sandbox, monkeypatch):
    monkeypatch.setenv("REWARD_SERVICE_TEST_SECRET", "hunter2")
    r = run_py(sandbox, "import os\nprint(sorted(os.environ))\nprint('hunter2' in str(os.environ))")
    assert r.status == RunStatus.ok, r
    keys, leaked = r.stdout.decode().splitlines()
    assert keys == "['HOME', 'LANG', 'PATH', 'TMPDIR']"
    assert leaked == "False"


def test_root_filesystem_is_read_only_outside_the_work_dir_and_tmp(sandbox):
    # /tmp is a size-limited tmpfs of the container (toolchains write there), wiped after every run.
    probe = (
        "for path in ('/etc/evil', '/tmp/evil', '/usr/bin/evil', '/evil', 'ok-here'):\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print(path, 'written')\n"
        "    except OSError:\n"
        "        print(path, 'denied')\n"
    )
    r = run_py(sandbox, probe)
    assert r.stdout.decode().splitlines() == [
        "/etc/evil denied", "/tmp/evil written", "/usr/bin/evil denied", "/evil denied", "ok-here written"]
    after = run_py(sandbox, "import os\nprint(os.listdir('/tmp'))")
    assert after.stdout == b"[]\n", after


def test_no_docker_socket_inside(sandbox):
    probe = "import os\nprint([p for p in ('/var/run/docker.sock', '/run/docker.sock') if os.path.exists(p)])"
    assert run_py(sandbox, probe).stdout == b"[]\n"

def test_runs_as_non_root_without_capabilities(sandbox):
    probe = (
        "import os\n"
        "caps = [l.split()[1] for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapBnd'))]\n"
        "print(os.getuid(), os.geteuid(), os.getgid(), caps)"
    )
    r = run_py(sandbox, probe)
    assert r.stdout == b"10001 10001 10001 ['0000000000000000', '0000000000000000']\n", r


# -- python runs forked from the warm supervisor -------------------------------

@pytest.fixture(scope="module")
def forked(sandbox):
    """A one-container sandbox in fork mode whatever REWARD_SERVICE_DOCKER_FORK says."""
    if sandbox.config.fork_python:
        yield sandbox
        return
    sb = DockerSandbox(dataclasses.replace(sandbox.config, fork_python=True))
    yield sb
    sb.close()


FORKED = "print(open('/proc/self/cmdline', 'rb').read().split(b'\\0')[-2] != b'main.py')"


def test_python_runs_are_forked_by_default_and_exec_a_fresh_interpreter_when_switched_off(forked, monkeypatch):
    assert DockerConfig().fork_python
    assert run_py(forked, FORKED).stdout == b"True\n"
    monkeypatch.setenv("REWARD_SERVICE_DOCKER_FORK", "0")
    exec_sb = DockerSandbox(_config(1))
    try:
        assert not exec_sb.config.fork_python
        r = run_py(exec_sb, FORKED)
    finally:
        exec_sb.close()
    assert r.status == RunStatus.ok and r.stdout == b"False\n", r


def test_daemon_files_and_module_patches_of_a_forked_run_do_not_reach_the_next(forked):
    patch = ("import os, sys, json, math, builtins, time\n"
             "json.dumps = lambda *a, **k: 'hacked'\n"
             "math.pi = 3\n"
             "builtins.len = lambda x: 0\n"
             "sys.modules['collections'] = None\n"
             "sys.path.insert(0, '/work')\n"
             "open('/work/heapq.py', 'w').write('hacked = True')\n"
             "open('/dev/shm/left', 'w').write('x')\n"
             "if os.fork() == 0:\n"
             "    os.setsid()\n"
             "    if os.fork() == 0:\n"
             "        while True:\n"
             "            time.sleep(0.05)\n"
             "    os._exit(0)\n"
             "print('patched', open('/proc/self/cmdline', 'rb').read().split(b'\\0')[-2] != b'main.py')")
    look = ("import os, sys, json, math, collections, heapq\n"
            "mine = {1, os.getpid()}\n"
            "print(json.dumps([1]), math.pi == 3.141592653589793, len('ab'), '/work' in sys.path,"
            " hasattr(heapq, 'hacked'), os.listdir('/dev/shm'), (os.listdir('/work') == ['main.py'] and os.getcwd() == '/work'),"
            " [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in mine])")
    first = run_py(forked, patch)
    second = run_py(forked, look)
    assert first.stdout == b"patched True\n", first
    assert second.extra["container"] == first.extra["container"]
    assert second.stdout == b"[1] True 2 False False [] True []\n", second


INVERT = bytes(range(255, -1, -1))
# Scans its own memory for byte strings it only holds inverted (so its needles can't match
# themselves): a forked run is a copy of the supervisor, which carried the earlier runs' data.
SCAN_MEMORY = """
INVERT = bytes(range(255, -1, -1))
needles = [bytes.fromhex(h) for h in %r]
chunks = []
with open('/proc/self/maps') as f:
    regions = f.read().splitlines()
with open('/proc/self/mem', 'rb', buffering=0) as mem:
    for line in regions:
        fields = line.split()
        lo, hi = (int(x, 16) for x in fields[0].split('-'))
        if 'r' in fields[1] and fields[-1] not in ('[vvar]', '[vsyscall]'):
            try:
                mem.seek(lo)
                chunks.append(mem.read(hi - lo))
            except OSError:
                pass
print(sorted({i for c in chunks for i, n in enumerate(needles) if n in c.translate(INVERT)}), len(chunks) > 5)
"""


def test_a_forked_run_finds_no_earlier_runs_data_in_its_memory(forked):
    marks = [b"S3cretMark-%d-" % i for i in range(7)]
    files = {"tiny.txt": marks[0], "mid.txt": marks[1] + b"m" * 700, "big.txt": marks[2] + b"b" * 300_000}
    source = ("import sys\nsys.stdin.buffer.read()\n"
              "print(bytes.fromhex(%r).decode() * 3)\nprint(bytes.fromhex(%r).decode() + 'e' * 2000, file=sys.stderr)"
              % (marks[5].hex(), marks[6].hex()))
    first = run_py(forked, source, stdin=marks[3] + b"s" * 5000, files=files)
    tiny_stdin = run_py(forked, "import sys\nsys.stdin.read()", stdin=marks[4])
    assert first.status == tiny_stdin.status == RunStatus.ok, (first, tiny_stdin)
    scan = run_py(forked, SCAN_MEMORY % ([m.translate(INVERT).hex() for m in marks],),
                  limits=Limits(wall_time_s=10, cpu_time_s=8, memory_mb=512))
    assert scan.extra["container"] == first.extra["container"]
    assert scan.stdout == b"[] True\n", scan


def test_a_forked_run_looks_like_a_fresh_interpreter(forked):
    src = ("import sys, signal\n"
           "print(__name__, sys.argv, __file__.endswith('/main.py'), sys.stdin.read())\n"
           "print(signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL, signal.set_wakeup_fd(-1))\n"
           "print(sys.stdout.encoding, sys.stdout.errors, sys.stderr.line_buffering)\n"
           "exit(4)")
    r = run_py(forked, src, stdin=b"in", argv=["x"])
    assert r.status == RunStatus.runtime_error and r.exit_code == 4, r
    assert r.stdout == b"__main__ ['main.py', 'x'] True in\nTrue -1\nutf-8 surrogateescape True\n", r


def test_a_forked_run_killed_on_the_wall_clock_leaves_the_container_usable(forked):
    r = run_py(forked, "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)",
               limits=Limits(wall_time_s=0.5, cpu_time_s=1))
    assert r.status == RunStatus.timeout, r
    after = run_py(forked, "print(6 * 7)")
    assert after.stdout == b"42\n" and after.extra["container"] == r.extra["container"], after


# -- concurrency -------------------------------------------------------------

def test_concurrent_runs_from_several_threads_each_get_their_own_answer():
    problem = _engine_problem()
    if problem:
        pytest.skip(f"docker sandbox unavailable: {problem}")
    sb = DockerSandbox(_config(2))
    try:
        with ThreadPoolExecutor(4) as ex:
            results = list(ex.map(lambda i: sb.run("python", "print(input() * 2)", stdin=f"{i}\n".encode(),
                                                   limits=FAST), range(8)))
    finally:
        sb.close()
    assert [r.stdout for r in results] == [f"{i}{i}\n".encode() for i in range(8)]
    assert len({r.extra["container"] for r in results}) <= 2
