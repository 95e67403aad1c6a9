"""Group statistics, advantages and reward shaping, each against a straightforward reference.

The pure functions are checked on random groups (fixed seeds) with ties,
single-sample groups and duplicates; then the same formulas end to end
through POST /score and POST /jobs of the real app.
"""
from __future__ import annotations

import random
import time

import pytest
from fastapi.testclient import TestClient

from reward_service import grpo
from reward_service.api import create_app
from reward_service.config import Settings
from reward_service.models import FormatShaping, Length, OverlongShaping, Shaping, TruncatedShaping
from reward_service.shaping import overlong_penalty, shape, think_problem

LEVELS = [0.0, 0.25, 0.5, 1.0]  # few values: ties are common


# -- references: the formulas as written in the issue, nothing clever -------------------------------------
def ref_mean(xs):
    return sum(xs) / len(xs)


def ref_std(xs):
    m = ref_mean(xs)
    return (sum((x - m) ** 2 for x in xs) / len(xs)) ** 0.5


def ref_advantages(xs, method):
    if len(xs) == 1:
        return [0.0]
    m = ref_mean(xs)
    if method == "grpo":
        return [(x - m) / (ref_std(xs) + 1e-6) for x in xs]
    if method == "dr_grpo":
        return [x - m for x in xs]
    if method == "rloo":
        return [x - ref_mean(xs[:i] + xs[i + 1:]) for i, x in enumerate(xs)]
    raise AssertionError(method)


def ref_overlong(tokens, max_tokens, buffer, penalty):
    if tokens <= max_tokens - buffer:
        return 0.0
    if tokens <= max_tokens:
        return ((max_tokens - buffer) - tokens) / buffer * penalty
    return -penalty


def random_groups(seed, n=300):
    rng = random.Random(seed)
    groups = []
    for _ in range(n):
        size = rng.choice([1, 1, 2, 3, 4, 8, 16])
        kind = rng.random()
        if kind < 0.2:  # all tied
            groups.append([rng.choice(LEVELS)] * size)
        elif kind < 0.6:  # few levels: ties and duplicates
            groups.append([rng.choice(LEVELS) for _ in range(size)])
        else:  # continuous (code's fraction passed, shaped rewards)
            groups.append([round(rng.uniform(-1, 1), rng.choice([1, 3, 12])) for _ in range(size)])
    return groups


# -- advantages ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["grpo", "dr_grpo", "rloo"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_advantages_match_the_reference_on_random_groups(method, seed):
    for xs in random_groups(seed):
        assert grpo.advantages(xs, method) == pytest.approx(ref_advantages(xs, method), abs=1e-9), (method, xs)


@pytest.mark.parametrize("method", ["grpo", "dr_grpo", "rloo"])
def test_a_group_of_one_gets_advantage_zero(method):
    assert grpo.advantages([0.7], method) == [0.0]


@pytest.mark.parametrize("method", ["grpo", "dr_grpo", "rloo"])
def test_a_tied_group_gets_exactly_zero_advantages(method):
    assert grpo.advantages([0.1] * 7, method) == [0.0] * 7  # 0.1 * 7 / 7 != 0.1 in floats; still exactly 0


def test_advantage_none_gives_no_advantages():
    assert grpo.advantages([0.0, 1.0], "none") is None


def test_grpo_uses_the_population_std():
    # mean 0.5, population std 0.5 (the sample std would be 0.707)
    assert grpo.advantages([0.0, 1.0], "grpo") == pytest.approx([-0.5 / (0.5 + 1e-6), 0.5 / (0.5 + 1e-6)], abs=1e-12)


def test_rloo_is_reward_minus_the_mean_of_the_others():
    assert grpo.advantages([1.0, 0.0, 0.0, 0.0], "rloo") == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])


