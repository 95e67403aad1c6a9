"""TRL reward functions: the async one TRL awaits, and None for the statuses a user names.

The trainer tests call TRL's own ``GRPOTrainer._calculate_rewards`` (TRL 1.16) on a tiny
real trainer, against the live service: TRL decides the function is async, runs it on its
event loop, gathers it with the others and turns our None into NaN, not a copy of that code.
"""
from __future__ import annotations

import asyncio
import logging
import math
import pickle

import pytest

from reward_service.client import AsyncRewardClient, RewardClient
from reward_service.integrations.trl import AsyncServiceRewardFunc, make_reward_func
from reward_service.models import Result
from trl_trainer import tiny_trainer


def trl_kwargs(log_metric=lambda name, value: None, **columns):
    """What GRPOTrainer._calculate_rewards adds to the dataset columns (TRL 1.x)."""
    return {"completion_ids": [[1, 2]] * len(next(iter(columns.values()))), "trainer_state": object(),
            "log_extra": lambda column, values: None, "log_metric": log_metric, **columns}


def result(status: str, reward: float = 0.0) -> Result:
    return Result(id=None, task="math", reward=reward, status=status, elapsed_ms=1.0)


# -- the async function --------------------------------------------------------------


def test_trl_recognises_the_async_function_as_async_and_the_sync_one_as_sync():
    pytest.importorskip("trl")
    from trl.trainer.utils import get_callable_name, is_async_callable

    fn = make_reward_func(task="math", asynchronous=True)
    assert isinstance(fn, AsyncServiceRewardFunc)
    assert is_async_callable(fn) and not is_async_callable(make_reward_func(task="math"))
    assert get_callable_name(fn) == "reward_service_math"


def test_async_reward_func_scores_what_the_sync_one_scores(open_url):
    columns = dict(prompts=["2+2?", "3+3?", "p"], completions=["\\boxed{4}", "\\boxed{7}", "The answer is (C)."])
    truths = dict(ground_truth=["4", "6", "C"], kind=["math", "math", "mcq"])
    sync = make_reward_func(task=None, task_column="kind", url=open_url)
    async_fn = make_reward_func(task=None, task_column="kind", url=open_url, asynchronous=True)
    assert asyncio.run(async_fn(**columns, **trl_kwargs(**truths))) == sync(**columns, **trl_kwargs(**truths)) \
        == [1.0, 0.0, 1.0]


def test_async_reward_func_gives_none_for_a_row_without_a_task(open_url):
    fn = make_reward_func(task=None, task_column="kind", url=open_url, asynchronous=True)
    got = asyncio.run(fn(prompts=["p", "q"], completions=["\\boxed{4}", "x"],
                         **trl_kwargs(ground_truth=["4", None], kind=["math", None])))
    assert got == [1.0, None]


def test_async_reward_func_keeps_one_client_per_event_loop(open_url):
    fn = make_reward_func(task="math", url=open_url, asynchronous=True)

    async def two_calls():
        for _ in range(2):
            assert await fn(prompts=["p"], completions=["\\boxed{1}"], **trl_kwargs(ground_truth=["1"])) == [1.0]
        return fn.client(), fn.client()._http

    client, http = asyncio.run(two_calls())
    assert isinstance(client, AsyncRewardClient) and http is not None  # the calls used it
    other_client, other_http = asyncio.run(two_calls())  # a new loop: never the old loop's connections
    assert other_client is not client and other_http is not http


def test_async_reward_func_aclose_closes_the_loops_client_and_the_next_call_opens_another(open_url):
    fn = make_reward_func(task="math", url=open_url, asynchronous=True)
    call = dict(prompts=["p"], completions=["\\boxed{1}"], **trl_kwargs(ground_truth=["1"]))

    async def call_close_call():
        assert await fn(**call) == [1.0]
        first = fn.client()
        http = first._http
        await fn.aclose()
        assert http.is_closed
        assert await fn(**call) == [1.0]
        return first, fn.client()

    first, second = asyncio.run(call_close_call())
    assert second is not first


