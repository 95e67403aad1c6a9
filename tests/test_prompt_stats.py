"""Per-prompt pass rates in embedded mode (distributed mode: tests/test_grpo_distributed.py)."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from reward_service.api import create_app
from reward_service.config import Settings
from reward_service.prompt_stats import MemoryPromptStats, Tally

REPO = Path(__file__).resolve().parent.parent


def math(n, gold=None, **kw):
    return {"task": "math", "completion": rf"\boxed{{{n}}}", "ground_truth": str(n if gold is None else gold), **kw}


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(workers=2, sandbox_required=False))) as c:
        yield c


def test_counts_accumulate_across_requests(client):
    client.post("/score", json={"items": [math(1, prompt_id="p-acc"), math(2, 1, prompt_id="p-acc")]})
    t0 = time.time()
    client.post("/score", json={"items": [math(1, prompt_id="p-acc"), math(1, prompt_id="p-acc")]})
    s = client.get("/prompts/p-acc").json()
    assert (s["samples"], s["mean_reward"], s["solved"], s["not_ok"]) == (4, 0.75, 0.75, 0)
    assert s["first_seen"] <= t0 <= s["last_seen"] <= time.time()


def test_duplicates_count_as_separate_samples(client):
    body = client.post("/score", json={"items": [math(3, prompt_id="p-dup")] * 5}).json()
    assert body["summary"]["unique_items"] == 1
    assert client.get("/prompts/p-dup").json()["samples"] == 5


def test_failed_scoring_is_counted_apart_from_the_pass_rate(client):
    bad = math(1, prompt_id="p-bad") | {"ground_truth": {"solution": 1}}
    client.post("/score", json={"items": [bad, math(1, prompt_id="p-bad")]})
    s = client.get("/prompts/p-bad").json()
    assert (s["samples"], s["solved"], s["not_ok"]) == (1, 1.0, 1)


def test_pass_rates_use_the_raw_reward_not_the_shaped_one(client):
    client.post("/score", json={"items": [math(1, prompt_id="p-raw", length={"truncated": True})],
                                "shaping": {"truncated": {"reward": -1.0}}})
    assert client.get("/prompts/p-raw").json()["mean_reward"] == 1.0


def test_post_prompts_stats_answers_known_ids_and_lists_the_missing(client):
    client.post("/score", json={"items": [math(4, prompt_id="p-a"), math(5, 6, prompt_id="p/b")]})
    body = client.post("/prompts/stats", json={"prompt_ids": ["p-a", "p/b", "never"]}).json()
    assert set(body["prompts"]) == {"p-a", "p/b"} and body["missing"] == ["never"]
    assert body["prompts"]["p/b"]["solved"] == 0.0
    assert client.get("/prompts/p/b").json()["prompt_id"] == "p/b"  # ids with slashes (dataset/index)


def test_an_unknown_prompt_is_404(client):
    resp = client.get("/prompts/nobody-asked")
    assert resp.status_code == 404 and "PROMPT_STATS_TTL_S" in resp.json()["detail"]


def test_get_prompts_exports_every_prompt_as_jsonl(client):
    client.post("/score", json={"items": [math(7, prompt_id="p-export")]})
    resp = client.get("/prompts")
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in resp.text.splitlines()]
    assert "p-export" in {r["prompt_id"] for r in rows}
    assert all(set(r) == {"prompt_id", "samples", "mean_reward", "solved", "not_ok", "first_seen", "last_seen"}
               for r in rows)


def test_jobs_count_prompt_samples_too(client):
    url = client.post("/jobs", json={"items": [math(8, prompt_id="p-job")] * 3}).json()["status_url"]
    deadline = time.monotonic() + 30
    while client.get(url).json()["status"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.get("/prompts/p-job").json()["samples"] == 3


def test_stats_survive_a_restart_through_the_file_and_the_cli_exports_them(tmp_path):
    path = tmp_path / "prompts.jsonl"
    s = Settings(workers=1, sandbox_required=False, prompt_stats_file=str(path))
    with TestClient(create_app(s)) as c:
        c.post("/score", json={"items": [math(1, prompt_id="p1"), math(1, 2, prompt_id="p1"), math(3, prompt_id="p2")]})
    assert path.exists()  # written at shutdown
    with TestClient(create_app(s)) as c:
        c.post("/score", json={"items": [math(1, prompt_id="p1")]})
        assert c.get("/prompts/p1").json()["samples"] == 3
    out = tmp_path / "export.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARD_SERVICE_") and k != "REDIS_URL"}
    proc = subprocess.run([sys.executable, "-m", "reward_service.cli", "prompts", "export", str(out)], cwd=REPO,
                          env={**env, "PYTHONPATH": str(REPO), "REWARD_SERVICE_PROMPT_STATS_FILE": str(path)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {r["prompt_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"p1", "p2"}
    assert (rows["p1"]["samples"], rows["p1"]["solved"]) == (3, pytest.approx(2 / 3))


def test_cli_export_without_a_store_says_what_to_set(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARD_SERVICE_") and k != "REDIS_URL"}
    proc = subprocess.run([sys.executable, "-m", "reward_service.cli", "prompts", "export", str(tmp_path / "x")],
                          cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "REWARD_SERVICE_PROMPT_STATS_FILE" in proc.stderr


# -- the store itself ---------------------------------------------------------------------------------------
def tally(ok=True, reward=1.0) -> Tally:
    t = Tally()
    t.add(ok, reward)
    return t


def test_memory_store_drops_the_least_recently_seen_past_its_size():
    store = MemoryPromptStats(max_prompts=2, ttl_s=60)

    async def go():
        await store.record({"a": tally(), "b": tally()})
        await store.record({"a": tally()})  # b is now the least recently seen
        await store.record({"c": tally()})
        return await store.get_many(["a", "b", "c"])

    assert set(asyncio.run(go())) == {"a", "c"}


def test_memory_store_forgets_prompts_not_seen_within_the_ttl():
    store = MemoryPromptStats(max_prompts=10, ttl_s=0.2)
    asyncio.run(store.record({"a": tally()}))
    time.sleep(0.3)
    assert asyncio.run(store.get_many(["a"])) == {} and asyncio.run(store.export()) == []