# -- group statistics ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [3, 4])
def test_group_stats_match_the_reference_on_random_groups(seed):
    rng = random.Random(seed)
    for xs in random_groups(seed):
        raw = [rng.choice([0.0, 1.0, 0.5]) for _ in xs]
        s = grpo.group_stats(xs, raw)
        assert s.count == len(xs)
        assert s.mean == pytest.approx(ref_mean(xs), abs=1e-12)
        assert s.std == pytest.approx(ref_std(xs), abs=1e-12)
        assert (s.min, s.max) == (min(xs), max(xs))
        assert s.solved == sum(r == 1.0 for r in raw) / len(raw)
        assert s.zero_variance == (len(set(xs)) == 1)


def test_zero_variance_group_has_std_exactly_zero():
    s = grpo.group_stats([0.1] * 3, [0.0] * 3)
    assert s.zero_variance and s.std == 0.0


# -- shaping ------------------------------------------------------------------------------------------------
def test_overlong_penalty_matches_the_reference_over_every_length():
    rng = random.Random(5)
    for _ in range(200):
        max_tokens = rng.randint(1, 4096)
        buffer = rng.randint(0, max_tokens)
        penalty = rng.choice([0.0, 0.5, 1.0, 2.5])
        for tokens in {0, max_tokens - buffer, max_tokens - buffer + 1, max_tokens, max_tokens + 1,
                       rng.randint(0, 2 * max_tokens)}:
            tokens = max(0, tokens)
            assert overlong_penalty(tokens, max_tokens, buffer, penalty) == pytest.approx(
                ref_overlong(tokens, max_tokens, buffer, penalty)), (tokens, max_tokens, buffer, penalty)


def test_overlong_is_zero_up_to_max_minus_buffer_then_linear_then_the_full_penalty():
    o = Shaping(overlong=OverlongShaping(max_tokens=100, buffer=20, penalty=1.0))
    rewards = [shape(1.0, "x", Length(tokens=t), o).reward for t in (80, 90, 100, 101, 5000)]
    assert rewards == pytest.approx([1.0, 0.5, 0.0, 0.0, 0.0])


def test_overlong_without_length_tokens_is_invalid_with_a_reason():
    o = Shaping(overlong=OverlongShaping(max_tokens=100, buffer=20))
    for length in (None, Length(max_tokens=100, truncated=True)):
        out = shape(1.0, "x", length, o)
        assert out.invalid and "length.tokens" in out.invalid


def test_overlong_falls_back_to_the_items_max_tokens():
    o = Shaping(overlong=OverlongShaping(buffer=10, penalty=1.0))
    assert shape(1.0, "x", Length(tokens=95, max_tokens=100), o).reward == pytest.approx(0.5)
    assert "max_tokens" in shape(1.0, "x", Length(tokens=95), o).invalid


def test_truncated_completions_get_the_configured_reward_instead_of_the_verified_one():
    t = Shaping(truncated=TruncatedShaping(reward=-0.5))
    assert shape(1.0, "x", Length(truncated=True), t).reward == -0.5
    assert shape(1.0, "x", Length(truncated=False), t).reward == 1.0
    assert shape(1.0, "x", None, t).reward == 1.0


@pytest.mark.parametrize("completion, require, problem", [
    ("<think>a</think> b", False, None),
    ("a</think> b", False, None),  # the template opened the block in the prompt
    ("no tags", False, None),
    ("no tags", True, "no </think>"),
    ("<think>a never closed", False, "never closed"),
    ("<think>a</think><think>b</think> c", False, "several"),
    ("a</think> b</think> c", False, "several"),
    ("</think> x <think>", False, "before"),
])
def test_think_block_format(completion, require, problem):
    got = think_problem(completion, require)
    assert (got is None) if problem is None else (problem in got), got


def test_format_penalty_is_subtracted_only_when_malformed():
    f = Shaping(format=FormatShaping(require_think=True, penalty=0.3))
    assert shape(1.0, "<think>a</think>b", None, f).reward == 1.0
    bad = shape(1.0, "b", None, f)
    assert bad.reward == pytest.approx(0.7) and bad.detail["format"]["malformed"]


