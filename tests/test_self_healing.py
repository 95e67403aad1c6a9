"""The embedded pool when a scoring worker cannot be restarted, against the real service.

The worker restart fails for real: with ``REWARD_SERVICE_FAULT_WORKER_START`` naming a file that
exists, every new scoring child exits (code 70) before it is ready, as it would when the host
refuses it memory. The service must not hang a request, must say why in /readyz, and must recover
on its own once children can start again.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import tempfile
import time

import httpx
import pytest

try:  # tests/ as a package or as a plain directory on sys.path
    from tests.live_service import running_service
except ImportError:
    from live_service import running_service
from reward_service.executors.base import Job
from reward_service.executors.embedded import POOL_DOWN_AFTER_S, default_batch_timeout_s

SLOW_MATH = r"\boxed{9^{9^{9^{9^{9}}}}}"  # only a kill stops sympy on this: the worker is replaced
LIMIT_S = 2.0


def math_item(n: int) -> dict:
    return {"task": "math", "completion": rf"\boxed{{{n}}}", "ground_truth": str(n)}


def metric(url: str, prefix: str) -> float:
    return metric_text(httpx.get(f"{url}/metrics").text, prefix)


def metric_text(text: str, prefix: str) -> float:
    return next((float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)), 0.0)


@pytest.fixture
def flag():
    path = os.path.join(tempfile.mkdtemp(prefix="rs-fault-"), "fail-worker-start")
    yield path
    if os.path.exists(path):
        os.remove(path)


def test_request_does_not_hang_when_the_worker_cannot_be_restarted_and_the_pool_recovers(flag):
    env = {"REWARD_SERVICE_FAULT_WORKER_START": flag, "REWARD_SERVICE_TASK_TIMEOUTS": json.dumps({"math": LIMIT_S}),
           "REWARD_SERVICE_CHUNK_SIZE": "8"}  # one chunk: the slow item and the rest on the same worker
    with running_service(workers=1, **env) as url:
        assert httpx.get(f"{url}/readyz").status_code == 200
        open(flag, "w").close()  # from now on, a new scoring child dies at start
        items = [{"task": "math", "completion": SLOW_MATH, "ground_truth": "5"}] + [math_item(n) for n in range(3)]
        t0 = time.monotonic()
        # No timeout_s and no REWARD_SERVICE_BATCH_TIMEOUT_S: nothing but the pool bounds this wait.
        body = httpx.post(f"{url}/score", json={"items": items}, timeout=120).json()
        waited = time.monotonic() - t0
        assert waited < LIMIT_S + POOL_DOWN_AFTER_S + 15
        assert body["results"][0]["status"] == "timeout"  # the overrun item is answered at its limit
        # the rest had no worker to run on: error saying why, not a hang and not a wrong reward
        assert [r["status"] for r in body["results"][1:]] == ["error"] * 3
        assert "could be started" in body["results"][1]["detail"]["error"]
        assert "exited with code 70" in body["results"][1]["detail"]["error"]

        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503
        assert "cannot be restarted" in ready.json()["detail"] and "exited with code 70" in ready.json()["detail"]
        assert metric(url, "reward_worker_start_failures_total") >= 2  # kept trying
        assert metric(url, "reward_workers_unstartable") == 1

        t0 = time.monotonic()
        down = httpx.post(f"{url}/score", json={"items": [math_item(1)]}, timeout=30).json()
        assert down["results"][0]["status"] == "error" and time.monotonic() - t0 < 2  # answered at once

        os.remove(flag)  # the host lets children start again
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, httpx.get(f"{url}/readyz").json()
            time.sleep(0.5)
        assert metric(url, "reward_workers_unstartable") == 0
        again = httpx.post(f"{url}/score", json={"items": [math_item(n) for n in range(4)]}, timeout=60).json()
        assert [r["reward"] for r in again["results"]] == [1.0] * 4


def test_a_worker_that_cannot_be_restarted_leaves_the_others_serving(flag):
    env = {"REWARD_SERVICE_FAULT_WORKER_START": flag, "REWARD_SERVICE_TASK_TIMEOUTS": json.dumps({"math": LIMIT_S}),
           "REWARD_SERVICE_CHUNK_SIZE": "1"}
    with running_service(workers=2, **env) as url:
        open(flag, "w").close()
        slow = {"task": "math", "completion": SLOW_MATH, "ground_truth": "5"}
        body = httpx.post(f"{url}/score", json={"items": [slow] + [math_item(n) for n in range(6)]}, timeout=120).json()
        assert body["results"][0]["status"] == "timeout"
        assert [r["reward"] for r in body["results"][1:]] == [1.0] * 6  # the surviving worker scored them
        ready = httpx.get(f"{url}/readyz").json()
        assert ready["ready"] and "1/2 scoring workers alive" in ready["detail"]
        assert "cannot be restarted" in ready["detail"]


def test_default_deadline_is_twice_the_healthy_worst_case_plus_slack():
    jobs = [Job("math", "", "1", None, None, 5.0)] * 8
    assert default_batch_timeout_s(jobs, 4) == 2 * (40 / 4 + 5) + 30
    assert default_batch_timeout_s([], 4) == 30.0


def test_concurrent_requests_all_return_while_the_pool_is_down(flag):
    env = {"REWARD_SERVICE_FAULT_WORKER_START": flag, "REWARD_SERVICE_TASK_TIMEOUTS": json.dumps({"math": LIMIT_S})}
    with running_service(workers=1, **env) as url:
        open(flag, "w").close()
        slow = {"task": "math", "completion": SLOW_MATH, "ground_truth": "5"}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futs = [pool.submit(httpx.post, f"{url}/score", json={"items": [slow]}, timeout=120)]
            time.sleep(1.0)  # the slow item is on the only worker; these queue behind it
            futs += [pool.submit(httpx.post, f"{url}/score", json={"items": [math_item(k)]}, timeout=120)
                     for k in range(1, 4)]
            bodies = [f.result(timeout=120).json() for f in futs]
        statuses = sorted(b["results"][0]["status"] for b in bodies)
        assert statuses == ["error", "error", "error", "timeout"]


# -- distributed: an RQ worker host whose scoring child can't be restarted ------------------------------------
def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def scoring_children(pid: int) -> list[int]:
    """Scoring children under a `reward-service worker` supervisor: the forkserver's children."""
    servers = [p for p in descendants(pid) if b"forkserver" in open(f"/proc/{p}/cmdline", "rb").read()]
    return [c for s in servers for c in descendants(s)]


