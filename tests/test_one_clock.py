"""Distributed deadlines on one clock (Redis ``TIME``): real redis-server, real RQ workers whose wall
clock is wrong by an hour.

The skew comes from REWARD_SERVICE_FAULT_CLOCK_OFFSET_S, which offsets ``time.time`` in each worker
process. libfaketime would be the outside mechanism, but under it Python 3.11's timed waits hang
(``threading.Condition.wait``) or fail (``time.sleep``: EINVAL with FAKETIME_DONT_FAKE_MONOTONIC).
"""
from __future__ import annotations

import time

import httpx
from fastapi.testclient import TestClient

try:  # tests/ as a package or as a plain directory on sys.path
    from tests.redis_fixtures import Workers, redis_server  # noqa: F401  (fixtures)
except ImportError:
    from redis_fixtures import Workers, redis_server  # noqa: F401  (fixtures)
from reward_service.api import create_app
from reward_service.config import Settings

SLOW_MATH = r"\boxed{9^{9^{9^{9^{9}}}}}"  # only a kill stops sympy on this
ITEM_LIMIT_S = 30.0


def skewed_workers(redis_server, offset_s: float) -> Workers:
    w = Workers(redis_server, 1, queues="math", REWARD_SERVICE_FAULT_CLOCK_OFFSET_S=str(offset_s))
    w.wait_ready()
    return w


def math_item(n: int) -> dict:
    return {"task": "math", "completion": rf"\boxed{{{n}}}", "ground_truth": str(n)}


def app(url: str) -> TestClient:
    return TestClient(create_app(Settings(REDIS_URL=url, sandbox_required=False, redis_timeout_s=1.0,
                                          task_timeouts={"math": ITEM_LIMIT_S})))


def test_worker_whose_clock_runs_an_hour_ahead_still_scores_before_the_deadline(redis_server):
    w = skewed_workers(redis_server, 3600)
    try:
        with app(redis_server.url) as c:
            body = c.post("/score", json={"items": [math_item(n) for n in range(5)], "timeout_s": 20}).json()
    finally:
        w.stop()
    # On its own clock every deadline has long passed; by Redis's, 20 s are left.
    assert [r["status"] for r in body["results"]] == ["ok"] * 5


def test_worker_whose_clock_runs_an_hour_behind_stops_at_the_batch_deadline(redis_server):
    w = skewed_workers(redis_server, -3600)
    try:
        with app(redis_server.url) as c:
            t0 = time.monotonic()
            slow = c.post("/score", json={"items": [{"task": "math", "completion": SLOW_MATH, "ground_truth": "5"}],
                                          "timeout_s": 2}).json()
            assert slow["results"][0]["status"] == "timeout"
            assert time.monotonic() - t0 < 5
            # On its own clock an hour was left; by Redis's the batch was over, so the worker stopped the
            # item at the deadline (replacing its scoring child), not at the item's 30 s limit.
            deadline = time.monotonic() + 10
            while worker_metric(w, 'reward_worker_restarts_total{reason="batch_expired"}') < 1:
                assert time.monotonic() < deadline, "the worker did not stop the item at the batch deadline"
                time.sleep(0.2)
            fast = c.post("/score", json={"items": [math_item(7)], "timeout_s": 20}).json()
            assert fast["results"][0]["reward"] == 1.0
    finally:
        w.stop()


def worker_metric(w: Workers, prefix: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{w.metrics_port}/metrics").text
    return next((float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)), 0.0)