def test_shaping_pieces_compose_in_the_documented_order():
    s = Shaping(truncated=TruncatedShaping(reward=0.2), overlong=OverlongShaping(max_tokens=10, buffer=0, penalty=1.0),
                format=FormatShaping(penalty=0.1))
    out = shape(1.0, "<think>never closed", Length(tokens=11, truncated=True), s)
    assert out.reward == pytest.approx(0.2 - 1.0 - 0.1)
    assert out.detail["delta"] == pytest.approx(out.reward - 1.0)
    assert set(out.detail) == {"truncated", "overlong", "format", "delta"}


# -- end to end through the API -----------------------------------------------------------------------------
def math(n, gold, **kw):
    return {"task": "math", "completion": rf"\boxed{{{n}}}", "ground_truth": str(gold), **kw}


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(workers=2, sandbox_required=False))) as c:
        yield c


def test_groups_and_advantages_default_to_grpo_when_items_have_groups(client):
    items = [math(1, 1, group="a"), math(2, 1, group="a"), math(3, 3, group="b"), math(4, 4)]
    body = client.post("/score", json={"items": items}).json()
    r = body["results"]
    assert [x["advantage"] for x in r[:2]] == pytest.approx(ref_advantages([1.0, 0.0], "grpo"))
    assert r[2]["advantage"] == 0.0 and r[3]["advantage"] is None  # group of one; no group
    assert body["groups"]["a"] == {"count": 2, "mean": 0.5, "std": 0.5, "min": 0.0, "max": 1.0, "solved": 0.5,
                                   "zero_variance": False}
    assert body["groups"]["b"]["zero_variance"] is True and set(body["groups"]) == {"a", "b"}


def test_without_groups_there_are_no_advantages_and_no_group_stats(client):
    body = client.post("/score", json={"items": [math(1, 1), math(1, 2)]}).json()
    assert [r["advantage"] for r in body["results"]] == [None, None] and body["groups"] == {}


@pytest.mark.parametrize("method", ["grpo", "dr_grpo", "rloo"])
def test_duplicates_in_a_group_are_scored_once_and_counted_each_time(client, method):
    rng = random.Random(method)
    items, expected = [], {}
    for g in range(6):
        size = rng.choice([1, 3, 8])
        for _ in range(size):
            right = rng.random() < 0.5  # only two distinct completions per group: many duplicates
            items.append(math(g if right else g + 1, g, group=f"g{g}"))
            expected.setdefault(f"g{g}", []).append(1.0 if right else 0.0)
    body = client.post("/score", json={"items": items, "advantage": method}).json()
    assert body["summary"]["unique_items"] <= 2 * 6  # two distinct completions per group
    for name, rewards in expected.items():
        got = [r["advantage"] for r, it in zip(body["results"], items) if it["group"] == name]
        assert got == pytest.approx(ref_advantages(rewards, method), abs=1e-9)
        assert body["groups"][name]["count"] == len(rewards)
        assert body["groups"][name]["mean"] == pytest.approx(ref_mean(rewards))
        assert body["groups"][name]["solved"] == pytest.approx(ref_mean(rewards))


def test_advantage_none_leaves_advantages_null_but_reports_groups(client):
    body = client.post("/score", json={"items": [math(1, 1, group="a"), math(2, 1, group="a")],
                                       "advantage": "none"}).json()
    assert [r["advantage"] for r in body["results"]] == [None, None] and body["groups"]["a"]["count"] == 2


def test_advantages_are_computed_on_the_shaped_reward(client):
    items = [math(1, 1, group="a", length={"tokens": 50}), math(1, 1, group="a", length={"tokens": 95})]
    body = client.post("/score", json={"items": items, "advantage": "dr_grpo",
                                       "shaping": {"overlong": {"max_tokens": 100, "buffer": 10}}}).json()
    r = body["results"]
    assert [x["raw_reward"] for x in r] == [1.0, 1.0]
    assert [x["reward"] for x in r] == pytest.approx([1.0, 0.5])
    assert [x["advantage"] for x in r] == pytest.approx([0.25, -0.25])
    assert body["groups"]["a"]["solved"] == 1.0 and not body["groups"]["a"]["zero_variance"]
    assert r[1]["detail"]["shaping"]["overlong"]["penalty"] == pytest.approx(-0.5)