def test_async_reward_func_survives_pickling_after_a_call(open_url):
    fn = make_reward_func(task="math", url=open_url, asynchronous=True, none_for=("invalid",))
    call = dict(prompts=["p", "q"], completions=["\\boxed{1}", "\\boxed{1}"], **trl_kwargs(ground_truth=["1", ""]))
    assert asyncio.run(fn(**call)) == [1.0, None]  # opens a client
    copy = pickle.loads(pickle.dumps(fn))
    assert isinstance(copy, AsyncServiceRewardFunc) and copy.__name__ == fn.__name__
    assert copy.none_for == {"invalid"}
    assert asyncio.run(copy(**call)) == [1.0, None]


# -- none_for ------------------------------------------------------------------------


def test_failed_checks_score_zero_by_default():
    fn = make_reward_func(task="math")
    rewards = fn.rewards([result("ok", 1.0), result("timeout"), result("error"), result("invalid")])
    assert rewards == [1.0, 0.0, 0.0, 0.0]


def test_none_for_gives_none_only_for_the_named_statuses():
    fn = make_reward_func(task="math", none_for=("error", "invalid"))
    assert fn.rewards([result("ok", 1.0), result("ok", 0.0), result("timeout"), result("error"), result("invalid")]) \
        == [1.0, 0.0, 0.0, None, None]


def test_none_for_takes_one_status_as_a_string():
    assert make_reward_func(task="math", none_for="error").none_for == {"error"}


@pytest.mark.parametrize("bad", [("ok",), ("errors",), ("timeout", "wrong")])
def test_none_for_rejects_what_is_not_a_failed_status(bad):
    with pytest.raises(ValueError, match="not among"):
        make_reward_func(task="math", none_for=bad)


def test_none_for_rejects_a_bool():
    with pytest.raises(TypeError, match="statuses"):
        make_reward_func(task="math", none_for=True)


def test_not_ok_frac_counts_the_rows_given_none(open_url):
    logged = {}
    fn = make_reward_func(task="math", url=open_url, none_for=("invalid",))
    rewards = fn(prompts=["p", "q"], completions=["\\boxed{4}", "\\boxed{4}"],
                 **trl_kwargs(log_metric=logged.__setitem__, ground_truth=["4", ""]))
    assert rewards == [1.0, None]
    assert logged == {"reward_service_math/not_ok_frac": 0.5}


# -- TRL's own GRPOTrainer._calculate_rewards ----------------------------------------


class _Watched(AsyncServiceRewardFunc):
    """Ours, plus a record of the loop TRL ran it on, what it scored, and how many of its kind were
    awaiting at once."""

    in_flight = 0
    most_in_flight = 0
    loops: list
    calls: list

    async def __call__(self, prompts, completions, **kwargs):
        type(self).in_flight += 1
        type(self).most_in_flight = max(type(self).most_in_flight, type(self).in_flight)
        try:
            self.loops.append(asyncio.get_running_loop())
            rewards = await super().__call__(prompts, completions, **kwargs)
            self.calls.append({"completions": completions, "rewards": rewards})
            return rewards
        finally:
            type(self).in_flight -= 1


def _watched(url: str, name: str, **kwargs) -> _Watched:
    fn = _Watched(task="math", url=url, api_key=None, ground_truth_column="ground_truth", task_column=None,
                  options=None, options_column=None, timeout_s=None, name=name, **kwargs)
    fn.loops, fn.calls = [], []
    return fn


def _calculate_rewards(trainer, completions: list[str], truths: list[str]):
    """TRL's own reward step on these completions, as _generate_and_score_completions calls it."""
    prompts = ["what is 2+2?"] * len(completions)
    inputs = [{"prompt": p, "ground_truth": g} for p, g in zip(prompts, truths)]
    ids = [[3]] * len(completions)
    return trainer._calculate_rewards(inputs, prompts, completions, ids).tolist()


def _service_rewards(url: str, completions: list[str], truths: list[str]) -> list[float]:
    with RewardClient(url) as client:
        return [r.reward for r in client.score(
            [{"task": "math", "completion": c, "ground_truth": g} for c, g in zip(completions, truths)])]


def test_trl_awaits_our_async_function_on_its_event_loop(open_url, tmp_path):
    fn = _watched(open_url, "async_math")
    trainer = tiny_trainer([fn], False, tmp_path)
    completions, truths = ["so \\boxed{4}", "\\boxed{5}", "what", "\\boxed{4}"], ["4"] * 4

    for _ in range(2):
        rewards = _calculate_rewards(trainer, completions, truths)
        assert [row[0] for row in rewards] == _service_rewards(open_url, completions, truths) == [1.0, 0.0, 0.0, 1.0]
    assert fn.loops == [trainer.async_loop] * 2  # TRL's daemon loop, not one per call
    assert list(fn._clients) == [trainer.async_loop]  # and one client there, kept between steps


