"""The HTTP contract of POST /score and friends, against the real app and worker pool."""
import threading
import time

import pytest
from fastapi.testclient import TestClient

from reward_service.api import create_app
from reward_service.config import Settings

SLOW_MATH = r"\boxed{9^{9^{9^{9^{9}}}}}"  # sympy grinds on this in C code; only a kill stops it
LIMIT_S = 2.0


def item(completion=r"\boxed{4}", gold="4", task="math", **kw):
    return {"task": task, "completion": completion, "ground_truth": gold, **kw}


@pytest.fixture(scope="module")
def client():
    settings = Settings(workers=2, sandbox_required=False, task_timeouts={"math": LIMIT_S},
                        max_items=50, max_body_mb=0.5)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def keyed_client():
    settings = Settings(workers=1, sandbox_required=False, api_key="s3cret")
    with TestClient(create_app(settings)) as c:
        yield c


def test_one_result_per_item_in_order(client):
    items = [item(r"\boxed{%d}" % i, str(i), id=f"q{i}") for i in range(20)]
    results = client.post("/score", json={"items": items}).json()["results"]
    assert [r["id"] for r in results] == [f"q{i}" for i in range(20)]
    assert all(r["reward"] == 1.0 for r in results)


def test_result_has_contract_fields(client):
    r = client.post("/score", json={"items": [item(id="a")]}).json()["results"][0]
    assert set(r) == {"id", "task", "reward", "status", "detail", "elapsed_ms", "raw_reward", "advantage", "cached"}
    assert (r["id"], r["task"], r["status"]) == ("a", "math", "ok")


def test_summary_counts_and_mean(client):
    body = client.post("/score", json={"items": [item(), item(r"\boxed{5}"), item(task="nope")]}).json()
    s = body["summary"]
    assert s["count"] == 3 and s["by_status"] == {"ok": 2, "invalid": 1}
    assert s["mean_reward"] == pytest.approx(1 / 3)


def test_unknown_task_is_invalid_and_rest_of_batch_scored(client):
    r = client.post("/score", json={"items": [item(task="nope"), item()]}).json()["results"]
    assert r[0]["status"] == "invalid" and "unknown task" in r[0]["detail"]["error"]
    assert r[1]["reward"] == 1.0


def test_unusable_ground_truth_is_invalid(client):
    r = client.post("/score", json={"items": [item(gold={"solution": 4})]}).json()["results"][0]
    assert r["status"] == "invalid" and r["reward"] == 0.0


def test_item_without_completion_is_422_naming_field(client):
    resp = client.post("/score", json={"items": [{"task": "math"}]})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "items", 0, "completion"]


def test_item_without_task_is_422(client):
    resp = client.post("/score", json={"items": [{"completion": "x"}]})
    assert resp.status_code == 422 and resp.json()["detail"][0]["loc"][-1] == "task"


