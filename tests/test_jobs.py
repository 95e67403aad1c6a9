"""POST /jobs and GET /jobs/{id} in embedded mode (distributed mode: tests/test_distributed.py)."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from reward_service.api import create_app
from reward_service.config import Settings


def math_item(n: int, gold: int | None = None, **kw) -> dict:
    return {"task": "math", "completion": rf"\boxed{{{n}}}", "ground_truth": str(n if gold is None else gold), **kw}


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(workers=2, sandbox_required=False, job_result_ttl_s=2.0,
                                        job_max_items=700))) as c:
        yield c


def wait_done(c: TestClient, url: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        st = c.get(url).json()
        if st["status"] in ("done", "failed") or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


def test_job_is_accepted_with_an_id_and_a_status_url(client):
    r = client.post("/jobs", json={"items": [math_item(1)]})
    assert r.status_code == 202
    body = r.json()
    assert body["status_url"].endswith(f"/jobs/{body['job_id']}")


def test_job_result_has_the_shape_and_order_of_a_score_response(client):
    items = [math_item(n, id=str(n)) for n in range(500)] + [math_item(3, 4, id="wrong")]
    st = wait_done(client, client.post("/jobs", json={"items": items}).json()["status_url"])
    assert (st["status"], st["done"], st["total"]) == ("done", 501, 501)
    assert [r["id"] for r in st["result"]["results"]] == [i["id"] for i in items]
    assert [r["reward"] for r in st["result"]["results"]] == [1.0] * 500 + [0.0]
    assert st["result"]["summary"]["count"] == 501 and st["result"]["summary"]["by_status"] == {"ok": 501}


def test_job_progress_counts_up_to_the_total(client):
    url = client.post("/jobs", json={"items": [math_item(n) for n in range(700)]}).json()["status_url"]
    seen = []
    while not seen or seen[-1]["status"] != "done":
        seen.append(client.get(url).json())
    assert {s["status"] for s in seen} <= {"queued", "running", "done"}
    assert [s["done"] for s in seen] == sorted(s["done"] for s in seen)
    assert all(s["result"] is None for s in seen[:-1])


def test_job_results_expire_after_the_ttl(client):
    url = client.post("/jobs", json={"items": [math_item(1)]}).json()["status_url"]
    assert wait_done(client, url)["status"] == "done"
    time.sleep(2.2)
    gone = client.get(url)
    assert gone.status_code == 404 and "REWARD_SERVICE_JOB_RESULT_TTL_S" in gone.json()["detail"]


def test_job_over_the_item_limit_is_413(client):
    assert client.post("/jobs", json={"items": [math_item(1)] * 701}).status_code == 413


def test_malformed_job_is_422(client):
    assert client.post("/jobs", json={"items": [{"task": "math"}]}).status_code == 422


def test_unknown_job_is_404(client):
    assert client.get("/jobs/0123").status_code == 404
