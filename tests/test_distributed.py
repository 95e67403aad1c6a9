"""Distributed mode against a real redis-server and real `reward-service worker` processes."""
from __future__ import annotations

import concurrent.futures
import os
import signal
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from rq import Worker

try:  # tests/ as a package or as a plain directory on sys.path
    from tests.live_service import running_service
    from tests.redis_fixtures import Workers, redis_running, redis_server, workers_running  # noqa: F401  (fixtures)
except ImportError:
    from live_service import running_service
    from redis_fixtures import Workers, redis_running, redis_server, workers_running  # noqa: F401  (fixtures)
from reward_service.api import create_app
from reward_service.config import Settings

SLOW_MATH = r"\boxed{9^{9^{9^{9^{9}}}}}"  # sympy grinds on this in C code; only a kill stops it
MATH_LIMIT_S = 3.0


def math_item(n: int, gold: int | None = None, **kw) -> dict:
    return {"task": "math", "completion": rf"so the answer is \boxed{{{n}}}", "ground_truth": str(n if gold is None else gold), **kw}


def mcq_item(letter: str, gold: str, **kw) -> dict:
    return {"task": "mcq", "completion": f"The answer is ({letter})", "ground_truth": gold, **kw}


def settings(url: str, **kw) -> Settings:
    base = dict(sandbox_required=False, task_timeouts={"math": MATH_LIMIT_S}, lost_chunk_after_s=1.5,
                redis_timeout_s=1.0)
    return Settings(REDIS_URL=url, **{**base, **kw})


@pytest.fixture(scope="module")
def workers(redis_server):
    with workers_running(redis_server, count=2) as w:
        yield w


@pytest.fixture(scope="module")
def client(redis_server, workers):
    with TestClient(create_app(settings(redis_server.url))) as c:
        wait_ready(c)
        yield c