def test_trl_gathers_our_async_functions_with_our_sync_one(open_url, tmp_path):
    _Watched.most_in_flight = 0
    first, second = _watched(open_url, "async_a"), _watched(open_url, "async_b")
    sync = make_reward_func(task="math", url=open_url, name="sync_math")
    trainer = tiny_trainer([first, sync, second], True, tmp_path)
    completions, truths = ["\\boxed{4}", "\\boxed{5}"], ["4", "4"]

    rewards = _calculate_rewards(trainer, completions, truths)
    assert rewards == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]  # one column per function, in reward_funcs order
    # Both async functions were awaiting the service at the same time: asyncio.gather, not one after the other.
    assert _Watched.most_in_flight == 2
    assert first.loops == second.loops == [trainer.async_loop]


def test_trl_turns_our_none_for_an_invalid_row_into_nan(open_url, tmp_path):
    masked = _watched(open_url, "masked_math", none_for=("invalid",))
    zeroed = make_reward_func(task="math", url=open_url, name="zeroed_math")
    trainer = tiny_trainer([masked, zeroed], False, tmp_path)
    completions, truths = ["\\boxed{4}", "\\boxed{4}", "\\boxed{5}"], ["4", "", "4"]  # "" is invalid ground truth

    rewards = _calculate_rewards(trainer, completions, truths)
    assert rewards[0] == [1.0, 1.0] and rewards[2] == [0.0, 0.0]
    assert math.isnan(rewards[1][0]) and rewards[1][1] == 0.0  # None became NaN; the default still pays 0


def test_trl_warns_of_a_row_every_function_left_unscored(open_url, tmp_path, caplog):
    masked = _watched(open_url, "masked_math", none_for=("invalid",))
    trainer = tiny_trainer([masked], False, tmp_path)

    with caplog.at_level(logging.WARNING):
        rewards = _calculate_rewards(trainer, ["\\boxed{4}", "\\boxed{4}"], ["4", ""])
    assert rewards[0] == [1.0] and math.isnan(rewards[1][0])
    assert "All reward functions returned None" in caplog.text


def test_trl_training_step_with_our_async_function(open_url, tmp_path):
    fn = _watched(open_url, "async_math")
    trainer = tiny_trainer([fn], True, tmp_path)
    trainer.train()

    assert fn.loops == [trainer.async_loop]
    from reward_service.integrations.trl import _text

    completions = [_text(c) for c in fn.calls[0]["completions"]]
    expected = _service_rewards(open_url, completions, ["4"] * len(completions))
    assert fn.calls[0]["rewards"] == expected
    logged = next(h for h in trainer.state.log_history if "rewards/async_math/mean" in h)
    assert float(logged["rewards/async_math/mean"]) == pytest.approx(sum(expected) / len(expected), abs=1e-3)
    assert float(logged["async_math/not_ok_frac"]) == 0.0  # log_metric from TRL's loop thread reaches its logs


def test_trl_example_functions_score_the_example_rows_in_trls_reward_step(open_url, tmp_path, monkeypatch):
    import importlib.util

    from live_service import REPO

    pytest.importorskip("trl")
    monkeypatch.setenv("REWARD_SERVICE_URL", open_url)
    monkeypatch.delenv("REWARD_SERVICE_API_KEY", raising=False)
    path = REPO / "examples" / "trl" / "grpo_with_reward_service.py"
    spec = importlib.util.spec_from_file_location("trl_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)  # builds the dataset and reward functions; training is main()'s
    trainer = tiny_trainer([example.answer, example.fmt], True, tmp_path)

    rows = list(example.dataset)  # as the trainer's dataloader gives them: Arrow's columns, nulls and all
    completions = [[{"role": "assistant", "content": "* six sevens\n* are 42\n\\boxed{42}"}],
                   [{"role": "assistant", "content": "The answer is (B)."}]]
    rewards = trainer._calculate_rewards(rows, [r["prompt"] for r in rows], completions, [[3], [3]]).tolist()
    # Row 1: right answer, two bullets. Row 2: right letter, but not all lowercase.
    assert rewards == [[1.0, 1.0], [1.0, 0.0]]
