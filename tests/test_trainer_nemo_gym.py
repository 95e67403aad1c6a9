"""NeMo Gym's own rollout collection, agent and client against the live service as its resources server.

The driver (tests/trainers/nemo_gym/drive_rollouts.py) runs in the nemo_gym trainer venv
(`bash deploy/install-trainers.sh nemo_gym`): NeMo Gym's config check, HeadServer, simple_agent,
RolloutCollectionHelper and ServerClient, unchanged, with the documented config and the forwarding
resources server of examples/nemo_gym/resources_servers/reward_service; only the policy model is a
stand-in answering what each row scripts. NOTE: that is nemo-gym 0.4.0, the newest pip offers on this
machine; 0.7 (which issue 13 names, and whose `mask_sample`/`failure_kind`/`failure_reason`
and `/close_session` the routes implement) is not installable here. So every answer is checked
twice: by 0.4.0's own BaseVerifyResponse in the driver, and here against 0.7's verify-response
fields as read from its source (nemo_gym/base_resources_server.py, nemo_gym/failure_kinds.py).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from live_service import running_service
from trainer_envs import run_driver, trainer_python

EXAMPLES = (Path(__file__).resolve().parent.parent / "examples" / "nemo_gym" / "resources_servers" / "reward_service"
            / "data" / "example.jsonl")
AGENT = "reward_service_simple_agent"
AGENT_REF = {"type": "responses_api_agents", "name": AGENT}  # as the example rows carry it
KEY = "nemo-gym-key"

# What each example row's rollouts answer (metadata the stand-in model reads), and the reward due.
SCRIPT = {
    "math-1": [({"answer": r"2+2 is \boxed{4}."}, 1.0), ({"answer": r"\boxed{5}"}, 0.0)],
    "math-2": [({"answer": r"\boxed{0.5}"}, 1.0),
               # The reasoning item has the right answer, the message doesn't: only the message counts.
               ({"reasoning": r"\boxed{\frac{1}{2}}", "answer": r"\boxed{2}"}, 0.0)],
    "mcq-1": [({"answer": r"The answer is \boxed{B}"}, 1.0), ({"answer": r"\boxed{C}"}, 0.0)],
    "code-1": [({"answer": "```python\na, b = map(int, input().split())\nprint(a + b)\n```"}, 1.0),
               ({"answer": "```python\nprint(3)\n```"}, 0.5)],  # passes one of the two tests
    "explicit-1": [({"answer": "Paris is the capital of France."}, 1.0), ({"answer": "Paris, of course."}, 0.0)],
}
# Rows NeMo Gym would happily run that the service can't score: (row, scripted answer, failure kind).
# No ground truth anywhere; an answer sympy grinds on past the live service's math limit (MATH_LIMIT_S;
# the other math rows take well under a second).
MATH_LIMIT_S = 3.0
UNSCORABLE = {
    "none-1": ({"responses_create_params": {"input": [{"role": "user", "content": "What is 1+1?"}]}},
               {"answer": r"\boxed{2}"}, "protocol_violation"),
    "slow-1": ({"responses_create_params": {"input": [{"role": "user", "content": "What is 3?"}]},
                "expected_answer": "3"},
               {"answer": r"\boxed{9^{9^{9^{9^{9}}}}}"}, "reward_service:verifier_timeout"),
}

# NeMo Gym 0.7's failure-kind vocabulary rule (nemo_gym/failure_kinds.py): a registered name,
# or an environment's own `<server>:<kind>`.
REGISTERED_USED = {"verifier_error", "protocol_violation"}
NAMESPACED = re.compile(r"[a-z][a-z0-9_]*:[a-z][a-z0-9_]*")


def rows() -> list[dict]:
    """The example dataset as rollout collection would send it: each row repeated, with its indices."""
    base = [json.loads(line) for line in EXAMPLES.read_text().splitlines() if line.strip()]
    base += [row | {"uuid": uuid} for uuid, (row, _, _) in UNSCORABLE.items()]
    scripts = {uuid: [(script, None)] for uuid, (_, script, _) in UNSCORABLE.items()} | SCRIPT
    out = []
    for task_index, row in enumerate(base):
        for rollout_index, (script, _) in enumerate(scripts[row["uuid"]]):
            params = row["responses_create_params"] | {"metadata": script}
            out.append(row | {"responses_create_params": params, "agent_ref": AGENT_REF,
                              "_ng_task_index": task_index, "_ng_rollout_index": rollout_index})
    return out


def assert_valid_as_nemo_gym_07(vr: dict) -> None:
    """The fields 0.7's BaseVerifyResponse adds, with the types it declares."""
    assert isinstance(vr["reward"], float)
    assert isinstance(vr["mask_sample"], bool)
    kind = vr["failure_kind"]
    assert kind is None or kind in REGISTERED_USED or NAMESPACED.fullmatch(kind)
    assert vr["failure_reason"] is None or isinstance(vr["failure_reason"], str)
    assert isinstance(vr["responses_create_params"], dict) and isinstance(vr["response"], dict)