def wait_ready(c: TestClient, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while c.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, c.get("/readyz").json()
        time.sleep(0.2)


def worker_busy_for(redis_server, seconds: float) -> Worker:
    """The RQ worker that has been on one chunk for ``seconds`` (a slow item)."""
    r = redis_server.client()
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for w in Worker.all(connection=r):
            if w.get_state() == "busy" and os.path.exists(f"/proc/{w.pid}"):
                since = seen.setdefault(w.name, time.monotonic())
                if time.monotonic() - since >= seconds:
                    return w
            else:
                seen.pop(w.name, None)
        time.sleep(0.05)
    raise AssertionError("no worker stayed busy on a chunk")


def kill_worker_busy_for(redis_server, seconds: float) -> int:
    """SIGKILL the RQ worker process that has been on one chunk for ``seconds``; its pid."""
    pid = worker_busy_for(redis_server, seconds).pid
    os.kill(pid, signal.SIGKILL)
    return pid


def score_in_background(c: TestClient, body: dict) -> concurrent.futures.Future:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    return pool.submit(lambda: c.post("/score", json=body))


def metric(text: str, line_prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- end to end ---------------------------------------------------------------------------------------------
def test_batch_is_scored_by_workers_in_order_with_duplicates_merged(client):
    items = [math_item(n, id=f"m{n}") for n in range(30)] + [math_item(7, 8, id="wrong")]
    items += [mcq_item("B", "B", id="mcq-right"), mcq_item("C", "B", id="mcq-wrong")] * 3
    body = client.post("/score", json={"items": items}).json()
    assert [r["id"] for r in body["results"]] == [i["id"] for i in items]
    assert [r["reward"] for r in body["results"]] == [1.0] * 30 + [0.0] + [1.0, 0.0] * 3
    assert body["summary"]["unique_items"] == 33


def test_unknown_task_is_invalid_without_a_queue(client):
    body = client.post("/score", json={"items": [{"task": "nope", "completion": "x"}, math_item(2)]}).json()
    assert [r["status"] for r in body["results"]] == ["invalid", "ok"]


def test_readyz_names_each_queue_and_its_workers(client):
    detail = client.get("/readyz").json()["detail"]
    assert "rs:math=2" in detail and "rs:mcq=2" in detail


def test_api_exposes_queue_depth_and_worker_count(client):
    text = client.get("/metrics").text
    assert metric(text, 'reward_queue_workers{queue="rs:math"}') == 2
    assert 'reward_queue_depth{queue="rs:code"}' in text
    assert metric(text, "reward_redis_up") == 1


def test_worker_host_metrics_count_items_by_task_and_status(client, workers):
    client.post("/score", json={"items": [math_item(1), math_item(1, 2)]})
    text = httpx.get(f"http://127.0.0.1:{workers.metrics_port}/metrics").text
    assert metric(text, 'reward_items_total{status="ok",task="math"}') >= 2
    assert "reward_item_seconds_bucket" in text and "reward_worker_chunks_total" in text


def test_item_overrunning_its_limit_times_out_and_rest_of_batch_is_scored(client):
    items = [math_item(0) | {"completion": SLOW_MATH, "ground_truth": "5"}] + [math_item(n) for n in range(8)]
    t0 = time.monotonic()
    body = client.post("/score", json={"items": items}).json()
    assert body["results"][0]["status"] == "timeout"
    assert all(r["reward"] == 1.0 for r in body["results"][1:])
    assert time.monotonic() - t0 < MATH_LIMIT_S * 4


def test_small_batch_is_not_queued_behind_all_of_a_big_one(client):
    big = score_in_background(client, {"items": [math_item(n) for n in range(3000)]})
    time.sleep(0.5)
    small = client.post("/score", json={"items": [math_item(n, id=str(n)) for n in range(4)]}).json()
    assert not big.done()  # answered while the big batch is still being scored
    assert [r["reward"] for r in small["results"]] == [1.0] * 4
    assert big.result(timeout=120).json()["summary"]["by_status"] == {"ok": 3000}


# -- fault tolerance ----------------------------------------------------------------------------------------
def test_chunk_of_a_sigkilled_worker_is_rerun_by_another_worker(client, workers):
    before = metric(client.get("/metrics").text, 'reward_chunk_retries_total{queue="rs:math"}')
    slow = math_item(0) | {"completion": SLOW_MATH, "ground_truth": "5"}
    pending = score_in_background(client, {"items": [slow] + [math_item(n) for n in range(1, 6)], "timeout_s": 60})
    kill_worker_busy_for(workers.redis_server, 0.5)
    body = pending.result(timeout=60).json()
    # re-run to its limit by a live worker: a timeout from the item limit, not a lost chunk
    assert body["results"][0]["status"] == "timeout"
    assert "item limit" in body["results"][0]["detail"]["error"]
    assert all(r["reward"] == 1.0 for r in body["results"][1:])
    assert metric(client.get("/metrics").text, 'reward_chunk_retries_total{queue="rs:math"}') == before + 1
    workers.wait_ready()  # the supervisor replaced the killed worker


def test_chunk_past_its_retries_comes_back_as_error(redis_server, workers):
    with TestClient(create_app(settings(redis_server.url, chunk_retries=0))) as c:
        wait_ready(c)
        slow = math_item(0) | {"completion": SLOW_MATH, "ground_truth": "5"}
        pending = score_in_background(c, {"items": [slow, math_item(1)], "timeout_s": 60})
        kill_worker_busy_for(redis_server, 0.5)
        t0 = time.monotonic()
        body = pending.result(timeout=60).json()
        assert time.monotonic() - t0 < 10  # noticed within seconds, not at the deadline
    assert body["results"][0]["status"] == "error"
    assert "REWARD_SERVICE_CHUNK_RETRIES=0" in body["results"][0]["detail"]["error"]
    assert body["results"][1]["reward"] == 1.0
    workers.wait_ready()


def test_sigterm_lets_workers_finish_their_chunk_then_stop():
    with redis_running() as rs:
        w = Workers(rs, 1, queues="math")
        try:
            w.wait_ready()
            with TestClient(create_app(settings(rs.url))) as c:
                slow = math_item(0) | {"completion": SLOW_MATH, "ground_truth": "5"}
                pending = score_in_background(c, {"items": [math_item(n) for n in range(1, 4)] + [slow],
                                                  "timeout_s": 30})
                worker_busy_for(rs, 0.5)
                w.proc.send_signal(signal.SIGTERM)
                body = pending.result(timeout=60).json()
                assert w.proc.wait(30) == 0
        finally:
            w.stop()
    assert [r["reward"] for r in body["results"][:3]] == [1.0] * 3
    assert body["results"][3]["status"] == "timeout" and "item limit" in body["results"][3]["detail"]["error"]


# -- two API replicas ---------------------------------------------------------------------------------------
def test_two_api_replicas_sharing_redis_never_mix_results(redis_server, workers):
    with running_service(REDIS_URL=redis_server.url) as a, running_service(REDIS_URL=redis_server.url) as b:
        def batch(k: int, url: str) -> tuple[int, dict]:
            items = [math_item(k * 100 + n, id=f"{k}-{n}") for n in range(20)]
            items[k % 20] = math_item(k * 100 + k % 20, -1, id=f"{k}-{k % 20}")  # one wrong answer per batch
            return k, httpx.post(f"{url}/score", json={"items": items}, timeout=60).json()

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda k: batch(k, a if k % 2 else b), range(8)))
    for k, body in answers:
        assert [r["id"] for r in body["results"]] == [f"{k}-{n}" for n in range(20)]
        assert [r["reward"] for r in body["results"]] == [0.0 if n == k % 20 else 1.0 for n in range(20)]
        assert [r["detail"]["extracted"] for r in body["results"]] == [str(k * 100 + n) for n in range(20)]