def test_overlong_without_tokens_makes_that_item_invalid_and_the_rest_is_scored(client):
    body = client.post("/score", json={"items": [math(1, 1), math(1, 1, length={"tokens": 1})],
                                       "shaping": {"overlong": {"max_tokens": 100}}}).json()
    r = body["results"]
    assert (r[0]["status"], r[0]["reward"], r[0]["raw_reward"]) == ("invalid", 0.0, 1.0)
    assert "length.tokens" in r[0]["detail"]["error"]
    assert (r[1]["status"], r[1]["reward"]) == ("ok", 1.0)


def test_failed_checks_are_never_shaped_into_a_reward(client):
    body = client.post("/score", json={"items": [{"task": "nope", "completion": "x", "length": {"truncated": True}}],
                                       "shaping": {"truncated": {"reward": 0.5}}}).json()
    assert (body["results"][0]["status"], body["results"][0]["reward"]) == ("invalid", 0.0)


@pytest.mark.parametrize("body, field", [
    ({"items": [math(1, 1, length={"tokens": -1})]}, "tokens"),
    ({"items": [math(1, 1)], "advantage": "ppo"}, "advantage"),
    ({"items": [math(1, 1)], "shaping": {"overlong": {"max_tokens": 10, "buffer": 20}}}, "overlong"),
    ({"items": [math(1, 1)], "shaping": {"format": {"penalty": -1}}}, "penalty"),
    ({"items": [math(1, 1)], "shaping": {"lenght": {}}}, "lenght"),
    ({"items": [math(1, 1, group="g" * 513)]}, "group"),
])
def test_bad_options_are_422_naming_the_field(client, body, field):
    resp = client.post("/score", json=body)
    assert resp.status_code == 422
    assert any(field in ".".join(map(str, e["loc"])) for e in resp.json()["detail"]), resp.json()


def test_tasks_and_openapi_describe_the_request_options(client):
    tasks = client.get("/tasks").json()
    opts = tasks["request_options"]
    assert {"advantage", "shaping", "cache"} <= set(opts["properties"])
    assert {"group", "prompt_id", "length"} <= set(opts["item_fields"])
    assert "(r - mean) / (std + 1e-6)" in opts["properties"]["advantage"]["description"]
    assert all(t["version"] for t in tasks["tasks"])
    spec = client.get("/openapi.json").json()
    assert {"GroupStats", "Shaping", "OverlongShaping", "Length"} <= set(spec["components"]["schemas"])
    assert "advantage" in spec["components"]["schemas"]["ScoreRequest"]["properties"]


def test_a_job_computes_advantages_over_groups_spanning_its_sub_batches(client):
    # 600 items are three sub-batches of 256+; each group has one sample in the first and one in the last
    items = [math(n, n, group=f"g{n % 20}") for n in range(600)]
    items[5] = math(5, 6, group="g5")  # one wrong answer in group g5
    url = client.post("/jobs", json={"items": items, "advantage": "dr_grpo"}).json()["status_url"]
    deadline = time.monotonic() + 60
    while (st := client.get(url).json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    groups = st["result"]["groups"]
    assert len(groups) == 20 and all(g["count"] == 30 for g in groups.values())
    assert groups["g5"]["mean"] == pytest.approx(29 / 30) and groups["g4"]["zero_variance"]
    assert st["result"]["results"][5]["advantage"] == pytest.approx(-29 / 30)
    assert st["result"]["results"][25]["advantage"] == pytest.approx(1 / 30)  # same group, other sub-batch
