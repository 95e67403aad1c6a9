"""OpenRLHF 0.11.2's own reward code against the live service, in OpenRLHF's environment (.trainers/openrlhf).

``drive_rollout.py`` runs one rollout's reward calls through OpenRLHF's code: its CLI's
parser turns ``--reward.remote_url`` into what ``RolloutRayActor`` gets, the actor's
``SingleTurnAgentExecutor`` decodes prompt + response (special tokens and all) and calls
the URL route or loads and calls the reward-function file, and ``SamplesGenerator``
makes the trainer's Experience of the answer. Only vLLM's engine (it answers with the
test's response) and the GPU-only imports are stood in for (tests/trainers/openrlhf/).
``drive_parser.py`` parses the example script's command line with OpenRLHF's parser.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from live_service import SERVICE_KEY
from trainer_envs import REPO, run_driver, trainer_python

KEY = SERVICE_KEY
REWARD_FUNC = str(REPO / "reward_service" / "integrations" / "openrlhf_reward_func.py")
EXAMPLE = REPO / "examples" / "openrlhf" / "train_reinforce_with_reward_service.sh"
IFEVAL_ENDS_WITH = {"task": "ifeval", "ground_truth": {"instruction_id_list": ["startend:end_checker"],
                                                       "kwargs": [{"end_phrase": "Any other questions?"}]}}


@pytest.fixture(scope="module", autouse=True)
def openrlhf_installed():
    trainer_python("openrlhf")


def rollout(remote_url: str, samples: list[dict], family: str = "chatml", env: dict | None = None,
            flags: list[str] | None = None) -> dict:
    return run_driver("openrlhf", "drive_rollout.py", {"remote_url": remote_url, "family": family, "samples": samples,
                                                      "flags": flags or []}, env=env)


def one(value):
    """The single value of one sample's tensor as OpenRLHF's Experience holds it (shape (1,) or (1, 1))."""
    while isinstance(value, list):
        assert len(value) == 1, value
        value = value[0]
    return value


def rewards(out: dict) -> list:
    """Each sample's reward in the trainer's Experience (None: the trainer got no reward)."""
    return [one(s["rewards"]) for s in out["samples"]]


def logs(out: dict, name: str) -> list:
    """Each sample's ``extra_logs[name]`` in the Experience's info."""
    return [one(s["info"][name]) for s in out["samples"]]


# -- the URL route ---------------------------------------------------------------------


# One rollout through the open route, many samples (each OpenRLHF run costs ~10 s of imports).
ROUTE_SAMPLES = {
    "right": {"question": "What is 6*7?", "answer": "42", "response": "6*7 = \\boxed{42}"},
    "wrong": {"question": "What is 1+1?", "answer": "2", "response": "It is \\boxed{3}"},
    "mcq_json": {"question": "Pick one: (A) cat (B) dog", "answer": json.dumps({"task": "mcq", "ground_truth": "B"}),
                 "response": "The answer is (B)."},
    "math_json": {"question": "What is 3*3?", "answer": json.dumps({"task": "math", "ground_truth": "9"}),
                  "response": "\\boxed{9}"},
    "mcq_json_wrong": {"question": "Pick one: (A) red (B) blue",
                       "answer": json.dumps({"task": "mcq", "ground_truth": "A"}), "response": "The answer is (B)."},
    # ifeval's end_checker: with the <|im_end|> OpenRLHF decodes left on, the response would not end with the phrase.
    "ends_with": {"question": "What is 2+2? End with 'Any other questions?'", "answer": json.dumps(IFEVAL_ENDS_WITH),
                  "response": "It is 4. Any other questions?"},
    # A run whose stop tokens miss <|im_end|> generates on into a new turn with its own answer.
    "invented_turn": {"question": "What is 2+5?", "answer": "7", "stops": False,
                      "response": "I am not sure.<|im_end|>\n<|im_start|>user\nAnd 2+5?<|im_end|>\n"
                                  "<|im_start|>assistant\n\\boxed{7}"},
}


@pytest.fixture(scope="module")
def route_rollout(open_url):
    out = rollout(f"{open_url}/openrlhf", list(ROUTE_SAMPLES.values()))
    return {name: {"samples": [sample], "log": out["log"]} for name, sample in zip(ROUTE_SAMPLES, out["samples"])}


def test_url_route_plain_labels_are_math_ground_truths(route_rollout):
    assert rewards(route_rollout["right"]) == [1.0]
    assert rewards(route_rollout["wrong"]) == [0.0]
    assert [one(route_rollout[name]["samples"][0]["scores"]) for name in ("right", "wrong")] == [1.0, 0.0]
    assert logs(route_rollout["right"], "status_ok") == [1.0]
    assert logs(route_rollout["right"], "prompt_found") == [1.0]


def test_url_route_json_labels_choose_the_task_per_sample(route_rollout):
    assert [rewards(route_rollout[name]) for name in ("mcq_json", "math_json", "mcq_json_wrong")] == [[1.0], [1.0], [0.0]]


def test_url_route_task_query_parameter_sets_the_task_of_plain_labels(open_url):
    out = rollout(f"{open_url}/openrlhf?task=mcq", [
        {"question": "Pick one: (A) cat (B) dog", "answer": "A", "response": "The answer is (A)."}])
    assert rewards(out) == [1.0]


def test_url_route_scores_the_response_without_the_special_tokens_openrlhf_decodes(route_rollout):
    out = route_rollout["ends_with"]
    assert "<|im_start|>" in out["samples"][0]["prompt"]  # the template's special tokens were there to strip
    assert rewards(out) == [1.0]
    assert logs(out, "text_after_end") == [0.0]


def test_url_route_strips_llama3s_special_tokens_too(open_url):
    out = rollout(f"{open_url}/openrlhf", [ROUTE_SAMPLES["ends_with"]], family="llama3")
    assert out["samples"][0]["prompt"].startswith("<|begin_of_text|><|start_header_id|>user")
    assert rewards(out) == [1.0]


def test_url_route_does_not_score_a_turn_the_model_invented_after_its_own(route_rollout):
    assert rewards(route_rollout["invented_turn"]) == [0.0]
    assert logs(route_rollout["invented_turn"], "text_after_end") == [1.0]


def test_url_route_does_not_score_the_tail_of_a_prompt_openrlhf_truncated(open_url):
    # --data.max_len 96 with --rollout.max_new_tokens 16 keeps the prompt's last 80 tokens; the
    # prompt's worked example would be the "answer" if that tail were scored with the response.
    question = "Some words to make this prompt long. " * 30 + "Answer like this: \\boxed{7}. What is 3+4?"
    out = rollout(f"{open_url}/openrlhf", [{"question": question, "answer": "7", "response": "I am not sure."}],
                  flags=["--data.max_len", "96", "--rollout.max_new_tokens", "16"])
    assert any("Truncating" in line for line in out["log"]), out["log"]  # OpenRLHF did cut the prompt
    assert rewards(out) == [0.0]
    assert logs(out, "prompt_found") == [1.0]


def test_url_route_with_an_api_key_and_no_credentials_leaves_openrlhf_without_rewards(keyed_url):
    # Documented behaviour: OpenRLHF sends no key, retries the 401 five times, logs it at
    # INFO and goes on with reward None (its trainer fails later). The service's 401 body
    # and log say what to do (tests/test_integrations.py).
    out = rollout(f"{keyed_url}/openrlhf", [{"question": "What is 1+1?", "answer": "2", "response": "\\boxed{2}"}])
    assert rewards(out) == [None]
    assert any("401" in line for line in out["log"]), out["log"]


def test_url_route_with_the_key_in_the_url_user_info_is_scored(keyed_url):
    # aiohttp sends the URL's user-info as HTTP Basic; the service takes the key as its password.
    url = keyed_url.replace("http://", f"http://openrlhf:{KEY}@") + "/openrlhf"
    out = rollout(url, [{"question": "What is 1+1?", "answer": "2", "response": "\\boxed{2}"}])
    assert rewards(out) == [1.0]


# -- the reward-function file ----------------------------------------------------------------


def test_reward_function_file_with_an_api_key_is_scored(keyed_url):
    out = rollout(REWARD_FUNC, [
        {"question": "What is 6*7?", "answer": "42", "response": "\\boxed{42}"},
        {"question": "Pick one: (A) cat (B) dog", "answer": json.dumps({"task": "mcq", "ground_truth": "A"}),
         "response": "The answer is (B)."},
        {"question": "What is 2+2? End with 'Any other questions?'", "answer": json.dumps(IFEVAL_ENDS_WITH),
         "response": "4. Any other questions?"},
    ], env={"REWARD_SERVICE_URL": keyed_url, "REWARD_SERVICE_API_KEY": KEY})
    assert rewards(out) == [1.0, 0.0, 1.0]
    assert logs(out, "prompt_found") == [1.0] * 3
    assert logs(out, "status_ok") == [1.0] * 3
    assert out["server_stack_installed"] == []  # the file loaded where fastapi and math-verify are not


def test_reward_function_file_takes_a_prompts_samples_called_concurrently(keyed_url):
    # OpenRLHF runs the n samples of a prompt concurrently, each reward_func call in its own thread.
    out = run_driver("openrlhf", "drive_rollout.py", {
        "remote_url": REWARD_FUNC, "flags": ["--rollout.n_samples_per_prompt", "8"],
        "samples": [{"question": "What is 6*7?", "answer": "42", "response": "\\boxed{42}"},
                    {"question": "What is 6*8?", "answer": "48", "response": "\\boxed{42}"}]},
        env={"REWARD_SERVICE_URL": keyed_url, "REWARD_SERVICE_API_KEY": KEY})
    assert [s["n"] for s in out["samples"]] == [8, 8]
    assert [[one(r) for r in s["all_rewards"]] for s in out["samples"]] == [[1.0] * 8, [0.0] * 8]


def test_reward_function_file_task_of_plain_labels_comes_from_the_environment(open_url):
    out = rollout(REWARD_FUNC, [{"question": "Pick one: (A) x (B) y", "answer": "B", "response": "The answer is (B)."}],
                  env={"REWARD_SERVICE_URL": open_url, "REWARD_SERVICE_TASK": "mcq"})
    assert rewards(out) == [1.0]


def test_reward_function_file_with_a_wrong_key_says_so_in_the_worker_log(keyed_url):
    out = rollout(REWARD_FUNC, [{"question": "What is 1+1?", "answer": "2", "response": "\\boxed{2}"}],
                  env={"REWARD_SERVICE_URL": keyed_url, "REWARD_SERVICE_API_KEY": "wrong"})
    assert rewards(out) == [None]  # OpenRLHF swallows what reward_func raises
    assert any(line.startswith("reward_service.openrlhf:") and "REWARD_SERVICE_API_KEY" in line
               for line in out["log"]), out["log"]


# -- the example script and the docs, on OpenRLHF 0.11's flags ------------------------------------


def example_command(tmp_path: Path, **env: str) -> list[str]:
    """The train_ppo_ray flags the example script submits (a `ray` on PATH records them)."""
    shim = tmp_path / "bin"
    shim.mkdir()
    record = tmp_path / "argv.json"
    (shim / "ray").write_text(f"#!/usr/bin/env python3\nimport json, sys\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    (shim / "ray").chmod(0o755)
    child = {k: v for k, v in os.environ.items() if not k.startswith("REWARD_")}
    child.update(PATH=f"{shim}:{os.environ['PATH']}", **env)
    subprocess.run(["bash", str(EXAMPLE)], env=child, check=True, capture_output=True, timeout=60)
    argv = json.loads(record.read_text())
    at = argv.index("openrlhf.cli.train_ppo_ray")
    assert argv[at - 1] == "-m" and argv[:2] == ["job", "submit"], argv
    return argv[at + 1:]


def parse(argv: list[str]) -> dict:
    return run_driver("openrlhf", "drive_parser.py", {"argv": argv})


def test_example_script_flags_are_openrlhfs_and_say_what_the_service_needs(tmp_path):
    argv = example_command(tmp_path)
    out = parse(argv)
    assert out["ok"], out.get("error")
    # Every flag as written (argparse would also take an unambiguous prefix).
    assert not [f for f in argv if f.startswith("--") and f not in out["options"]]
    args = out["args"]
    assert args["reward.remote_url"] == ["http://rewards.internal:8000/openrlhf?task=math"]
    assert args["data.label_key"] == "answer"
    assert args["data.apply_chat_template"] is True
    assert args["algo.advantage.estimator"] == "reinforce_baseline"


def test_example_script_with_the_reward_function_file_parses(tmp_path):
    out = parse(example_command(tmp_path, REWARD_URL=REWARD_FUNC))
    assert out["ok"], out.get("error")
    assert out["args"]["reward.remote_url"] == [REWARD_FUNC]


# The pre-0.11 flags the docs name as refused (the next test shows the parser refuses them).
OLD_FLAGS = {"--pretrain", "--remote_rm_url", "--label_key"}
OTHER_TOOLS = {"--address", "--runtime-env-json", "--no-deps"}  # ray job submit's, pip's


def test_the_parser_check_refuses_flags_openrlhf_no_longer_has():
    # What the example used before 0.11 (and the docs name as refused): the test above would fail the same way.
    out = parse(["--actor.model_name_or_path", "m", *(f for flag in sorted(OLD_FLAGS) for f in (flag, "x"))])
    assert not out["ok"]
    assert all(flag in out["error"] for flag in OLD_FLAGS), out["error"]
    assert "unrecognized arguments" in out["error"]


def test_docs_name_only_flags_openrlhfs_parser_has():
    out = parse(["--actor.model_name_or_path", "m", "--reward.remote_url", "http://h/openrlhf"])
    text = (REPO / "docs" / "integrations.md").read_text()
    section = text[text.index("## OpenRLHF"):text.index("\n## ", text.index("## OpenRLHF") + 1)]
    readme = (REPO / "README.md").read_text()
    line = next(li for li in readme.splitlines() if li.startswith("- **OpenRLHF**"))
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z_.-]*[a-z](?![\w.*-])", section + line))
    assert "--reward.remote_url" in flags
    assert flags - OLD_FLAGS - OTHER_TOOLS <= set(out["options"]), flags - OLD_FLAGS - OTHER_TOOLS - set(out["options"])


def test_the_service_answers_a_keyless_openrlhf_call_with_what_to_do(keyed_url):
    # What the operator sees with curl; OpenRLHF itself shows only "401, message='Unauthorized'".
    detail = httpx.post(f"{keyed_url}/openrlhf", json={"query": ["x"]}).json()["detail"]
    assert "openrlhf_reward_func.py" in detail