def test_malformed_json_is_422(client):
    resp = client.post("/score", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 422


def test_too_many_items_is_413(client):
    resp = client.post("/score", json={"items": [item()] * 51})
    assert resp.status_code == 413 and "at most 50" in resp.json()["detail"]


def test_body_over_size_limit_is_413(client):
    resp = client.post("/score", json={"items": [item("x" * 600_000)]})
    assert resp.status_code == 413


def test_key_required_when_configured(keyed_client):
    assert keyed_client.post("/score", json={"items": [item()]}).status_code == 401
    assert keyed_client.get("/tasks", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_right_key_is_accepted(keyed_client):
    resp = keyed_client.post("/score", json={"items": [item()]}, headers={"Authorization": "Bearer s3cret"})
    assert resp.status_code == 200 and resp.json()["results"][0]["reward"] == 1.0


def test_healthz_and_metrics_need_no_key(keyed_client):
    assert keyed_client.get("/healthz").status_code == 200
    assert keyed_client.get("/metrics").status_code == 200


def test_identical_items_are_scored_once(client):
    body = client.post("/score", json={"items": [item()] * 8 + [item(r"\boxed{5}")] * 8}).json()
    assert body["summary"]["unique_items"] == 2
    assert [r["reward"] for r in body["results"]] == [1.0] * 8 + [0.0] * 8


def test_pathological_item_times_out_without_stalling_batch(client):
    items = [item(SLOW_MATH, "5")] + [item(r"\boxed{%d}" % i, str(i)) for i in range(10)]
    t0 = time.monotonic()
    body = client.post("/score", json={"items": items}).json()
    elapsed = time.monotonic() - t0
    assert body["results"][0]["status"] == "timeout" and body["results"][0]["reward"] == 0.0
    assert all(r["status"] == "ok" and r["reward"] == 1.0 for r in body["results"][1:])
    assert elapsed < LIMIT_S * 10  # bounded by the item limit, not by sympy


def test_stuck_worker_is_replaced(client):
    client.post("/score", json={"items": [item(SLOW_MATH, "6")]})
    ready = client.get("/readyz").json()
    assert (ready["ready"], ready["detail"]) == (True, "2/2 scoring workers alive")
    assert 'reward_worker_restarts_total{reason="timeout"}' in client.get("/metrics").text
    assert client.post("/score", json={"items": [item()]}).json()["results"][0]["reward"] == 1.0


def test_readyz_says_how_code_is_confined_and_which_languages_run_here(client):
    sandbox = client.get("/readyz").json()["sandbox"]
    assert sandbox["backend"] and set(sandbox["languages"]) >= {"python", "c", "cpp", "java", "javascript", "go", "rust"}
    assert all(v == "ok" or v.startswith("missing ") for v in sandbox["languages"].values())


def test_batch_deadline_turns_unfinished_items_into_timeouts(client):
    items = [item(SLOW_MATH, str(n)) for n in range(4)]
    body = client.post("/score", json={"items": items, "timeout_s": 0.5}).json()
    assert [r["status"] for r in body["results"]] == ["timeout"] * 4


def test_healthz_answers_while_a_batch_is_scored(client):
    slow = threading.Thread(target=client.post, args=("/score",), kwargs={"json": {"items": [item(SLOW_MATH, "7")]}})
    slow.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    assert client.get("/healthz").status_code == 200
    assert time.monotonic() - t0 < 1.0
    slow.join()


def test_concurrent_batches_each_get_their_own_results(client):
    out = {}

    def send(n):
        items = [item(r"\boxed{%d}" % (n * 100 + i), str(n * 100 + i), id=f"{n}-{i}") for i in range(15)]
        out[n] = client.post("/score", json={"items": items}).json()["results"]

    threads = [threading.Thread(target=send, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n, results in out.items():
        assert [r["id"] for r in results] == [f"{n}-{i}" for i in range(15)]
        assert all(r["reward"] == 1.0 for r in results)


def test_small_batch_is_not_starved_by_a_slow_one(client):
    slow = threading.Thread(target=client.post, args=("/score",),
                            kwargs={"json": {"items": [item(SLOW_MATH, str(n)) for n in range(10, 14)]}})
    slow.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    assert client.post("/score", json={"items": [item()]}).json()["results"][0]["reward"] == 1.0
    assert time.monotonic() - t0 < 4 * LIMIT_S  # waits at most for a worker to free up, not the whole batch
    slow.join()


def test_tasks_lists_each_task_with_ground_truth_and_options(client):
    tasks = {t["name"]: t for t in client.get("/tasks").json()["tasks"]}
    assert {"math", "mcq"} <= set(tasks)
    assert tasks["math"]["options"]["properties"]["require_box"]["type"] == "boolean"
    assert tasks["math"]["timeout_s"] == LIMIT_S and tasks["math"]["ground_truth"]


def test_openapi_documents_score(client):
    spec = client.get("/openapi.json").json()
    assert "Item" in spec["components"]["schemas"] and "/score" in spec["paths"]


def test_metrics_count_items_by_task_and_status(client):
    client.post("/score", json={"items": [item(task="nope")]})
    text = client.get("/metrics").text
    assert 'reward_items_total{status="ok",task="math"}' in text
    assert 'reward_items_total{status="invalid",task="unknown"}' in text
    assert "reward_item_seconds_bucket" in text and "reward_batch_items_bucket" in text
