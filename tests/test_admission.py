"""Admission control (REWARD_SERVICE_MAX_PENDING_ITEMS) against the real service: embedded, and two API
replicas sharing a real redis-server with real RQ workers."""
from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

try:  # tests/ as a package or as a plain directory on sys.path
    from tests.live_service import free_port, running_service
    from tests.redis_fixtures import redis_server, workers_running  # noqa: F401  (fixtures)
except ImportError:
    from live_service import free_port, running_service
    from redis_fixtures import redis_server, workers_running  # noqa: F401  (fixtures)
from reward_service.client import RewardClient

REPO = Path(__file__).resolve().parent.parent
SLOW_MATH = r"\boxed{9^{9^{9^{9^{9}}}}}"  # sympy grinds on this in C code until the item limit kills it
LIMIT_S = 2.0
MAX_PENDING = 4
ENV = {"REWARD_SERVICE_MAX_PENDING_ITEMS": str(MAX_PENDING), "REWARD_SERVICE_TASK_TIMEOUTS": json.dumps({"math": LIMIT_S})}


def math_item(n: int) -> dict:
    return {"task": "math", "completion": rf"\boxed{{{n}}}", "ground_truth": str(n)}


def slow_item(n: int) -> dict:  # distinct completions, so they aren't merged into one
    return {"task": "math", "completion": SLOW_MATH + " " * n, "ground_truth": "5"}


def in_background(fn, *args) -> concurrent.futures.Future:
    return concurrent.futures.ThreadPoolExecutor(1).submit(fn, *args)


def wait_pending(url: str, at_least: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while metric(httpx.get(f"{url}/metrics").text, "reward_pending_items") < at_least:
        assert time.monotonic() < deadline, "the first request was never counted as pending"
        time.sleep(0.05)


def metric(text: str, prefix: str) -> float:
    return next((float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)), 0.0)


