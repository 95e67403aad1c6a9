"""The result cache in embedded mode (distributed mode: tests/test_grpo_distributed.py)."""
from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from fastapi.testclient import TestClient

import verifiers
from reward_service.api import create_app
from reward_service.config import Settings
from reward_service.executors.base import Job, Outcome
from reward_service.result_cache import MemoryCache, cache_key, cacheable

SLOW_MATH = r"\boxed{9^{9^{9^{9^{9}}}}}"  # sympy grinds on this in C code; only a kill stops it


def math(n, gold=None, **kw):
    return {"task": "math", "completion": rf"the answer is \boxed{{{n}}}", "ground_truth": str(n if gold is None else gold),
            **kw}


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(workers=2, sandbox_required=False, task_timeouts={"math": 1.5}))) as c:
        yield c


def counter(c, name, task="math"):
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(f'{name}{{task="{task}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_an_identical_item_of_a_later_request_is_answered_from_the_cache(client):
    first = client.post("/score", json={"items": [math(101, id="a")]}).json()["results"][0]
    again = client.post("/score", json={"items": [math(101, id="b")]}).json()["results"][0]
    assert (first["cached"], again["cached"]) == (False, True)
    assert again["id"] == "b" and again["reward"] == first["reward"] == 1.0
    assert again["detail"] == first["detail"] and again["elapsed_ms"] == 0.0


def test_hits_and_misses_are_counted_in_metrics(client):
    hits, misses = counter(client, "reward_cache_hits_total"), counter(client, "reward_cache_misses_total")
    client.post("/score", json={"items": [math(102), math(103)]})
    client.post("/score", json={"items": [math(102), math(104)]})
    assert counter(client, "reward_cache_hits_total") == hits + 1
    assert counter(client, "reward_cache_misses_total") == misses + 3


def test_a_different_ground_truth_options_or_prompt_is_not_a_hit(client):
    client.post("/score", json={"items": [math(105)]})
    variants = [math(105, 106), math(105, options={"require_box": True}), math(105, prompt="p")]
    assert [r["cached"] for r in client.post("/score", json={"items": variants}).json()["results"]] == [False] * 3


def test_cache_false_neither_reads_nor_writes(client):
    client.post("/score", json={"items": [math(107)]})
    assert client.post("/score", json={"items": [math(107)], "cache": False}).json()["results"][0]["cached"] is False
    client.post("/score", json={"items": [math(108)], "cache": False})
    assert client.post("/score", json={"items": [math(108)]}).json()["results"][0]["cached"] is False


def test_timeouts_are_never_cached(client):
    slow = math(0) | {"completion": SLOW_MATH, "ground_truth": "5"}
    assert client.post("/score", json={"items": [slow]}).json()["results"][0]["status"] == "timeout"
    again = client.post("/score", json={"items": [slow]}).json()["results"][0]
    assert again["status"] == "timeout" and again["cached"] is False


def test_results_that_are_not_ok_are_never_cached(client):
    bad = math(1) | {"ground_truth": {"solution": 1}}  # unusable ground truth: invalid
    for _ in range(2):
        r = client.post("/score", json={"items": [bad]}).json()["results"][0]
        assert (r["status"], r["cached"]) == ("invalid", False)


def test_no_hit_after_the_verifier_version_changes(client):
    client.post("/score", json={"items": [math(109)]})
    assert client.post("/score", json={"items": [math(109)]}).json()["results"][0]["cached"] is True
    spec = verifiers.get("math")
    verifiers.registry._TASKS["math"] = dataclasses.replace(spec, version=spec.version + "-next")
    try:
        assert client.post("/score", json={"items": [math(109)]}).json()["results"][0]["cached"] is False
        assert client.post("/score", json={"items": [math(109)]}).json()["results"][0]["cached"] is True
        assert client.get("/tasks").json()["tasks"][0]["version"]  # shown per task
        assert {t["name"]: t["version"] for t in client.get("/tasks").json()["tasks"]}["math"] == spec.version + "-next"
    finally:
        verifiers.registry._TASKS["math"] = spec


def test_shaping_applies_to_cached_results_per_item(client):
    client.post("/score", json={"items": [math(110)]})
    shaping = {"truncated": {"reward": -1.0}}
    r = client.post("/score", json={"items": [math(110, length={"truncated": True}), math(110)],
                                    "shaping": shaping}).json()["results"]
    assert [(x["cached"], x["raw_reward"], x["reward"]) for x in r] == [(True, 1.0, -1.0), (True, 1.0, 1.0)]


def test_the_cache_setting_turns_it_off():
    with TestClient(create_app(Settings(workers=1, sandbox_required=False, cache_enabled=False))) as c:
        c.post("/score", json={"items": [math(111)]})
        assert c.post("/score", json={"items": [math(111)]}).json()["results"][0]["cached"] is False


# -- the store itself ---------------------------------------------------------------------------------------
def job(n: int) -> Job:
    return Job("math", str(n), "1", None, None, 1.0)


def test_memory_cache_drops_the_least_recently_used_past_its_size():
    cache = MemoryCache(max_items=2, ttl_s=60)
    k = [cache_key(job(n), "1") for n in range(3)]
    ok = Outcome(1.0, "ok")

    async def go():
        await cache.put_many([(k[0], ok), (k[1], ok)])
        await cache.get_many([k[0]])  # k0 is now the most recent
        await cache.put_many([(k[2], ok)])
        return await cache.get_many(k)

    assert [o is not None for o in asyncio.run(go())] == [True, False, True]


def test_memory_cache_entries_expire_after_the_ttl():
    cache = MemoryCache(max_items=10, ttl_s=0.2)
    key = cache_key(job(1), "1")
    asyncio.run(cache.put_many([(key, Outcome(1.0, "ok"))]))
    assert asyncio.run(cache.get_many([key]))[0] is not None
    time.sleep(0.3)
    assert asyncio.run(cache.get_many([key]))[0] is None and len(cache) == 0


def test_the_key_covers_the_verifier_version_and_every_input():
    base = cache_key(job(1), "1")
    assert cache_key(job(1), "2") != base
    assert cache_key(dataclasses.replace(job(1), prompt="p"), "1") != base
    assert cache_key(dataclasses.replace(job(1), options={"think": "require"}), "1") != base
    assert cache_key(dataclasses.replace(job(1), timeout_s=9.0), "1") == base  # the limit isn't part of the verdict


@pytest.mark.parametrize("outcome, ok", [
    (Outcome(1.0, "ok", {"passed": 3, "total": 3, "statuses": {"passed": 3}}), True),
    (Outcome(0.5, "ok", {"passed": 1, "total": 2, "statuses": {"passed": 1, "timeout": 1}}), False),
    (Outcome(0.0, "ok", {"sandbox": {"backend": "process", "status": "timeout"}}), False),
    (Outcome(0.0, "ok", {"first_failure": {"status": "timeout"}}), False),
    (Outcome(0.0, "timeout", {}), False),
    (Outcome(0.0, "error", {}), False),
    (Outcome(0.0, "invalid", {}), False),
])
def test_only_ok_verdicts_without_a_timeout_anywhere_are_cacheable(outcome, ok):
    assert cacheable(outcome) is ok


def test_register_records_the_verifier_version_default_1():
    from verifiers.base import Verdict
    from verifiers.registry import _TASKS, register

    try:
        register("cache-test-v", description="d", ground_truth=["x"], version="3")(lambda c, g, o, p: Verdict(1.0))
        register("cache-test-d", description="d", ground_truth=["x"])(lambda c, g, o, p: Verdict(1.0))
        assert (_TASKS["cache-test-v"].version, _TASKS["cache-test-d"].version) == ("3", "1")
        assert "version" not in _TASKS["cache-test-v"].extra
    finally:
        _TASKS.pop("cache-test-v", None)
        _TASKS.pop("cache-test-d", None)
