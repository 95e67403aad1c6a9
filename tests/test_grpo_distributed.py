"""Result cache and prompt statistics in distributed mode: a real redis-server, real workers, two replicas."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient

try:  # tests/ as a package or as a plain directory on sys.path
    from tests.live_service import running_service
    from tests.redis_fixtures import REPO, redis_server, service_env, workers_running  # noqa: F401  (fixtures)
except ImportError:
    from live_service import running_service
    from redis_fixtures import REPO, redis_server, service_env, workers_running  # noqa: F401  (fixtures)
import verifiers
from reward_service.api import create_app
from reward_service.config import Settings


def math(n, gold=None, **kw):
    return {"task": "math", "completion": rf"so \boxed{{{n}}}", "ground_truth": str(n if gold is None else gold), **kw}


def settings(url: str, **kw) -> Settings:
    return Settings(REDIS_URL=url, **{"sandbox_required": False, "redis_timeout_s": 1.0, **kw})


@pytest.fixture(scope="module")
def workers(redis_server):
    with workers_running(redis_server, count=2) as w:
        yield w


def ready(c: TestClient) -> TestClient:
    deadline = time.monotonic() + 30
    while c.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, c.get("/readyz").json()
        time.sleep(0.2)
    return c


@pytest.fixture(scope="module")
def replicas(redis_server, workers):
    """Two API replicas, separate processes, one Redis."""
    with running_service(REDIS_URL=redis_server.url) as a, running_service(REDIS_URL=redis_server.url) as b:
        for url in (a, b):
            deadline = time.monotonic() + 30
            while httpx.get(f"{url}/readyz").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        yield a, b


def score(url: str, body: dict) -> dict:
    r = httpx.post(f"{url}/score", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_result_scored_through_one_replica_is_a_cache_hit_on_the_other(replicas):
    a, b = replicas
    first = score(a, {"items": [math(201, id="x")]})["results"][0]
    again = score(b, {"items": [math(201, id="y")]})["results"][0]
    assert (first["cached"], again["cached"]) == (False, True)
    assert (again["id"], again["reward"], again["detail"]) == ("y", 1.0, first["detail"])


def test_cache_hits_and_misses_show_in_the_replicas_metrics(replicas):
    a, b = replicas
    score(a, {"items": [math(202)]})
    score(b, {"items": [math(202)]})
    assert 'reward_cache_misses_total{task="math"}' in httpx.get(f"{a}/metrics").text
    assert 'reward_cache_hits_total{task="math"}' in httpx.get(f"{b}/metrics").text


def test_prompt_statistics_add_up_across_replicas(replicas):
    a, b = replicas
    score(a, {"items": [math(1, prompt_id="dist-p"), math(1, 2, prompt_id="dist-p")]})
    score(b, {"items": [math(1, prompt_id="dist-p")] * 2})
    for url in (a, b):
        s = httpx.get(f"{url}/prompts/dist-p").json()
        assert (s["samples"], s["mean_reward"], s["solved"]) == (4, 0.75, 0.75)
    body = httpx.post(f"{b}/prompts/stats", json={"prompt_ids": ["dist-p", "none"]}).json()
    assert body["prompts"]["dist-p"]["samples"] == 4 and body["missing"] == ["none"]


def test_groups_and_advantages_work_in_distributed_mode(replicas):
    a, _ = replicas
    body = score(a, {"items": [math(1, group="g"), math(2, 1, group="g"), math(3, group="h")], "advantage": "rloo"})
    assert [r["advantage"] for r in body["results"]] == pytest.approx([1.0, -1.0, 0.0])
    assert body["groups"]["g"]["solved"] == 0.5 and body["groups"]["h"]["zero_variance"]


def test_cli_exports_prompt_statistics_from_redis(replicas, redis_server, tmp_path):
    a, _ = replicas
    score(a, {"items": [math(1, prompt_id="dist-export")]})
    out = tmp_path / "prompts.jsonl"
    proc = subprocess.run([sys.executable, "-m", "reward_service.cli", "prompts", "export", str(out)], cwd=REPO,
                          env=service_env(redis_server.url), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {r["prompt_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["dist-export"]["samples"] == 1 and "dist-p" in rows


def test_cli_exports_prompt_statistics_from_a_running_service(replicas, tmp_path):
    a, _ = replicas
    score(a, {"items": [math(1, prompt_id="dist-url")]})
    out = tmp_path / "prompts.jsonl"
    proc = subprocess.run([sys.executable, "-m", "reward_service.cli", "prompts", "export", str(out), "--url", a],
                          cwd=REPO, env=service_env("redis://127.0.0.1:1/0"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "dist-url" in {json.loads(line)["prompt_id"] for line in out.read_text().splitlines()}


def test_no_hit_after_the_verifier_version_changes(redis_server, workers):
    with TestClient(create_app(settings(redis_server.url))) as c:
        ready(c)
        c.post("/score", json={"items": [math(203)]})
        assert c.post("/score", json={"items": [math(203)]}).json()["results"][0]["cached"] is True
        spec = verifiers.get("math")
        verifiers.registry._TASKS["math"] = dataclasses.replace(spec, version=spec.version + "-next")
        try:
            assert c.post("/score", json={"items": [math(203)]}).json()["results"][0]["cached"] is False
        finally:
            verifiers.registry._TASKS["math"] = spec


def test_timeouts_are_not_cached_in_redis(redis_server, workers):
    slow = math(0) | {"completion": r"\boxed{9^{9^{9^{9^{9}}}}}", "ground_truth": "5"}
    with TestClient(create_app(settings(redis_server.url, task_timeouts={"math": 1.0}))) as c:
        ready(c)
        for _ in range(2):
            r = c.post("/score", json={"items": [slow]}).json()["results"][0]
            assert (r["status"], r["cached"]) == ("timeout", False)


def test_the_redis_cache_keeps_at_most_its_size(redis_server, workers):
    r = redis_server.client()
    for key in r.scan_iter("rs:cache:*"):
        r.delete(key)
    with TestClient(create_app(settings(redis_server.url, cache_max_items=3))) as c:
        ready(c)
        c.post("/score", json={"items": [math(300 + n) for n in range(5)]})
        assert r.zcard("rs:cache:index") == 3
        assert len([k for k in r.scan_iter("rs:cache:*") if k != b"rs:cache:index"]) == 3
        assert c.post("/score", json={"items": [math(304)]}).json()["results"][0]["cached"] is True


def test_redis_prompt_statistics_keep_at_most_their_size_and_expire(redis_server, workers):
    r = redis_server.client()
    with TestClient(create_app(settings(redis_server.url, prompt_stats_max_prompts=2, prompt_stats_ttl_s=60))) as c:
        ready(c)
        c.post("/score", json={"items": [math(1, prompt_id=f"bound-{n}") for n in range(4)]})
        assert r.zcard("rs:prompts") == 2
        assert 0 < r.ttl("rs:prompt:" + r.zrange("rs:prompts", 0, 0)[0].decode()) <= 60
        body = c.post("/prompts/stats", json={"prompt_ids": [f"bound-{n}" for n in range(4)]}).json()
        assert len(body["prompts"]) == 2 and len(body["missing"]) == 2
