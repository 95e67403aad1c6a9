"""The verl, OpenRLHF and TRL adapters, each against the live service and its trainer's call.

verl and OpenRLHF need GPU stacks, so their calling conventions are pinned from
their sources (cited per test). TRL runs on CPU: when it is installed, a real
GRPOTrainer step on a tiny randomly initialised model calls our reward function.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import statistics

import httpx
import pytest

from live_service import running_service
from trl_trainer import tiny_trainer
from reward_service.client import AsyncRewardClient, RewardClient
from reward_service.integrations import verl
from reward_service.integrations.openrlhf import parse_label, split_completion
from reward_service.integrations.trl import ServiceRewardFunc, make_reward_func

KEY = "integration-key"


@pytest.fixture(scope="module")
def open_url():
    with running_service() as url:
        yield url


@pytest.fixture(scope="module")
def keyed_url():
    with running_service(api_key=KEY) as url:
        yield url


@pytest.fixture
def service_env(monkeypatch, keyed_url):
    for name in ("REWARD_SERVICE_TASK_MAP", "REWARD_SERVICE_DEFAULT_TASK", "REWARD_SERVICE_RETURN_DICT",
                 "REWARD_SERVICE_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REWARD_SERVICE_URL", keyed_url)
    monkeypatch.setenv("REWARD_SERVICE_API_KEY", KEY)


# -- verl ---------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [verl.compute_score, verl.compute_score_sync])
def test_verl_compute_score_has_the_signature_the_reward_loop_calls(fn):
    # verl 0.9.1 verl/experimental/reward_loop/reward_manager/naive.py, run_single:
    # compute_score(data_source=, solution_str=, ground_truth=, extra_info=, **extra_reward_kwargs),
    # reward_kwargs merged in by verl/trainer/ppo/reward.py get_custom_reward_fn.
    params = inspect.signature(fn).parameters
    assert list(params)[:4] == ["data_source", "solution_str", "ground_truth", "extra_info"]
    assert params["extra_info"].default is None
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def test_verl_compute_score_is_async_so_the_reward_loop_awaits_it_in_its_event_loop():
    # naive.py: is_async_reward_score = inspect.iscoroutinefunction(compute_score); the sync
    # form would run in a thread pool, one request per response.
    import functools

    assert inspect.iscoroutinefunction(functools.partial(verl.compute_score, extra_info=None))
    assert not inspect.iscoroutinefunction(verl.compute_score_sync)


async def test_verl_concurrent_compute_score_calls_are_one_request(service_env, monkeypatch):
    sent = []
    real = AsyncRewardClient.score

    async def counting(self, items, **kw):
        items = list(items)
        sent.append(len(items))
        return await real(self, items, **kw)

    monkeypatch.setattr(AsyncRewardClient, "score", counting)
    answers = ["\\boxed{72}", "\\boxed{70}", "\\boxed{72}", "no idea"] * 4  # a GRPO group of 16, 3 distinct
    scores = await asyncio.gather(*(verl.compute_score(data_source="openai/gsm8k", solution_str=a, ground_truth="72",
                                                       extra_info={"index": 0}) for a in answers))
    assert scores == [1.0, 0.0, 1.0, 0.0] * 4
    assert sent == [3]


async def test_verl_one_unmapped_row_fails_alone_among_concurrent_calls(service_env):
    out = await asyncio.gather(verl.compute_score("openai/gsm8k", "\\boxed{1}", "1"),
                               verl.compute_score("my_unknown_set", "\\boxed{1}", "1"),
                               verl.compute_score("openai/gsm8k", "\\boxed{2}", "1"), return_exceptions=True)
    assert out[0] == 1.0 and out[2] == 0.0
    assert isinstance(out[1], ValueError) and "my_unknown_set" in str(out[1])


async def test_verl_coalescing_can_be_switched_off_by_reward_kwargs(service_env, monkeypatch):
    sent = []
    real = AsyncRewardClient.score

    async def counting(self, items, **kw):
        items = list(items)
        sent.append(len(items))
        return await real(self, items, **kw)

    monkeypatch.setattr(AsyncRewardClient, "score", counting)
    await asyncio.gather(*(verl.compute_score("openai/gsm8k", f"\\boxed{{{i}}}", "1", coalesce_ms=0)
                           for i in range(3)))
    assert sent == [1, 1, 1]


def test_verl_compute_score_batch_matches_what_batch_reward_manager_passes():
    # verl/workers/reward_manager/batch.py, BatchRewardManager.verify:
    # compute_score(data_sources=, solution_strs=, ground_truths=, extra_infos=, **reward_kwargs)
    params = inspect.signature(verl.compute_score_batch).parameters
    assert list(params)[:4] == ["data_sources", "solution_strs", "ground_truths", "extra_infos"]
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def test_verl_loads_our_file_and_calls_it_as_the_old_batch_manager_does(service_env):
    # verl < 0.9 verl/trainer/ppo/reward.py get_custom_reward_fn: the file is executed as module
    # "custom_module", the named function wrapped so reward_kwargs are merged into each
    # call; BatchRewardManager.verify then calls it by keyword.
    import functools
    import importlib.util

    spec = importlib.util.spec_from_file_location("custom_module", verl.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raw_fn = getattr(module, "compute_score_batch")
    reward_kwargs = dict({"return_dict": True})

    def _call_with_kwargs(raw_fn, extra_kwargs, *args, **kwargs):
        return raw_fn(*args, **{**kwargs, **extra_kwargs})

    compute_score = functools.partial(_call_with_kwargs, raw_fn, reward_kwargs)
    scores = compute_score(data_sources=["openai/gsm8k", "openai/gsm8k"], solution_strs=["\\boxed{3}", "\\boxed{4}"],
                           ground_truths=["3", "3"], extra_infos=[None, None])
    assert [s["score"] for s in scores] == [1.0, 0.0]


def test_verl_functions_loaded_by_file_path_survive_cloudpickle(service_env):
    # verl 0.9's remote manager ships the function to a Ray actor with cloudpickle; loaded by
    # path (module "custom_module_<hash>", not importable) it goes by value, globals and all:
    # a module-level lru_cache there made that fail.
    import importlib.util

    cloudpickle = pytest.importorskip("cloudpickle")
    spec = importlib.util.spec_from_file_location(f"custom_module_{hash(verl.__file__)}", verl.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("compute_score", "compute_score_sync", "compute_score_batch"):
        clone = cloudpickle.loads(cloudpickle.dumps(getattr(module, name)))
        assert clone.__name__ == name
    clone = cloudpickle.loads(cloudpickle.dumps(module.compute_score_sync))
    assert clone("openai/gsm8k", "\\boxed{3}", "3") == 1.0
    assert asyncio.run(cloudpickle.loads(cloudpickle.dumps(module.compute_score))("openai/gsm8k", "\\boxed{3}", "3")) == 1.0


def test_verl_compute_score_rewards_a_correct_gsm8k_answer(service_env):
    score = verl.compute_score_sync(data_source="openai/gsm8k", solution_str="48 + 24 = 72, so \\boxed{72}",
                               ground_truth="72", extra_info={"split": "train", "index": 0})
    assert score == 1.0


def test_verl_compute_score_gives_nothing_for_a_wrong_answer(service_env):
    assert verl.compute_score_sync("lighteval/MATH", "\\boxed{\\frac{1}{3}}", "\\frac{1}{2}") == 0.0


def test_verl_batch_scores_mixed_sources_in_order(service_env):
    scores = verl.compute_score_batch(
        data_sources=["openai/gsm8k", "Idavidrein/gpqa", "aime2024", "Idavidrein/gpqa"],
        solution_strs=["\\boxed{72}", "The answer is (C).", "\\boxed{100}", "The answer is (A)."],
        ground_truths=["72", "C", "204", "B"], extra_infos=[{"index": i} for i in range(4)])
    assert scores == [1.0, 1.0, 0.0, 0.0]


def test_verl_batch_takes_the_numpy_arrays_verl_hands_over(service_env):
    np = pytest.importorskip("numpy")
    # verl's non_tensor_batch holds numpy object arrays; ground truths may be numpy strings.
    scores = verl.compute_score_batch(
        data_sources=np.array(["openai/gsm8k", "Idavidrein/gpqa"], dtype=object), solution_strs=["\\boxed{7}", "(B)"],
        ground_truths=np.array(["7", "B"]), extra_infos=np.array([{"index": 0}, None], dtype=object))
    assert scores == [1.0, 1.0]


def test_verl_batch_is_one_request_for_a_training_step(service_env, monkeypatch):
    sent = []
    real = RewardClient.score

    def counting(self, items, **kw):
        sent.append(len(items))
        return real(self, items, **kw)

    monkeypatch.setattr(RewardClient, "score", counting)
    verl.compute_score_batch(["openai/gsm8k"] * 8, ["\\boxed{1}"] * 8, ["1"] * 8, [None] * 8)
    assert sent == [8]


def test_verl_return_dict_gives_the_same_numeric_keys_on_every_row(service_env):
    rows = verl.compute_score_batch(["openai/gsm8k", "openai/gsm8k"], ["\\boxed{2}", "no answer"], ["2", "3"],
                                    [None, None], return_dict=True)
    assert rows[0]["score"] == 1.0 and rows[1]["score"] == 0.0
    assert rows[0].keys() == rows[1].keys()
    assert all(isinstance(v, float) for row in rows for v in row.values())


def test_verl_return_dict_can_be_switched_on_by_environment(service_env, monkeypatch):
    monkeypatch.setenv("REWARD_SERVICE_RETURN_DICT", "1")
    assert verl.compute_score_sync("openai/gsm8k", "\\boxed{5}", "5")["score"] == 1.0


def test_verl_extra_info_task_overrides_the_data_source_mapping(service_env):
    assert verl.compute_score_sync("openai/gsm8k", "The answer is (D).", "D", {"task": "mcq"}) == 1.0


def test_verl_reward_options_reach_the_task(service_env):
    row = verl.compute_score_sync("openai/gsm8k", "\\boxed{5}", "5", {"reward_options": {"no_such_option": 1}},
                             return_dict=True)
    assert row["status_ok"] == 0.0  # the math task rejected the unknown option, so it was sent


@pytest.mark.parametrize("source, task", [
    ("openai/gsm8k", "math"), ("lighteval/MATH", "math"), ("DigitalLearningGmbH/MATH-lighteval", "math"),
    ("HuggingFaceH4/MATH-500", "math"), ("math_dapo", "math"), ("aime2025", "math"), ("numina_olympiads", "math"),
    ("codecontests", "code"), ("apps", "code"), ("taco", "code"), ("codeforces", "code"),
    ("PrimeIntellect/verifiable-coding-problems", "code"), ("livecodebench/code_generation_lite", "code"),
    ("reasoning_gym/knights_knaves", "logic"), ("google/IFEval", "ifeval"), ("ifeval", "ifeval"),
    ("Idavidrein/gpqa", "mcq"), ("cais/mmlu", "mcq"),
])
def test_verl_default_task_map(source, task, monkeypatch):
    monkeypatch.delenv("REWARD_SERVICE_TASK_MAP", raising=False)
    assert verl.resolve_task(source) == task


def test_verl_task_map_from_environment_wins_over_defaults(monkeypatch):
    monkeypatch.setenv("REWARD_SERVICE_TASK_MAP", json.dumps({"openai/gsm8k": "mcq", "my_*": "logic"}))
    assert verl.resolve_task("openai/gsm8k") == "mcq"
    assert verl.resolve_task("my_puzzles") == "logic"


def test_verl_task_map_argument_wins_over_environment(monkeypatch):
    monkeypatch.setenv("REWARD_SERVICE_TASK_MAP", json.dumps({"src": "mcq"}))
    assert verl.resolve_task("src", task_map={"src": "math"}) == "math"


def test_verl_unmapped_data_source_is_an_error_not_a_silent_default(monkeypatch):
    monkeypatch.delenv("REWARD_SERVICE_TASK_MAP", raising=False)
    monkeypatch.delenv("REWARD_SERVICE_DEFAULT_TASK", raising=False)
    with pytest.raises(ValueError, match="my_dataset"):
        verl.resolve_task("my_dataset")
    assert verl.resolve_task("my_dataset", default_task="math") == "math"


# -- OpenRLHF -----------------------------------------------------------------------


def openrlhf_post(url: str, data: dict, **params) -> dict:
    # As openrlhf/utils/remote_rm_utils.py request_api_wrapper does it (with requests):
    # a JSON POST of {"query", "prompts", "labels"}, then response.json()["rewards"].
    response = httpx.post(f"{url}/openrlhf", json=data, params=params,
                          headers={"Content-Type": "application/json"}, timeout=60)
    response.raise_for_status()
    return response.json()


def test_openrlhf_scores_queries_with_plain_labels_as_math(open_url):
    prompts = ["<|user|>What is 6*7?<|assistant|>", "<|user|>What is 1+1?<|assistant|>"]
    queries = [prompts[0] + "6*7 = \\boxed{42}<|eos|>", prompts[1] + "It is \\boxed{3}<|eos|>"]
    out = openrlhf_post(open_url, {"query": queries, "prompts": prompts, "labels": ["42", "2"]})
    assert out["rewards"] == [1.0, 0.0]
    assert out["scores"] == out["rewards"]
    assert out["extra_logs"] == {"status_ok": [1.0, 1.0], "prompt_found": [1.0, 1.0]}


def test_openrlhf_json_labels_choose_the_task_per_sample(open_url):
    labels = [json.dumps({"task": "mcq", "ground_truth": "B"}), json.dumps({"task": "math", "ground_truth": "9"})]
    out = openrlhf_post(open_url, {"query": ["Q1 The answer is (B).", "Q2 \\boxed{9}"], "prompts": ["Q1", "Q2"],
                                   "labels": labels})
    assert out["rewards"] == [1.0, 1.0]


def test_openrlhf_task_query_parameter_sets_the_default_task(open_url):
    out = openrlhf_post(open_url, {"query": ["Pick one. The answer is (A)."], "prompts": ["Pick one."],
                                   "labels": ["A"]}, task="mcq")
    assert out["rewards"] == [1.0]


def test_openrlhf_prompt_is_not_scored_as_part_of_the_answer(open_url):
    # The prompt's own boxed example would be the "answer" if the prompt weren't cut off.
    prompt = "Answer like \\boxed{7}. What is 2+3?"
    out = openrlhf_post(open_url, {"query": [prompt + " I am not sure."], "prompts": [prompt], "labels": ["7"]})
    assert out["rewards"] == [0.0]


def test_openrlhf_prompt_missing_from_query_scores_the_whole_query_and_says_so(open_url):
    out = openrlhf_post(open_url, {"query": ["\\boxed{4}"], "prompts": ["a prompt that was re-tokenized"],
                                   "labels": ["4"]})
    assert out["rewards"] == [1.0]
    assert out["extra_logs"]["prompt_found"] == [0.0]


def test_openrlhf_old_clients_sending_only_query_get_rewards(open_url):
    # Older OpenRLHF posted {"query": queries} alone.
    out = openrlhf_post(open_url, {"query": ["\\boxed{4}"]})
    assert len(out["rewards"]) == 1


def test_openrlhf_mismatched_lengths_are_rejected(open_url):
    response = httpx.post(f"{open_url}/openrlhf", json={"query": ["a", "b"], "prompts": ["a"], "labels": ["1", "2"]})
    assert response.status_code == 422
    assert "prompts" in response.json()["detail"]


def test_openrlhf_route_is_behind_the_api_key_like_score(keyed_url):
    body = {"query": ["\\boxed{1}"], "prompts": [""], "labels": ["1"]}
    assert httpx.post(f"{keyed_url}/openrlhf", json=body).status_code == 401
    ok = httpx.post(f"{keyed_url}/openrlhf", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert ok.json()["rewards"] == [1.0]


def test_openrlhf_reward_func_file_loads_and_scores_as_openrlhf_calls_it(service_env):
    # openrlhf/utils/remote_rm_utils.py RemoteRewardModel: a --remote_rm_url ending in .py is
    # loaded with spec_from_file_location("reward_func", path) and called as
    # reward_func(queries, prompts, labels); the answer's tensors are concatenated across calls.
    torch = pytest.importorskip("torch")
    import importlib.util

    from reward_service.integrations import openrlhf_reward_func

    spec = importlib.util.spec_from_file_location("reward_func", openrlhf_reward_func.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.reward_func(["Q: 2+2? \\boxed{4}", "Q: pick. The answer is (C)."], ["Q: 2+2?", "Q: pick."],
                             ["4", json.dumps({"task": "mcq", "ground_truth": "B"})])
    assert out["rewards"].tolist() == [1.0, 0.0]
    assert torch.equal(out["scores"], out["rewards"])
    assert out["extra_logs"]["prompt_found"].tolist() == [1.0, 1.0]
    assert torch.cat([out["rewards"], out["rewards"]]).shape == (4,)


def test_split_completion_finds_the_prompt_after_a_bos_token():
    assert split_completion("<s>Q: 1+1?A: 2", "Q: 1+1?") == ("A: 2", True)


def test_parse_label_reads_json_objects_and_leaves_plain_strings_alone():
    assert parse_label('{"task": "mcq", "ground_truth": "C", "options": {}}', "math") == ("mcq", "C", {})
    assert parse_label("{not json", "math") == ("math", "{not json", None)
    assert parse_label("\\frac{1}{2}", "math") == ("math", "\\frac{1}{2}", None)


# -- TRL ----------------------------------------------------------------------------


def trl_kwargs(**columns):
    """What GRPOTrainer._calculate_rewards adds to the dataset columns (TRL 1.x)."""
    return {"completion_ids": [[1, 2]] * len(next(iter(columns.values()))), "trainer_state": object(),
            "log_extra": lambda column, values: None, "log_metric": lambda name, value: None, **columns}


def test_trl_reward_func_is_named_for_trl_logs():
    assert make_reward_func(task="math").__name__ == "reward_service_math"
    assert make_reward_func(task="mcq", name="answer_ok").__name__ == "answer_ok"


def test_trl_reward_func_scores_plain_completions(open_url):
    fn = make_reward_func(task="math", url=open_url)
    rewards = fn(prompts=["2+2?", "3+3?"], completions=["\\boxed{4}", "\\boxed{7}"],
                 **trl_kwargs(ground_truth=["4", "6"]))
    assert rewards == [1.0, 0.0]


def test_trl_reward_func_scores_conversational_completions(open_url):
    fn = make_reward_func(task="math", url=open_url)
    prompts = [[{"role": "user", "content": "2+2?"}]] * 2
    completions = [[{"role": "assistant", "content": "\\boxed{4}"}], [{"role": "assistant", "content": "5"}]]
    assert fn(prompts=prompts, completions=completions, **trl_kwargs(ground_truth=["4", "4"])) == [1.0, 0.0]


def test_trl_task_column_picks_the_task_per_row(open_url):
    fn = make_reward_func(task=None, url=open_url, ground_truth_column="answer", task_column="kind")
    rewards = fn(prompts=["p", "q"], completions=["The answer is (B).", "\\boxed{12}"],
                 **trl_kwargs(answer=["B", "12"], kind=["mcq", "math"]))
    assert rewards == [1.0, 1.0]


def test_trl_reward_func_uses_the_api_key(keyed_url):
    fn = make_reward_func(task="math", url=keyed_url, api_key=KEY)
    assert fn(prompts=["p"], completions=["\\boxed{1}"], **trl_kwargs(ground_truth=["1"])) == [1.0]


def test_trl_missing_ground_truth_column_names_the_columns_it_saw():
    fn = make_reward_func(task="math", url="http://127.0.0.1:9")
    with pytest.raises(KeyError, match="solution"):
        fn(prompts=["p"], completions=["c"], **trl_kwargs(solution=["1"]))


def test_trl_reward_func_survives_pickling(open_url):
    import pickle

    fn = make_reward_func(task="math", url=open_url)
    fn(prompts=["p"], completions=["\\boxed{1}"], **trl_kwargs(ground_truth=["1"]))  # opens a client
    copy = pickle.loads(pickle.dumps(fn))
    assert isinstance(copy, ServiceRewardFunc) and copy.__name__ == fn.__name__
    assert copy(prompts=["p"], completions=["\\boxed{1}"], **trl_kwargs(ground_truth=["1"])) == [1.0]


class _Recording(ServiceRewardFunc):
    """Ours, plus a record of what the trainer passed and got back."""

    calls: list

    def __call__(self, prompts, completions, **kwargs):
        rewards = super().__call__(prompts, completions, **kwargs)
        self.calls.append({"completions": completions, "kwargs": sorted(kwargs), "rewards": rewards})
        return rewards


@pytest.mark.parametrize("conversational", [False, True], ids=["standard", "conversational"])
def test_trl_grpo_trainer_step_uses_our_rewards(open_url, tmp_path, conversational):
    fn = _Recording(task="math", url=open_url, api_key=None, ground_truth_column="ground_truth", task_column=None,
                    options=None, options_column=None, timeout_s=None, name="reward_service_math")
    fn.calls = []
    trainer = tiny_trainer([fn], conversational, tmp_path)
    trainer.train()

    assert len(fn.calls) == 1
    call = fn.calls[0]
    assert {"completion_ids", "ground_truth", "trainer_state"} <= set(call["kwargs"])
    with RewardClient(open_url) as client:  # what the service says of the same texts
        from reward_service.integrations.trl import _text

        expected = [r.reward for r in client.score(
            [{"task": "math", "completion": _text(c), "ground_truth": "4"} for c in call["completions"]])]
    assert call["rewards"] == expected
    logged = next(h for h in trainer.state.log_history if "rewards/reward_service_math/mean" in h)
    assert float(logged["rewards/reward_service_math/mean"]) == pytest.approx(statistics.mean(expected), abs=1e-3)
    assert float(logged["reward_service_math/not_ok_frac"]) == 0.0  # reported through TRL's log_metric


# -- examples/grpo_loop.py ----------------------------------------------------------


def test_grpo_loop_example_learns_from_the_services_rewards(open_url):
    import re
    import subprocess
    import sys

    from live_service import REPO

    out = subprocess.run([sys.executable, str(REPO / "examples" / "grpo_loop.py"), "--url", open_url,
                          "--steps", "12", "--seed", "0"], capture_output=True, text=True, timeout=120, check=True)
    means = [float(m) for m in re.findall(r"mean reward (\d\.\d+)", out.stdout)]
    assert len(means) == 12
    assert statistics.mean(means[-3:]) > statistics.mean(means[:3]) + 0.5


def test_verl_example_dataset_rows_score_as_the_batch_manager_reads_them(service_env):
    import importlib.util

    from live_service import REPO

    spec = importlib.util.spec_from_file_location("verl_rows", REPO / "examples" / "verl" / "make_dataset.py")
    rows = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rows)
    answers = ["48 + 24 = \\boxed{72}", "The answer is (B)."]
    scores = verl.compute_score_batch(
        data_sources=[r["data_source"] for r in rows.rows], solution_strs=answers,
        ground_truths=[r["reward_model"]["ground_truth"] for r in rows.rows],
        extra_infos=[r["extra_info"] for r in rows.rows])
    assert scores == [1.0, 1.0]
