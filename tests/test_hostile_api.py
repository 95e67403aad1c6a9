"""Hostile programs sent through the public API, against the real service and sandbox.

Each earns reward 0 with a clear status while the service stays healthy; no
process outlives its run, no file appears outside the sandbox, and nothing
reaches services on the host's loopback (a stand-in listener and the API itself).
Probes that test containment print ESCAPED/LEAKED on success and the test
expects exactly that output, so a reward of 0 *is* the proof of containment.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from live_service import running_service

HOSTILE = Path(__file__).parent / "hostile"
SECRET = f"hunter2-{uuid.uuid4().hex}"
MARKER = f"rs-hostile-{uuid.uuid4().hex[:12]}"
OPTS = {"test_timeout_s": 2, "total_timeout_s": 10}
NEVER = "the-correct-answer-42"


def python(source: str, *argv: str) -> str:
    return f"```python\nimport sys\nsys.argv[1:] = {list(argv)!r}\n{source}\n```"


def cpp(source: str) -> str:
    return f"```cpp\n{source}\n```"


def item(completion: str, expected: str = NEVER) -> dict:
    return {"task": "code", "completion": completion,
            "ground_truth": {"inputs": ["\n"], "outputs": [expected]}, "options": OPTS}


@pytest.fixture(scope="module")
def loopback_listener():
    """A TCP service on the host's loopback, standing in for Redis; counts connections."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    accepted = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                accepted.append(1)
                conn.close()
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], accepted
    stop.set()
    t.join()
    srv.close()


@pytest.fixture(scope="module")
def service():
    with running_service(workers=2, REWARD_SERVICE_SANDBOX_BACKEND="process",
                         REWARD_SERVICE_SANDBOX_REQUIRED="true", SERVICE_SECRET=SECRET) as url:
        yield url


def score(url: str, it: dict) -> dict:
    r = httpx.post(f"{url}/score", json={"items": [it]}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["results"][0]


def assert_contained(url: str, result: dict) -> None:
    assert result["reward"] == 0.0 and result["status"] in ("ok", "timeout"), result
    # the service is still healthy and still scores correctly
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    good = score(url, item(python("print(input() + 'ok')"), "ok"))
    assert good["reward"] == 1.0, good


def leftover_processes(marker: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if marker.encode() in (p / "cmdline").read_bytes():
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


@pytest.mark.parametrize("name,argv", [
    ("fork_bomb.py", []), ("memory_bomb.py", []), ("memory_bomb_children.py", []), ("cpu_spin.py", []),
    ("sleep_forever.py", []), ("endless_output.py", ["stdout"]), ("endless_output.py", ["stderr"]),
    ("disk_fill.py", ["."]), ("disk_fill.py", ["/tmp"]), ("exhaust_threads.py", []), ("exhaust_fds.py", []),
    ("shell.py", []),
])
def test_hostile_python_earns_nothing(service, name, argv):
    result = score(service, item(python((HOSTILE / name).read_text(), *argv)))
    assert result["detail"].get("first_failure") or result["status"] == "timeout"
    assert_contained(service, result)


@pytest.mark.parametrize("name", ["fork_bomb.cpp", "memory_bomb.cpp", "include_urandom.cpp", "template_bomb.cpp"])
def test_hostile_cpp_earns_nothing(service, name):
    result = score(service, item(cpp((HOSTILE / name).read_text())))
    assert_contained(service, result)


def test_daemon_does_not_outlive_its_run_or_leave_files(service):
    result = score(service, item(python((HOSTILE / "daemon.py").read_text(), MARKER)))
    assert_contained(service, result)
    time.sleep(1.5)  # the daemon meant to act later
    assert leftover_processes(MARKER) == []
    assert not any(Path(d, MARKER).exists() for d in ("/tmp", "/root", "/work", str(Path.cwd())))


def test_killing_everything_leaves_service_and_caller_alive(service):
    result = score(service, item(python((HOSTILE / "kill_everything.py").read_text(), str(os.getpid()))))
    assert_contained(service, result)
    assert httpx.get(f"{service}/readyz", timeout=5).json()["ready"] is True


WRITE_PROBE = """
import os
name = sys.argv[1]
for d in ("/tmp", "/work", "/root", "/home", "/usr", "/etc", "/", "/dev/shm", os.path.expanduser("~")):
    try:
        open(os.path.join(d, name), "w").write("x")
        if os.path.realpath(d) not in (os.getcwd(),):
            print("ESCAPED")
    except OSError:
        pass
"""


def test_writes_outside_the_work_dir_do_not_reach_the_host(service):
    result = score(service, item(python(WRITE_PROBE, MARKER), "ESCAPED"))
    assert_contained(service, result)
    for d in ("/tmp", "/work", "/root", "/home", "/usr", "/etc", "/", "/dev/shm"):
        assert not Path(d, MARKER).exists(), d


SECRET_PROBE = """
import glob, os
secret = sys.argv[1]
found = secret in repr(dict(os.environ))
for path in glob.glob("/proc/*/environ"):
    try:
        found |= secret.encode() in open(path, "rb").read()
    except OSError:
        pass
try:
    open("/etc/shadow").read()
    found = True
except OSError:
    pass
print("LEAKED" if found else "contained")
"""


def test_secrets_are_not_readable(service):
    result = score(service, item(python(SECRET_PROBE, SECRET), "LEAKED"))
    assert result["detail"]["first_failure"]["got"].strip() == "contained"
    assert_contained(service, result)


CONNECT_PROBE = """
import socket
for port in sys.argv[1:]:
    for host in ("127.0.0.1", "localhost", "::1"):
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            print("ESCAPED", host, port)
        except OSError:
            pass
print("contained")
"""


def test_loopback_services_are_unreachable(service, loopback_listener):
    port, accepted = loopback_listener
    api_port = service.rsplit(":", 1)[1]
    result = score(service, item(python(CONNECT_PROBE, str(port), api_port), "ESCAPED"))
    assert result["detail"]["first_failure"]["got"].strip() == "contained"
    assert accepted == []
    assert_contained(service, result)
