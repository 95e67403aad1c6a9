"""NeMo Gym's resources-server routes (/verify, /seed_session, /close_session, /aggregate_metrics)
against the real app and worker pool: how a row and a Responses-API response become an item,
and how a failed scoring becomes a masked sample. NeMo Gym's own client against a live service
is in test_trainer_nemo_gym.py."""
import pytest
from fastapi.testclient import TestClient

from reward_service.api import create_app
from reward_service.config import Settings
from reward_service.integrations.nemo_gym import (ResponsesCreateParams, aggregate, completion_text, prompt_text,
                                                  row_to_item, verify_fields)
from reward_service.models import Result

SLOW_MATH = r"\boxed{9^{9^{9^{9^{9}}}}}"  # sympy grinds on this; only the task timeout stops it


def message(text: str, role: str = "assistant") -> dict:
    return {"id": "msg_1", "type": "message", "role": role, "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def row(answer_text: str, user_text: str = "What is 2+2?", **fields) -> dict:
    """A verify request as a NeMo Gym agent sends it: the dataset row plus the model's response."""
    return {"responses_create_params": {"input": [{"role": "user", "content": user_text}]},
            "response": {"id": "resp_1", "object": "response", "created_at": 0.0, "model": "policy",
                         "output": [message(answer_text)], "parallel_tool_calls": True, "tool_choice": "auto",
                         "tools": []},
            **fields}


@pytest.fixture(scope="module")
def client():
    settings = Settings(workers=1, sandbox_required=False, task_timeouts={"math": 2.0})
    with TestClient(create_app(settings)) as c:
        yield c


# --- what is scored -------------------------------------------------------------------


def test_completion_is_the_assistant_messages_output_text_without_reasoning_or_tool_calls():
    output = [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": r"\boxed{5}"}]},
        {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "calc", "arguments": "{}"},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "The answer "}, {"type": "output_text", "text": r"is \boxed{4}"},
                     {"type": "refusal", "refusal": r"\boxed{6}"}]},
    ]
    assert completion_text(output) == r"The answer is \boxed{4}"


def test_completion_puts_each_assistant_message_on_its_own_line():
    assert completion_text([message("first"), message("second")]) == "first\nsecond"


def test_prompt_is_the_last_user_message_text():
    params = ResponsesCreateParams.model_validate({"input": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "old question"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "new question"}]},
    ]})
    assert prompt_text(params) == "new question"
    assert prompt_text(ResponsesCreateParams(input="plain prompt")) == "plain prompt"


def test_expected_answer_is_the_math_ground_truth_by_default():
    item = row_to_item(row(r"\boxed{4}", expected_answer="4"), "math")
    assert (item.task, item.ground_truth, item.completion, item.prompt) == ("math", "4", r"\boxed{4}", "What is 2+2?")


def test_ground_truth_names_are_taken_in_order():
    item = row_to_item(row("x", ground_truth="1", expected_answer="2", answer="3"), "math")
    assert item.ground_truth == "1"
    assert row_to_item(row("x", expected_answer="2", answer="3"), "math").ground_truth == "2"
    assert row_to_item(row("x", answer="3"), "math").ground_truth == "3"


def test_reward_service_object_in_the_row_overrides_everything():
    body = row("x", task="mcq", expected_answer="B",
               reward_service={"task": "math", "ground_truth": "7", "options": {"mode": "strict"}})
    item = row_to_item(body, "mcq")
    assert (item.task, item.ground_truth, item.options) == ("math", "7", {"mode": "strict"})


def test_top_level_task_names_the_task():
    assert row_to_item(row("x", task="mcq", expected_answer="C"), "math").task == "mcq"


def test_nemo_gym_mcqa_rows_become_mcq_with_their_choices():
    options = [{"A": "Karyotyping"}, {"B": "PCR"}, {"C": "FISH"}]
    item = row_to_item(row("x", options=options, expected_answer="B"), "math")
    assert item.task == "mcq"
    assert item.ground_truth == {"answer": "B", "choices": ["Karyotyping", "PCR", "FISH"]}
    assert item.options is None  # a list of choices is not the verifier's options