@pytest.fixture(scope="module")
def collected():
    trainer_python("nemo_gym")
    # One API-key-protected service: the forwarding resources server must send the key.
    # The code row needs a sandbox; the live service runs the no-isolation backend (our own test programs).
    env = {"REWARD_SERVICE_TASK_TIMEOUTS": json.dumps({"math": MATH_LIMIT_S})}
    with running_service(api_key=KEY, workers=2, **env) as url:
        yield run_driver("nemo_gym", "drive_rollouts.py", {"service_url": url, "api_key": KEY, "rows": rows()})


def by_uuid(collected) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for vr in collected["results"]:
        out.setdefault(vr["uuid"], []).append(vr)
    for vrs in out.values():
        vrs.sort(key=lambda v: v["_ng_rollout_index"])
    return out


def test_runs_nemo_gym_0_4_because_0_7_is_not_installable_here(collected):
    assert collected["nemo_gym_version"] == "0.4.0"


@pytest.mark.parametrize("uuid", sorted(SCRIPT))
def test_each_rollout_gets_the_reward_its_answer_deserves(collected, uuid):
    got = by_uuid(collected)[uuid]
    assert [v["reward"] for v in got] == [reward for _, reward in SCRIPT[uuid]]
    assert not any(v["mask_sample"] for v in got)
    assert all(v["reward_service_result"]["status"] == "ok" for v in got)


def test_tasks_come_from_the_dataset_fields(collected):
    tasks = {uuid: vrs[0]["reward_service_result"]["task"] for uuid, vrs in by_uuid(collected).items()}
    assert tasks == {"math-1": "math", "math-2": "math", "mcq-1": "mcq", "code-1": "code",
                     "explicit-1": "ifeval", "none-1": "math", "slow-1": "math"}


@pytest.mark.parametrize("uuid", sorted(UNSCORABLE))
def test_an_unscorable_row_is_masked_with_a_failure_kind_and_reason(collected, uuid):
    [vr] = by_uuid(collected)[uuid]
    assert (vr["reward"], vr["mask_sample"], vr["failure_kind"]) == (0.0, True, UNSCORABLE[uuid][2])
    assert vr["failure_reason"] == vr["reward_service_result"]["detail"]["error"]


def test_every_answer_validates_as_nemo_gym_verify_responses(collected):
    assert collected["validation_errors"] == []  # 0.4.0's BaseVerifyResponse, in the driver
    for vr in collected["results"]:
        assert_valid_as_nemo_gym_07(vr)


def test_the_agent_passed_the_rows_own_fields_through_to_verify_and_back(collected):
    vr = by_uuid(collected)["mcq-1"][0]
    assert vr["options"][1] == {"B": "Polymerase Chain Reaction (PCR)"}
    assert vr["agent_ref"] == AGENT_REF
    assert vr["response"]["output"][-1]["content"][0]["text"] == r"The answer is \boxed{B}"


def test_aggregate_metrics_through_the_agent(collected):
    [entry] = collected["aggregate"]
    assert entry["agent_ref"] == {"name": AGENT}
    metrics = entry["agent_metrics"]
    rewards = [r for script in SCRIPT.values() for _, r in script]
    assert metrics["num_samples"] == len(rewards) + len(UNSCORABLE)
    assert metrics["num_masked"] == len(UNSCORABLE)
    assert metrics["mean/reward"] == pytest.approx(sum(rewards) / len(rewards))  # the masked rows left out
    assert metrics["failure_kind/protocol_violation"] == metrics["failure_kind/reward_service:verifier_timeout"] == 1
    assert len(entry["group_level_metrics"]) == len(SCRIPT) + len(UNSCORABLE)
    assert entry["key_metrics"]["mean/reward"] == metrics["mean/reward"]


def test_the_documented_config_passes_nemo_gyms_own_config_check(collected):
    assert collected["config_error"] is None


def test_nemo_gyms_client_calls_the_service_directly(collected):
    direct = collected["direct"]
    assert direct["verify"][0] == 200 and direct["verify"][1]["reward"] == 1.0
    assert_valid_as_nemo_gym_07(direct["verify"][1])
    assert direct["seed_session"] == [200, {}]
    assert direct["close_session"] == [200, {}]


def test_the_forwarding_resources_server_sends_the_api_key_nemo_gyms_agents_do_not(collected):
    # The service refuses a caller without the key; every rollout, through the forwarder, was scored.
    assert collected["direct"]["verify_without_key"][0] == 401
    assert all("reward_service_result" in vr for vr in collected["results"])


@pytest.fixture(scope="module")
def forwarded():
    trainer_python("nemo_gym")
    return run_driver("nemo_gym", "drive_forwarder.py", {"api_key": KEY}, timeout=180)


def test_the_forwarder_waits_out_429s_as_retry_after_says_and_sends_the_key(forwarded):
    assert forwarded["verify"][0] == 200 and forwarded["verify"][1]["reward"] == 1.0
    verifies = [u for u in forwarded["upstream"] if u["path"] == "/verify"]
    assert len(verifies) == 3  # two 429s, then the answer
    assert forwarded["verify_s"] >= 0.4  # Retry-After: 0.2, twice
    assert {u["auth"] for u in forwarded["upstream"]} == {f"Bearer {KEY}"}


def test_the_forwarder_gives_up_after_max_retries_instead_of_hanging(forwarded):
    assert forwarded["aggregate_status"] == 500
    assert len([u for u in forwarded["upstream"] if u["path"] == "/aggregate_metrics"]) == 4  # 1 + max_retries 3