def test_rq_worker_that_cannot_restart_its_scoring_child_hands_chunks_back_to_healthy_workers(flag):
    from fastapi.testclient import TestClient

    from reward_service.api import create_app
    from reward_service.config import Settings
    try:
        from tests.redis_fixtures import Workers, redis_running
    except ImportError:
        from redis_fixtures import Workers, redis_running

    with redis_running() as rs:
        healthy = Workers(rs, 1, queues="math")
        broken = Workers(rs, 1, queues="math", REWARD_SERVICE_FAULT_WORKER_START=flag)
        try:
            healthy.wait_ready()
            broken.wait_ready()
            open(flag, "w").close()
            for child in scoring_children(broken.proc.pid):  # its scoring child dies; no new one can start
                os.kill(child, 9)
            with TestClient(create_app(Settings(REDIS_URL=rs.url, sandbox_required=False, lost_chunk_after_s=1.0,
                                                redis_timeout_s=1.0, chunk_size=2))) as c:
                items = [math_item(n) for n in range(20)]
                body = c.post("/score", json={"items": items, "timeout_s": 60}).json()
                # every item scored right, by the healthy worker, none answered `error` by the broken one
                assert [r["reward"] for r in body["results"]] == [1.0] * 20, body["summary"]
                deadline = time.monotonic() + 30
                # the whole log: the supervisor's failed restarts (a traceback each) can push the
                # exit line out of the tail while the first request is still being answered
                while "exited (code 75)" not in broken.log(tail=None):
                    assert time.monotonic() < deadline, broken.log()
                    time.sleep(0.2)
                assert broken.proc.poll() is None  # the supervisor keeps retrying
                os.remove(flag)
                deadline = time.monotonic() + 60
                # back: both hosts' workers announced again (what /readyz and reward_queue_workers count)
                while metric_text(c.get("/metrics").text, 'reward_queue_workers{queue="rs:math"}') < 2:
                    assert time.monotonic() < deadline, broken.log()
                    time.sleep(0.5)
                again = c.post("/score", json={"items": [math_item(n) for n in range(8)], "timeout_s": 60}).json()
                assert [r["reward"] for r in again["results"]] == [1.0] * 8
        finally:
            healthy.stop()
            broken.stop()
