"""The compose deployment, end to end, on a real Docker engine.

Images come from the project's scripts (deploy/build-images.sh --standins:
the service image plus local stand-ins for redis and prometheus, since no
image registry may be reachable); grafana is never started here (its image
can't be built locally). Skipped, saying why, where no engine answers or the
local base image (deploy/base/build-base-image.sh) is missing.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
BASE_IMAGE = os.environ.get("BASE_IMAGE", "reward-service-base:bookworm")
HAS_DISTRIBUTED = (REPO / "reward_service" / "worker.py").exists()


def _compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _skip_reason() -> str | None:
    if not shutil.which("docker"):
        return "docker CLI not installed"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "no Docker engine answers (start one with deploy/start-dockerd.sh)"
    if _compose_command() is None:
        return "neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)"
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True).returncode != 0:
        return f"base image {BASE_IMAGE} missing (build it with deploy/base/build-base-image.sh)"
    return None


_reason = _skip_reason()
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.skipif(_reason is not None, reason=_reason or "")]

ADD_TWO = {"inputs": ["1 2\n", "20 22\n"], "outputs": ["3\n", "42\n"]}


# A program looking for the worker's secrets: its environment, other processes'
# environments, and the unmasked procfs the entrypoint mounted for bubblewrap.
SNOOP = """import glob, os
seen = [k for k in os.environ if k.startswith(("REWARD_SERVICE", "REDIS"))]
for path in glob.glob("/proc/[0-9]*/environ"):
    try:
        if b"REWARD_SERVICE" in open(path, "rb").read():
            seen.append(path)
    except OSError:
        pass
if os.path.exists("/run/sandbox-proc"):
    seen.append("/run/sandbox-proc")
print("clean" if not seen else seen)"""


def code_item(source: str, ground_truth=None) -> dict:
    return {"task": "code", "completion": f"```python\n{source}\n```", "ground_truth": ground_truth or ADD_TWO}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """One compose project of this repository's docker-compose.yml, torn down with `down -v`."""

    def __init__(self) -> None:
        self.project = f"rs-test-{os.getpid()}"
        self.api_port, self.prom_port = free_port(), free_port()
        self.env = {**os.environ,
                    "REDIS_IMAGE": "reward-service-redis:local",
                    "PROMETHEUS_IMAGE": "reward-service-prometheus:local",
                    "API_PORT": str(self.api_port), "PROMETHEUS_PORT": str(self.prom_port),
                    "WORKER_REPLICAS": "2", "WORKER_PROCESSES": "1"}
        self.env.pop("REDIS_URL", None)

    def compose(self, *args: str, input: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        # cwd is the repo root: the seccomp profile path in docker-compose.yml is relative to it.
        cmd = [*_compose_command(), "-p", self.project, "-f", str(REPO / "docker-compose.yml"), *args]
        r = subprocess.run(cmd, cwd=REPO, env=self.env, input=input, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r

    def down(self) -> None:
        subprocess.run([*_compose_command(), "-p", self.project, "-f", str(REPO / "docker-compose.yml"),
                        "down", "-v", "--remove-orphans", "-t", "5"],
                       cwd=REPO, env=self.env, capture_output=True, timeout=180)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{self.prom_port}"


@pytest.fixture(scope="module")
def images() -> None:
    r = subprocess.run(["bash", str(REPO / "deploy" / "build-images.sh"), "--standins"], cwd=REPO,
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.fixture
def stack(images) -> Stack:
    s = Stack()
    try:
        yield s
    finally:
        s.down()


def wait_for(check, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.TransportError, ValueError, KeyError) as e:
            last = e
        time.sleep(1)
    raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")


def worker_targets_up(stack: Stack) -> int:
    r = httpx.get(f"{stack.prometheus}/api/v1/targets", params={"state": "active"}, timeout=5).json()
    return sum(1 for t in r["data"]["activeTargets"] if t["labels"]["job"] == "reward-worker" and t["health"] == "up")


def score(stack: Stack, items: list[dict]) -> list[dict]:
    r = httpx.post(f"{stack.api}/score", json={"items": items}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_code_item_is_sandboxed_in_a_worker_container_with_the_compose_security_settings(stack):
    """`compose run worker score` scores in-process: the worker service's own container
    settings (non-root, no capabilities, seccomp profile) must let bubblewrap work."""
    items = [code_item("a, b = map(int, input().split())\nprint(a + b)"),
             code_item("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)\nprint(3)"),
             code_item(SNOOP, {"inputs": [""], "outputs": ["clean\n"]})]
    # The service drops to uid 10000, which can't open the root-owned stdout pipe: results go via a file.
    r = stack.compose("run", "--rm", "--no-deps", "-T", "-e", "REDIS_URL=", "-e", "REWARD_SERVICE_WORKERS=1",
                      "--entrypoint", "sh", "worker", "-c",
                      "reward-service-entrypoint score - -o /tmp/results.jsonl >&2 && cat /tmp/results.jsonl",
                      input="".join(json.dumps(i) + "\n" for i in items))
    results = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [(x["status"], x["reward"]) for x in results] == [("ok", 1.0), ("ok", 0.0), ("ok", 1.0)], results
    assert results[0]["detail"]["sandbox"]["backend"] == "process"
    assert results[1]["detail"]["passed"] == 0  # no network inside the sandbox


@pytest.mark.skipif(not HAS_DISTRIBUTED, reason="distributed mode (reward_service/worker.py) is not in this checkout yet")
def test_stack_scores_batches_and_prometheus_finds_every_worker_replica(stack):
    stack.compose("up", "-d", "redis", "api", "worker", "prometheus")
    wait_for(lambda: httpx.get(f"{stack.api}/readyz", timeout=5).status_code == 200, "API /readyz")

    batch = [{"task": "math", "completion": "\\boxed{4}", "ground_truth": "4"},
             {"task": "mcq", "completion": "The answer is (C).", "ground_truth": "B"},
             code_item("a, b = map(int, input().split())\nprint(a + b)")]
    assert [(r["status"], r["reward"]) for r in score(stack, batch)] == [("ok", 1.0), ("ok", 0.0), ("ok", 1.0)]
    assert wait_for(lambda: worker_targets_up(stack) == 2, "2 worker targets up in Prometheus")

    stack.compose("up", "-d", "--no-recreate", "--scale", "worker=3", "redis", "api", "worker", "prometheus")
    assert wait_for(lambda: worker_targets_up(stack) == 3, "3 worker targets up after --scale worker=3")
    many = [{"task": "math", "completion": f"\\boxed{{{n}}}", "ground_truth": str(n)} for n in range(60)]
    assert {r["status"] for r in score(stack, many + batch)} == {"ok"}

    def worker_health() -> list[str]:
        ids = stack.compose("ps", "-q", "worker").stdout.split()
        r = subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", *ids], capture_output=True, text=True)
        return r.stdout.split()

    assert wait_for(lambda: worker_health() == ["healthy"] * 3, "3 healthy worker containers", timeout=90)
