"""The verl, OpenRLHF and TRL adapters against the live service: their own behaviour.

The trainers' own code drives them in tests/test_trainer_{verl,openrlhf,nemo_gym}.py
(each trainer's release in its own environment) and, for TRL, here: when it is
installed, a real GRPOTrainer step on a tiny randomly initialised model calls our
reward function.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import statistics

import httpx
import pytest

from live_service import SERVICE_KEY
from trl_trainer import tiny_trainer
from reward_service.client import AsyncRewardClient, RewardClient
from reward_service.integrations import verl
from reward_service.integrations.openrlhf_items import build_items, clean_completion, parse_label, split_completion
from reward_service.integrations.trl import ServiceRewardFunc, make_reward_func

KEY = SERVICE_KEY


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


@pytest.fixture
def sent(monkeypatch) -> list[int]:
    """The size of every batch the async client sends, in order."""
    sizes: list[int] = []
    real = AsyncRewardClient.score

    async def counting(self, items, **kw):
        items = list(items)
        sizes.append(len(items))
        return await real(self, items, **kw)

    monkeypatch.setattr(AsyncRewardClient, "score", counting)
    return sizes


async def test_verl_concurrent_compute_score_calls_are_one_request(service_env, sent):
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


async def test_verl_coalescing_can_be_switched_off_by_reward_kwargs(service_env, sent):
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
    # The wire format of OpenRLHF's remote reward call (0.11: openrlhf/utils/agent.py
    # SingleTurnAgentExecutor._fetch_rewards_via_http); OpenRLHF's own code runs against
    # the service in tests/test_trainer_openrlhf.py.
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
    assert out["extra_logs"] == {"status_ok": [1.0, 1.0], "prompt_found": [1.0, 1.0], "text_after_end": [0.0, 0.0]}


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


def test_openrlhf_route_401_tells_openrlhf_users_what_to_do(keyed_url):
    response = httpx.post(f"{keyed_url}/openrlhf", json={"query": ["\\boxed{1}"], "prompts": [""], "labels": ["1"]})
    assert response.status_code == 401
    assert "openrlhf_reward_func.py" in response.json()["detail"]
    assert "http://openrlhf:<key>@" in response.json()["detail"]


def test_openrlhf_route_takes_the_key_as_basic_auth_from_url_credentials(keyed_url):
    # aiohttp (OpenRLHF's HTTP client) sends a URL's user-info as HTTP Basic.
    body = {"query": ["\\boxed{1}"], "prompts": [""], "labels": ["1"]}
    assert httpx.post(f"{keyed_url}/openrlhf", json=body, auth=("openrlhf", KEY)).json()["rewards"] == [1.0]
    assert httpx.post(f"{keyed_url}/openrlhf", json=body, auth=("openrlhf", "wrong")).status_code == 401


def test_openrlhf_route_refusal_is_logged_by_the_service(caplog):
    # OpenRLHF logs the 401 at INFO and trains on without rewards: the service's log must say it.
    from fastapi.testclient import TestClient

    from reward_service import auth
    from reward_service.api import create_app
    from reward_service.config import Settings

    auth._last_warning[0] = float("-inf")
    with TestClient(create_app(Settings(api_key=KEY, sandbox_backend="unsafe", sandbox_required=False,
                                        workers=1))) as client, caplog.at_level("WARNING", "reward_service"):
        assert client.post("/openrlhf", json={"query": ["x"]}).status_code == 401
        assert client.post("/openrlhf", json={"query": ["x"]}).status_code == 401
    warnings = [r for r in caplog.records if "/openrlhf" in r.getMessage()]
    assert len(warnings) == 1  # once a minute, not once per sample
    assert "openrlhf_reward_func.py" in warnings[0].getMessage()


def test_openrlhf_reward_func_file_loads_and_scores_as_openrlhf_calls_it(service_env):
    # openrlhf/utils/agent.py SingleTurnAgentExecutor: a --reward.remote_url ending in .py is
    # loaded with spec_from_file_location("reward_func", path) and called as
    # reward_func(queries, prompts, labels). OpenRLHF itself does this in tests/test_trainer_openrlhf.py.
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


CHATML_PROMPT = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("end", ["<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>", "<｜end▁of▁sentence｜>",
                                 "<end_of_turn>", "<eos>", "<|im_end|><|endoftext|>", "<|eot_id|>\n"])
def test_clean_completion_drops_the_end_of_sequence_token_openrlhf_decodes(end):
    # OpenRLHF 0.11 decodes prompt + response with skip_special_tokens=False.
    assert clean_completion(CHATML_PROMPT + "It is 4." + end, CHATML_PROMPT) == ("It is 4.", True, False)


def test_clean_completion_does_not_score_an_invented_next_turn():
    # A model run without its end-of-turn stop token goes on to invent turns with answers of their own.
    query = CHATML_PROMPT + "I don't know.<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n\\boxed{6}"
    assert clean_completion(query, CHATML_PROMPT) == ("I don't know.", True, True)


@pytest.mark.parametrize("prompt, invented", [
    ("<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n", "<|end|>\n<|user|>\nAnd 3+3?<|end|>\n<|assistant|>\n"),  # Phi-3
    ("<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜>", "<｜User｜>And 3+3?<｜Assistant｜>"),  # DeepSeek
    ("<s>[INST] What is 2+2? [/INST]", "</s>[INST] And 3+3? [/INST]"),                              # Mistral
])
def test_clean_completion_ends_at_the_start_of_an_invented_turn(prompt, invented):
    # Phi-3's end token <|end|> also closes each of a Harmony response's messages, so a
    # Phi-3 response is cut where the next turn starts instead.
    completion, found, after_end = clean_completion(prompt + "I don't know." + invented + "\\boxed{6}", prompt)
    assert (completion.rstrip(), found, after_end) == ("I don't know.", True, True)


def test_clean_completion_removes_bar_delimited_special_tokens_inside_the_response():
    prompt = "<｜begin▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜><think>\n"
    query = prompt + "four<|vision_pad|></think> \\boxed{4}<｜end▁of▁sentence｜>"
    assert clean_completion(query, prompt) == ("four</think> \\boxed{4}", True, False)


def test_clean_completion_keeps_markup_that_only_looks_like_sentencepiece_tokens():
    # <s>...</s> is HTML's strikethrough: only a leading <s> and a trailing </s> are the tokenizer's.
    prompt = "<s>[INST] Write HTML [/INST]"
    assert clean_completion(prompt + " <s>old</s> new</s>", prompt) == (" <s>old</s> new", True, False)


def test_clean_completion_without_the_prompt_scores_the_whole_query_without_special_tokens():
    # The user's turn ends first: cutting at the first end-of-turn marker would score the prompt alone.
    query = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n\\boxed{4}<|im_end|>"
    assert clean_completion(query, "a prompt OpenRLHF truncated") == ("user\nWhat is 2+2?\nassistant\n\\boxed{4}", False, False)


def test_clean_completion_cuts_off_the_tail_of_a_prompt_openrlhf_truncated_from_the_left():
    # The prompt's worked example is in the tail OpenRLHF kept; scored, it would be the "answer".
    prompt = "<|im_start|>user\n" + "Long preamble. " * 20 + "Answer like \\boxed{7}. What is 3+4?<|im_end|>\n<|im_start|>assistant\n"
    assert clean_completion(prompt[100:] + "No idea.<|im_end|>", prompt) == ("No idea.", True, False)


def test_clean_completion_finds_the_tail_of_a_truncated_prompt_that_repeats_itself():
    # Few-shot boilerplate: the query's opening occurs at many places in the prompt.
    prompt = "Some words to make this prompt long. " * 30 + "Answer like \\boxed{7}. What is 3+4?"
    assert clean_completion(prompt[500:] + "No idea.", prompt) == ("No idea.", True, False)


def test_clean_completion_looks_for_no_prompt_tail_shorter_than_32_characters():
    assert clean_completion("What is 3+4? \\boxed{7}", "Long preamble. What is 3+4?")[1] is False


def test_clean_completion_takes_long_whitespace_runs_and_repetitive_prompts_in_stride():
    # Both once cost time quadratic in their length (a backtracking regex; a tail search tried everywhere).
    assert clean_completion("Q" + " " * 200_000 + "A</s>  ", "Q") == (" " * 200_000 + "A", True, False)
    prompt = "na " * 100_000
    assert clean_completion(prompt[1000:] + "x" + " " * 10, prompt + "?")[1] is False


def test_clean_completion_treats_a_nul_in_the_text_as_text_not_as_an_end_marker():
    assert clean_completion("Q\x00A: \\boxed{1}<|im_end|>", "Q") == ("A: \\boxed{1}", True, False)


def test_build_items_logs_per_query_whether_text_followed_the_end_of_turn():
    items, logs = build_items([CHATML_PROMPT + "4<|im_end|>", CHATML_PROMPT + "4<|im_end|>more"],
                              [CHATML_PROMPT] * 2, ["4", "4"], "math")
    assert [i.completion for i in items] == ["4", "4"]
    assert logs == {"prompt_found": [1.0, 1.0], "text_after_end": [0.0, 1.0]}


def test_openrlhf_route_scores_a_response_without_its_end_of_turn_token(open_url):
    # ifeval's end_checker: with "<|im_end|>" left on, the response would not end with the phrase.
    label = {"task": "ifeval", "ground_truth": {"instruction_id_list": ["startend:end_checker"],
                                                "kwargs": [{"end_phrase": "Any other questions?"}]}}
    out = openrlhf_post(open_url, {"query": [CHATML_PROMPT + "4. Any other questions?<|im_end|>"],
                                   "prompts": [CHATML_PROMPT], "labels": [json.dumps(label)]})
    assert out["rewards"] == [1.0]


def test_openrlhf_item_building_imports_without_the_server_stack():
    # The reward-function file runs in OpenRLHF's Ray workers, which have no fastapi.
    import subprocess
    import sys

    code = ("import sys, reward_service.integrations.openrlhf_reward_func; "
            "print(sorted(m for m in ('fastapi', 'starlette', 'math_verify', 'uvicorn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


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


def test_trl_row_without_a_task_is_not_this_functions_row(open_url):
    # a dataset mixing our tasks with rows another reward function scores: TRL reads None as "doesn't apply"
    fn = make_reward_func(task=None, url=open_url, ground_truth_column="answer", task_column="kind")
    rewards = fn(prompts=["p", "q", "r"], completions=["\\boxed{12}", "a poem", "\\boxed{3}"],
                 **trl_kwargs(answer=["12", None, "4"], kind=["math", None, "math"]))
    assert rewards == [1.0, None, 0.0]
    assert fn(prompts=["q"], completions=["a poem"], **trl_kwargs(answer=[None], kind=[""])) == [None]


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
