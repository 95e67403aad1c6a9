"""verl 0.9.1's own reward loop (RewardLoopManager, its Ray workers and reward managers) scoring
GRPO rollouts through reward_service.integrations.verl against the live service.

The driver (tests/trainers/verl/drive_reward_loop.py) runs in verl's environment
(`bash deploy/install-trainers.sh verl`); the batches are counted from the service's own
/metrics, with the service's server-side coalescing off, so what is measured is the client's.
"""
from __future__ import annotations

import re

import httpx
import pytest

from live_service import REPO, running_service
from trainer_envs import run_driver, trainer_python

PKG = "pkg://reward_service.integrations.verl"
FILE = str(REPO / "reward_service" / "integrations" / "verl.py")

# 4 GSM8K-style prompts x 4 samples (a GRPO group each): right, wrong, repeated and unanswered.
GROUPS = [
    ("Natalia sold 48 clips in April and half as many in May. How many in total?", "72",
     ["48 + 24 = \\boxed{72}", "\\boxed{72}", "\\boxed{96}", "48 + 24 = \\boxed{72}"]),
    ("Weng earns $12 an hour. How much for 50 minutes of babysitting?", "10",
     ["\\boxed{10}", "\\boxed{12}", "\\boxed{12}", "I am not sure."]),
    ("Betty needs $100 and has half. Her parents give $15, grandparents twice that. How much more?", "5",
     ["\\boxed{5}", "\\boxed{5}", "\\boxed{5}", "\\boxed{5}"]),
    ("James writes a 3-page letter to 2 friends twice a week. How many pages a year?", "624",
     ["\\boxed{624}", "\\boxed{312}", "\\boxed{52}", "\\boxed{6}"]),
]
ROWS = [
    {"data_source": "openai/gsm8k", "prompt": prompt, "response": response, "ground_truth": truth,
     "extra_info": {"split": "train", "index": g}, "uid": f"p{g}"}
    for g, (prompt, truth, responses) in enumerate(GROUPS) for response in responses
]
EXPECTED = [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
DISTINCT = len({(r["uid"], r["response"]) for r in ROWS})


@pytest.fixture(scope="module")
def service():
    trainer_python("verl")  # skip before starting anything when verl isn't installed
    with running_service(REWARD_SERVICE_COALESCE_WINDOW_MS="0") as url:
        yield url


def scored(url: str) -> tuple[int, int]:
    """(requests scored, items in them) so far, from the service's reward_batch_items histogram."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    count = re.search(r"^reward_batch_items_count (\S+)$", text, re.M)
    total = re.search(r"^reward_batch_items_sum (\S+)$", text, re.M)
    return (int(float(count.group(1))) if count else 0, int(float(total.group(1))) if total else 0)


def run(url: str, **args) -> tuple[dict, int, int]:
    before = scored(url)
    out = run_driver("verl", "drive_reward_loop.py", {"rows": ROWS, **args},
                     env={"REWARD_SERVICE_URL": url}, timeout=600)
    after = scored(url)
    return out, after[0] - before[0], after[1] - before[1]


def test_reward_loop_scores_a_grpo_step_with_few_requests(service):
    out, requests, items = run(service, path=PKG, name="compute_score", manager="naive", num_workers=2)
    assert out["rewards"] == EXPECTED
    # verl's assemble_rm_scores puts each reward on the response's last valid token, nowhere else.
    assert out["reward_at"] == EXPECTED
    for row, positions, length in zip(EXPECTED, out["nonzero_positions"], out["valid_response_lengths"]):
        assert positions == ([length - 1] if row else [])
    # 16 responses over 2 reward workers: each worker's concurrent calls coalesce into one
    # request (a little more if the machine is busy), and a group's repeated answers go once.
    assert requests <= 4, f"{requests} requests for 16 responses"
    assert items <= DISTINCT


def test_reward_loop_logs_the_dict_form_as_reward_extra_info(service):
    out, _, _ = run(service, path=PKG, name="compute_score", manager="naive", num_workers=1,
                    reward_kwargs={"return_dict": True})
    assert out["rewards"] == EXPECTED
    assert {"score", "status_ok", "elapsed_ms"} <= set(out["reward_extra_keys"])
    assert out["reward_extra_info"]["score"] == EXPECTED
    assert out["reward_extra_info"]["status_ok"] == [1.0] * len(ROWS)


def test_the_documented_example_config_is_what_verl_reads(service):
    out, requests, _ = run(service, config_file=str(REPO / "examples" / "verl" / "reward_service.yaml"), num_workers=1)
    assert out["rewards"] == EXPECTED
    assert 1 <= requests <= 2


def test_remote_manager_ships_the_file_loaded_function_to_ray_actors(service):
    # The remote manager refuses async functions and cloudpickles the one it gets into Ray
    # actors; loaded by file path the module is pickled by value (the old lru_cache broke it).
    out, requests, _ = run(service, path=FILE, name="compute_score_sync", manager="remote", num_workers=1)
    assert out["rewards"] == EXPECTED
    assert requests == len(ROWS)  # the blocking form: one request per response


def test_file_path_form_coalesces_like_the_package_form(service):
    out, requests, _ = run(service, path=FILE, name="compute_score", manager="naive", num_workers=1)
    assert out["rewards"] == EXPECTED
    assert requests <= 2


def test_legacy_top_level_keys_are_ignored_by_verl_0_9(service):
    # What issue 13 reported: verl 0.9 accepts reward_model.reward_manager and a top-level
    # custom_reward_function and reads neither; its built-in gsm8k scorer answers instead.
    # The docs must not tell anyone to use them.
    _, requests, _ = run(service, path=PKG, name="compute_score", manager="naive", num_workers=1, legacy=True)
    assert requests == 0