def wait_ready(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while httpx.get(f"{url}/readyz").status_code != 200:
        assert time.monotonic() < deadline, httpx.get(f"{url}/readyz").json()
        time.sleep(0.2)


# -- embedded ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def embedded():
    with running_service(workers=1, **ENV) as url:
        wait_ready(url)
        yield url


def test_request_past_the_limit_gets_429_with_retry_after_and_the_accepted_one_completes(embedded):
    accepted = in_background(lambda: httpx.post(f"{embedded}/score", timeout=60,
                                                json={"items": [slow_item(0), slow_item(1), math_item(3)]}))
    wait_pending(embedded, 3)
    refused = httpx.post(f"{embedded}/score", json={"items": [math_item(1), math_item(2)]})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "REWARD_SERVICE_MAX_PENDING_ITEMS" in refused.json()["detail"]
    body = accepted.result(timeout=60).json()
    assert [r["status"] for r in body["results"]] == ["timeout", "timeout", "ok"]
    # the refused request was not scored: only the accepted request's 3 items were counted
    text = httpx.get(f"{embedded}/metrics").text
    assert metric(text, 'reward_admission_refusals_total{reason="overloaded"}') >= 1
    assert metric(text, "reward_pending_items") == 0


def test_capacity_comes_back_when_accepted_items_finish(embedded):
    ok = httpx.post(f"{embedded}/score", json={"items": [math_item(n) for n in range(MAX_PENDING)]})
    assert ok.status_code == 200 and [r["reward"] for r in ok.json()["results"]] == [1.0] * MAX_PENDING


def test_request_larger_than_the_limit_is_413_naming_it(embedded):
    r = httpx.post(f"{embedded}/score", json={"items": [math_item(n) for n in range(MAX_PENDING + 1)]})
    assert r.status_code == 413
    assert f"at most {MAX_PENDING}" in r.json()["detail"] and "REWARD_SERVICE_MAX_PENDING_ITEMS" in r.json()["detail"]


def test_openrlhf_and_jobs_count_against_the_same_limit(embedded):
    job = httpx.post(f"{embedded}/jobs", json={"items": [slow_item(5), slow_item(6), slow_item(7)]})
    assert job.status_code == 202
    wait_pending(embedded, 3)
    rlhf = httpx.post(f"{embedded}/openrlhf", json={"query": ["\\boxed{1}", "\\boxed{2}"], "labels": ["1", "2"]})
    assert rlhf.status_code == 429 and "retry-after" in rlhf.headers
    assert httpx.post(f"{embedded}/jobs", json={"items": [math_item(1), math_item(2)]}).status_code == 429
    deadline = time.monotonic() + 60
    while (st := httpx.get(job.json()["status_url"]).json())["status"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert st["result"]["summary"]["by_status"] == {"timeout": 3}
    rlhf = httpx.post(f"{embedded}/openrlhf", json={"query": ["\\boxed{1}", "\\boxed{2}"], "labels": ["1", "2"]})
    assert rlhf.status_code == 200 and rlhf.json()["rewards"] == [1.0, 1.0]


def test_client_retries_429_until_admitted(embedded):
    accepted = in_background(lambda: httpx.post(f"{embedded}/score", timeout=60,
                                                json={"items": [slow_item(10), slow_item(11), math_item(3)]}))
    wait_pending(embedded, 3)
    before = metric(httpx.get(f"{embedded}/metrics").text, 'reward_admission_refusals_total{reason="overloaded"}')
    with RewardClient(embedded, retries=10, backoff_s=0.2, max_backoff_s=3) as rc:
        results = rc.score([math_item(1), math_item(2)])
    assert [r.reward for r in results] == [1.0, 1.0]
    after = metric(httpx.get(f"{embedded}/metrics").text, 'reward_admission_refusals_total{reason="overloaded"}')
    assert after > before  # it was refused at least once and got in on a retry
    assert accepted.result(timeout=60).status_code == 200


# -- distributed: two API replicas, one Redis -------------------------------------------------------------------
@pytest.fixture(scope="module")
def replicas(redis_server):
    with workers_running(redis_server, count=1):
        env = dict(ENV, REDIS_URL=redis_server.url)
        with running_service(**env) as a, running_service(**env) as b:
            wait_ready(a)
            wait_ready(b)
            yield a, b


def test_items_pending_on_one_replica_count_on_another(replicas):
    a, b = replicas
    accepted = in_background(lambda: httpx.post(f"{a}/score", timeout=60,
                                                json={"items": [slow_item(0), slow_item(1), math_item(3)]}))
    wait_pending(a, 3)
    refused = httpx.post(f"{b}/score", json={"items": [math_item(1), math_item(2)]})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "3 items pending" in refused.json()["detail"]
    assert [r["status"] for r in accepted.result(timeout=60).json()["results"]] == ["timeout", "timeout", "ok"]
    again = httpx.post(f"{b}/score", json={"items": [math_item(1), math_item(2)]})
    assert again.status_code == 200 and [r["reward"] for r in again.json()["results"]] == [1.0, 1.0]


def test_job_posted_to_one_replica_is_read_from_the_other(replicas):
    a, b = replicas
    job = httpx.post(f"{a}/jobs", json={"items": [math_item(n) for n in range(MAX_PENDING)]})
    assert job.status_code == 202
    deadline = time.monotonic() + 60
    while (st := httpx.get(f"{b}/jobs/{job.json()['job_id']}").json())["status"] != "done":
        assert time.monotonic() < deadline, st
        time.sleep(0.1)
    assert [r["reward"] for r in st["result"]["results"]] == [1.0] * MAX_PENDING
    # its items were given back: a full-size request fits again on either replica
    assert httpx.post(f"{b}/score", json={"items": [math_item(n) for n in range(MAX_PENDING)]}).status_code == 200


def test_reservations_of_a_replica_that_is_sigkilled_expire(redis_server, replicas):
    from reward_service.admission import _KEYS, RESERVATION_TTL_S

    a, _ = replicas
    r = redis_server.client()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARD_SERVICE_") and k != "REDIS_URL"}
    env.update(ENV, REDIS_URL=redis_server.url, PYTHONPATH=str(REPO), REWARD_SERVICE_SANDBOX_REQUIRED="false")
    doomed = subprocess.Popen([sys.executable, "-m", "uvicorn", "reward_service.api:create_app", "--factory",
                               "--port", str(port), "--log-level", "warning"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and doomed.poll() is None, "replica did not start"
            time.sleep(0.2)
        in_background(lambda: httpx.post(f"{url}/score", timeout=60, json={"items": [slow_item(n) for n in range(3)]}))
        wait_pending(url, 3)
        doomed.send_signal(signal.SIGKILL)  # no clean stop: its reservation stays in Redis
        doomed.wait(10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    held, _, _ = _KEYS
    assert r.hlen(held) == 1
    refused = httpx.post(f"{a}/score", json={"items": [math_item(1), math_item(2)]})
    assert refused.status_code == 429  # the dead replica's 3 items still count, for now
    t0 = time.monotonic()
    while (ok := httpx.post(f"{a}/score", json={"items": [math_item(1), math_item(2)]})).status_code == 429:
        assert time.monotonic() - t0 < RESERVATION_TTL_S + 10, "the dead replica's reservation never expired"
        time.sleep(1)
    assert ok.status_code == 200 and r.hlen(held) == 0