def test_nemo_gym_code_gen_rows_become_code_with_their_unit_tests():
    tests = {"inputs": ["1 2\n"], "outputs": ["3\n"]}
    item = row_to_item(row("x", verifier_metadata={"unit_tests": tests}), "math")
    assert (item.task, item.ground_truth) == ("code", tests)


def test_nemo_gym_instruction_following_rows_become_ifeval_with_the_row_prompt():
    body = row("x", prompt="Write without commas.", instruction_id_list=["punctuation:no_comma"], kwargs=[{}], id=3)
    item = row_to_item(body, "math")
    assert item.task == "ifeval"
    assert item.ground_truth == {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    assert item.prompt == "Write without commas."


def test_reasoning_gym_rows_become_logic_entries():
    body = row("x", question="q?", answer="a", metadata={"source_dataset": "basic_arithmetic"})
    item = row_to_item(body, "math")
    assert item.task == "logic"
    assert item.ground_truth == {"question": "q?", "answer": "a", "metadata": {"source_dataset": "basic_arithmetic"}}


@pytest.mark.parametrize("status, kind", [("error", "verifier_error"), ("invalid", "protocol_violation"),
                                          ("timeout", "reward_service:verifier_timeout")])
def test_not_ok_results_are_masked_with_a_failure_kind_and_the_scorers_reason(status, kind):
    result = Result(id=None, task="math", reward=0.0, status=status, detail={"error": "why it failed"}, elapsed_ms=1.0)
    fields = verify_fields(result)
    assert (fields["reward"], fields["mask_sample"], fields["failure_kind"], fields["failure_reason"]) == \
        (0.0, True, kind, "why it failed")


def test_ok_results_are_not_masked():
    result = Result(id=None, task="math", reward=1.0, status="ok", detail={}, elapsed_ms=1.0)
    assert verify_fields(result) | {"reward_service_result": None} == {
        "reward": 1.0, "mask_sample": False, "failure_kind": None, "failure_reason": None,
        "reward_service_result": None}


# --- the routes ---------------------------------------------------------------------------


def test_verify_rewards_a_correct_answer_and_returns_the_request_body(client):
    body = row(r"so \boxed{4}", expected_answer="4", uuid="row-1", _ng_task_index=0)
    r = client.post("/verify", json=body)
    assert r.status_code == 200
    got = r.json()
    assert (got["reward"], got["mask_sample"], got["failure_kind"]) == (1.0, False, None)
    assert {k: got[k] for k in body} == body  # every field of the row and response, untouched
    assert got["reward_service_result"]["status"] == "ok"


def test_verify_returns_the_training_token_ids_and_logprobs_untouched(client):
    # NeMo-RL trains on the token ids and logprobs its model server put on the output items,
    # read back from the verify response: they must come back exactly.
    body = row(r"\boxed{4}", expected_answer="4")
    body["response"]["output"][0] |= {"prompt_token_ids": [1, 2, 3], "generation_token_ids": [7, 8],
                                      "generation_log_probs": [-0.125, -1.0000001]}
    got = client.post("/verify", json=body).json()
    assert got["response"] == body["response"]
    assert got["reward"] == 1.0


def test_verify_gives_zero_to_a_wrong_answer_without_masking(client):
    got = client.post("/verify", json=row(r"\boxed{5}", expected_answer="4")).json()
    assert (got["reward"], got["mask_sample"]) == (0.0, False)


def test_verify_masks_a_row_without_ground_truth_as_a_protocol_violation(client):
    got = client.post("/verify", json=row(r"\boxed{4}")).json()
    assert (got["reward"], got["mask_sample"], got["failure_kind"]) == (0.0, True, "protocol_violation")
    assert got["failure_reason"]


def test_verify_masks_an_unknown_task_naming_it(client):
    got = client.post("/verify", json=row("x", task="astrology", expected_answer="4")).json()
    assert (got["mask_sample"], got["failure_kind"]) == (True, "protocol_violation")
    assert "astrology" in got["failure_reason"]


def test_verify_masks_a_verifier_timeout(client):
    got = client.post("/verify", json=row(SLOW_MATH, expected_answer="3")).json()
    assert (got["reward"], got["mask_sample"], got["failure_kind"]) == \
        (0.0, True, "reward_service:verifier_timeout")
    assert got["reward_service_result"]["status"] == "timeout"


def test_verify_refuses_a_body_without_a_response(client):
    body = row("x", expected_answer="4")
    del body["response"]
    r = client.post("/verify", json=body)
    assert r.status_code == 422
    assert "response" in r.text


def test_seed_and_close_session_answer_empty_objects(client):
    assert client.post("/seed_session", json=row("x")).json() == {}
    assert client.post("/close_session", json={}).json() == {}
    assert client.post("/close_session", json={"session_id": "abc"}).json() == {}


def test_default_task_comes_from_the_setting():
    settings = Settings(workers=1, sandbox_required=False, nemo_gym_default_task="mcq")
    with TestClient(create_app(settings)) as c:
        got = c.post("/verify", json=row(r"\boxed{B}", expected_answer="B")).json()
    assert (got["reward"], got["reward_service_result"]["task"]) == (1.0, "mcq")


def test_verify_needs_the_api_key_when_one_is_set():
    with TestClient(create_app(Settings(workers=1, sandbox_required=False, api_key="k"))) as c:
        assert c.post("/verify", json=row(r"\boxed{4}", expected_answer="4")).status_code == 401
        r = c.post("/verify", json=row(r"\boxed{4}", expected_answer="4"), headers={"Authorization": "Bearer k"})
        assert r.json()["reward"] == 1.0


# --- aggregate metrics ----------------------------------------------------------------------


def test_aggregate_metrics_keeps_masked_samples_out_of_the_reward_means():
    vrs = [{"_ng_task_index": 0, "reward": 1.0}, {"_ng_task_index": 0, "reward": 0.0},
           {"_ng_task_index": 1, "reward": 0.0, "mask_sample": True, "failure_kind": "verifier_error"},
           {"_ng_task_index": 1, "reward": 1.0, "mask_sample": False}]
    m = aggregate(vrs)
    a = m.agent_metrics
    assert (a["num_samples"], a["num_masked"], a["mean/mask_sample"]) == (4, 1, 0.25)
    assert a["mean/reward"] == pytest.approx(2 / 3)
    assert a["failure_kind/verifier_error"] == 1
    # task 0: 1 of 2 solved; task 1: its one valid sample solved; k = 1
    assert a["pass@1/solved"] == pytest.approx((0.5 + 1.0) / 2)
    assert [g["_ng_task_index"] for g in m.group_level_metrics] == [0, 1]
    assert m.group_level_metrics[1]["num_masked"] == 1
    assert m.key_metrics["mean/reward"] == a["mean/reward"]


def test_aggregate_metrics_pass_at_k_uses_the_unbiased_estimator():
    vrs = [{"_ng_task_index": 0, "reward": r} for r in (1.0, 0.0, 0.0)]
    assert aggregate(vrs).agent_metrics["pass@3/solved"] == 1.0
    vrs += [{"_ng_task_index": 1, "reward": 0.0}] * 3
    assert aggregate(vrs).agent_metrics["pass@3/solved"] == 0.5


def test_aggregate_metrics_route_answers_nemo_gyms_shape(client):
    r = client.post("/aggregate_metrics", json={"verify_responses": [{"_ng_task_index": 0, "reward": 1.0}]})
    got = r.json()
    assert set(got) == {"group_level_metrics", "agent_metrics", "key_metrics"}
    assert got["agent_metrics"]["mean/reward"] == 1.0
    assert client.post("/aggregate_metrics", json={"verify_responses": []}).json() == \
        {"group_level_metrics": [], "agent_metrics": {}, "key_metrics": {}}


def test_statuses_left_out_of_the_mask_setting_are_a_plain_zero():
    from reward_service.integrations.nemo_gym import verify_fields
    from reward_service.models import Result

    timeout = Result(id=None, task="code", reward=0.0, status="timeout", detail={"error": "slow"}, elapsed_ms=1.0)
    fields = verify_fields(timeout, frozenset({"error", "invalid"}))
    assert (fields["reward"], fields["mask_sample"], fields["failure_kind"]) == (
        0.0, False, "reward_service:verifier_timeout")
    assert verify_fields(timeout)["mask_sample"] is True  # the default masks every failed check