# -- /jobs ----------------------------------------------------------------------------------------------------
def test_job_shows_progress_and_results_to_any_replica(redis_server, client):
    items = [math_item(n, id=str(n)) for n in range(600)]
    accepted = client.post("/jobs", json={"items": items})
    assert accepted.status_code == 202
    job_id = accepted.json()["job_id"]
    with TestClient(create_app(settings(redis_server.url))) as other:  # another replica, same Redis
        seen = []
        deadline = time.monotonic() + 60
        while True:
            st = other.get(f"/jobs/{job_id}").json()
            seen.append(st["status"])
            if st["status"] == "done" or time.monotonic() > deadline:
                break
            assert st["total"] == 600 and 0 <= st["done"] <= 600 and st["result"] is None
            time.sleep(0.05)
    assert st["status"] == "done" and st["done"] == 600
    assert [r["id"] for r in st["result"]["results"]] == [str(n) for n in range(600)]
    assert st["result"]["summary"]["mean_reward"] == 1.0
    assert set(seen) <= {"queued", "running", "done"}


def test_unknown_job_is_404(client):
    assert client.get("/jobs/not-a-job").status_code == 404


# -- hostile code ---------------------------------------------------------------------------------------------
FORK_BOMB = "```python\nimport os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n```"
SPIN = "```python\nwhile True:\n    pass\n```"
ADD = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
ADD_TESTS = {"inputs": ["1 2\n", "5 7\n"], "outputs": ["3\n", "12\n"]}


def test_hostile_code_is_contained_and_worker_keeps_serving(client, workers):
    try:
        from verifiers.tasks import code  # noqa: F401
    except ImportError:
        pytest.skip("the code task has not landed (verifiers/tasks/code.py)")
    opts = {"test_timeout_s": 1.0, "total_timeout_s": 3.0}
    items = [{"task": "code", "completion": c, "ground_truth": ADD_TESTS, "options": opts} for c in (FORK_BOMB, SPIN, ADD)]
    body = client.post("/score", json={"items": items}).json()
    assert [r["reward"] for r in body["results"]] == [0.0, 0.0, 1.0], body
    assert client.post("/score", json={"items": [math_item(3)]}).json()["results"][0]["reward"] == 1.0
    # Sandbox outcomes are counted once, by the API; the worker host that ran them doesn't count them again.
    assert 'reward_sandbox_runs_total{backend="process",status="ok"}' in client.get("/metrics").text
    text = httpx.get(f"http://127.0.0.1:{workers.metrics_port}/metrics").text
    assert "reward_sandbox_runs_total{" not in text


# -- a Redis of their own with one math-only worker: an unserved queue, then an outage -------------------------
@pytest.fixture(scope="module")
def math_only():
    with redis_running() as rs, workers_running(rs, count=1, queues="math"):
        with TestClient(create_app(settings(rs.url))) as c:
            yield rs, c


def test_readyz_fails_naming_a_queue_no_worker_serves(math_only):
    _, c = math_only
    time.sleep(1.2)
    ready = c.get("/readyz")
    assert ready.status_code == 503 and "rs:mcq" in ready.json()["detail"] and "rs:math" not in ready.json()["detail"]


def test_item_for_an_unserved_queue_times_out_at_the_deadline_saying_why(math_only):
    _, c = math_only
    t0 = time.monotonic()
    body = c.post("/score", json={"items": [mcq_item("B", "B"), math_item(2)], "timeout_s": 1.5}).json()
    assert time.monotonic() - t0 < 5
    assert body["results"][0]["status"] == "timeout"
    assert "still queued on rs:mcq (0 live worker(s)" in body["results"][0]["detail"]["error"]
    assert body["results"][1]["reward"] == 1.0


def test_redis_outage_answers_503_quickly_and_service_recovers_without_restart(math_only):
    rs, c = math_only
    assert c.post("/score", json={"items": [math_item(1)]}).status_code == 200
    rs.stop()
    t0 = time.monotonic()
    down = c.post("/score", json={"items": [math_item(1)]})
    assert down.status_code == 503 and "unreachable" in down.json()["detail"]
    assert time.monotonic() - t0 < 5
    time.sleep(1.2)
    assert "unreachable" in c.get("/readyz").json()["detail"]
    assert c.post("/jobs", json={"items": [math_item(1)]}).status_code == 503
    rs.start()
    deadline = time.monotonic() + 30
    while "unreachable" in c.get("/readyz").json()["detail"]:
        assert time.monotonic() < deadline, c.get("/readyz").json()
        time.sleep(0.2)
    body = c.post("/score", json={"items": [math_item(4), math_item(4, 5)]}).json()
    assert [r["reward"] for r in body["results"]] == [1.0, 0.0]
