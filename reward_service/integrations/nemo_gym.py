"""NeMo Gym's resources-server protocol: ``POST /verify``, ``/seed_session``, ``/close_session``,
``/aggregate_metrics``.

The service stands in for a NeMo Gym *resources server* (what NeMo Gym's agents,
and through them NeMo-RL's NeMo Gym environment, call to grade a rollout). An
agent posts the dataset row it ran (``responses_create_params`` plus the row's
own top-level fields, e.g. ``expected_answer``) with the model's Responses-API
``response`` added; the answer is that body back plus ``reward`` and NeMo Gym
0.7's ``mask_sample``, ``failure_kind`` and ``failure_reason``.

What is scored (documented in docs/integrations.md):

* completion: the ``output_text`` parts of the assistant ``message`` items of
  ``response.output``, in order. Reasoning items, tool calls and refusals are
  not the answer and are left out.
* prompt: the row's ``prompt`` string if it has one, else the text of the last
  user message of ``responses_create_params.input``.
* task, ground truth and options: see :func:`row_to_item`.

A result whose status is not ``ok`` (the verifier failed, ran out of time, or
the row could not be scored as given) is returned with ``reward`` 0.0 and
``mask_sample: true``: its reward says nothing about the policy, so the trainer
drops it instead of learning from a zero.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from reward_service.models import Item, Result

__all__ = ["FAILURE_KINDS", "aggregate", "completion_text", "prompt_text", "router", "row_to_item", "verify_fields"]

router = APIRouter(tags=["integrations"])

# NeMo Gym 0.7's shared vocabulary (nemo_gym/failure_kinds.py) has `verifier_error`
# and `protocol_violation`; it has no verifier timeout, and asks for `<server>:<kind>`
# for a kind it lacks rather than for a registered name that says something else.
FAILURE_KINDS = {
    "error": "verifier_error",
    "timeout": "reward_service:verifier_timeout",
    "invalid": "protocol_violation",
}

# NeMo Gym's keys that are bookkeeping, not dataset content (rollout collection adds them).
TASK_INDEX_KEY = "_ng_task_index"


class ResponsesCreateParams(BaseModel):
    """The Responses-API request the agent ran; only ``input`` (and ``instructions``) are read."""

    model_config = ConfigDict(extra="allow")

    input: str | list[dict[str, Any]] = Field(..., description="The prompt: a string or Responses-API input items.")


class ResponsesResponse(BaseModel):
    """The model's Responses-API response; only ``output`` is read."""

    model_config = ConfigDict(extra="allow")

    output: list[dict[str, Any]] = Field(..., description="Output items; the assistant `message` items' "
                                         "`output_text` parts are the completion.")


class NeMoGymVerifyRequest(BaseModel):
    """A NeMo Gym verify request: the dataset row (its own fields top-level) and the model's response."""

    model_config = ConfigDict(extra="allow")

    responses_create_params: ResponsesCreateParams
    response: ResponsesResponse


class NeMoGymVerifyResponse(NeMoGymVerifyRequest):
    """The request body back, with the reward and NeMo Gym 0.7's masking fields."""

    reward: float = Field(..., description="The shaped reward; 0.0 when `mask_sample`.")
    mask_sample: bool = Field(False, description="True when scoring failed (status not `ok`): the reward is not a "
                              "measurement of the policy and the trainer should drop the sample.")
    failure_kind: str | None = Field(None, description="NeMo Gym's failure vocabulary: `verifier_error` (status "
                                     "`error`), `protocol_violation` (`invalid`: the row can't be scored as "
                                     "given), `reward_service:verifier_timeout` (`timeout`).")
    failure_reason: str | None = Field(None, description="The scorer's own explanation (its `detail.error`).")
    reward_service_result: dict[str, Any] = Field(
        default_factory=dict,
        description="What the service scored and found: `task`, `status`, `detail`, `elapsed_ms`, `cached`.")


class AggregateMetricsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    verify_responses: list[dict[str, Any]] = Field(
        ..., description="Verify responses (NeMo Gym strips `response` and `responses_create_params`); "
        "`reward`, `mask_sample`, `failure_kind` and `_ng_task_index` are read.")


class AggregateMetrics(BaseModel):
    """NeMo Gym's AggregateMetrics shape: flat keys, ready for W&B / MLflow."""

    group_level_metrics: list[dict[str, Any]] = Field(default_factory=list, description="One dict per task "
                                                      "(`_ng_task_index`).")
    agent_metrics: dict[str, Any] = Field(default_factory=dict)
    key_metrics: dict[str, Any] = Field(default_factory=dict)


class Empty(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- what to score ------------------------------------------------------------------


def _part_text(content: Any, part_types: tuple[str, ...]) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content
                       if isinstance(p, dict) and p.get("type") in part_types and isinstance(p.get("text"), str))
    return ""


def completion_text(output: list[dict[str, Any]]) -> str:
    """The model's answer: the ``output_text`` of its assistant messages, one message per line.

    A message's parts join as they are (they are pieces of one text); messages join
    with a newline so two answers never run into one token.
    """
    texts = [_part_text(item.get("content"), ("output_text",)) for item in output
             if isinstance(item, dict) and item.get("type", "message") == "message"
             and item.get("role", "assistant") == "assistant"]
    return "\n".join(t for t in texts if t)


def prompt_text(params: ResponsesCreateParams) -> str | None:
    """The last user message's text (a string ``input`` is the user message)."""
    if isinstance(params.input, str):
        return params.input
    for item in reversed(params.input):
        if isinstance(item, dict) and item.get("role") == "user" and item.get("type", "message") == "message":
            text = _part_text(item.get("content"), ("input_text", "text"))
            if text:
                return text
    return None


def _mcq_choices(options: list[Any]) -> list[str] | None:
    """NeMo Gym mcqa's ``options`` ([{"A": "text"}, {"B": "text"}, ...]) as choice texts in letter order."""
    if not options or not all(isinstance(o, dict) and len(o) == 1 for o in options):
        return None
    pairs = [next(iter(o.items())) for o in options]
    letters = [k for k, _ in pairs]
    if letters != [chr(ord("A") + i) for i in range(len(letters))] or not all(isinstance(v, str) for _, v in pairs):
        return None
    return [v for _, v in pairs]


def _infer_task(row: dict[str, Any]) -> str | None:
    """The task a NeMo Gym dataset's own row shape implies, if any."""
    vm = row.get("verifier_metadata")
    if isinstance(vm, dict) and isinstance(vm.get("unit_tests"), dict):
        return "code"
    if isinstance(row.get("instruction_id_list"), list):
        return "ifeval"
    if isinstance(row.get("options"), list) and _mcq_choices(row["options"]) is not None:
        return "mcq"
    md = row.get("metadata")
    if "question" in row and "answer" in row and isinstance(md, dict) and "source_dataset" in md:
        return "logic"
    return None


def _task_ground_truth(task: str, row: dict[str, Any]) -> Any:
    """Ground truth from a NeMo Gym dataset's own field names for ``task``."""
    if task == "code":
        vm = row.get("verifier_metadata")
        if isinstance(vm, dict) and vm.get("unit_tests") is not None:
            return vm["unit_tests"]
    if task == "ifeval" and "instruction_id_list" in row:
        return {"instruction_id_list": row["instruction_id_list"], "kwargs": row.get("kwargs") or []}
    if task == "logic" and "question" in row and "answer" in row:
        return {k: row[k] for k in ("question", "answer", "metadata") if k in row}
    for name in ("ground_truth", "expected_answer", "answer"):
        if name in row:
            gt = row[name]
            if task == "mcq" and isinstance(gt, str) and isinstance(row.get("options"), list):
                choices = _mcq_choices(row["options"])
                if choices is not None:
                    return {"answer": gt, "choices": choices}
            return gt
    return None


def row_to_item(body: dict[str, Any], default_task: str) -> Item:
    """The item to score for one verify request (the row's fields top-level, plus ``response``).

    In order of precedence:

    1. ``reward_service``: an object ``{task, ground_truth, options}`` in the row, explicit and
       unambiguous (what to add to a dataset that is made for this service);
    2. top-level ``task`` (a string), ``ground_truth``, ``options`` (an object);
    3. NeMo Gym datasets' own shapes: ``verifier_metadata.unit_tests`` (code_gen) is ``code``;
       ``instruction_id_list`` + ``kwargs`` (instruction_following) is ``ifeval``; ``options``
       as ``[{"A": ...}, ...]`` with ``expected_answer`` (mcqa) is ``mcq``; ``question`` +
       ``answer`` + ``metadata.source_dataset`` (reasoning_gym) is ``logic``;
    4. otherwise ``default_task`` (``REWARD_SERVICE_NEMO_GYM_DEFAULT_TASK``, ``math``) with the
       ground truth in ``ground_truth``, ``expected_answer`` or ``answer``.
    """
    spec = body.get("reward_service") if isinstance(body.get("reward_service"), dict) else {}
    task = spec.get("task") or (body["task"] if isinstance(body.get("task"), str) else None) \
        or _infer_task(body) or default_task
    if "ground_truth" in spec:
        ground_truth = spec["ground_truth"]
    else:
        ground_truth = _task_ground_truth(task, body)
    options = spec.get("options")
    if options is None and isinstance(body.get("options"), dict):
        options = body["options"]
    params = ResponsesCreateParams.model_validate(body["responses_create_params"])
    prompt = body["prompt"] if isinstance(body.get("prompt"), str) else prompt_text(params)
    output = body["response"].get("output") or []
    return Item(task=str(task), prompt=prompt, completion=completion_text(output), ground_truth=ground_truth,
                options=options if isinstance(options, dict) else None)


def verify_fields(result: Result, masked: frozenset[str] = frozenset(FAILURE_KINDS)) -> dict[str, Any]:
    """The fields a verify response adds for one scored result.

    A non-ok status in ``masked`` (by default every one) is ``mask_sample``; one not in
    it is an ordinary reward of 0 that still names its ``failure_kind``.
    """
    ours = {"task": result.task, "status": result.status, "detail": result.detail,
            "elapsed_ms": result.elapsed_ms, "cached": result.cached}
    if result.status == "ok":
        return {"reward": result.reward, "mask_sample": False, "failure_kind": None, "failure_reason": None,
                "reward_service_result": ours}
    reason = result.detail.get("error") if isinstance(result.detail.get("error"), str) else None
    return {"reward": 0.0, "mask_sample": result.status in masked, "failure_kind": FAILURE_KINDS[result.status],
            "failure_reason": reason or f"scoring status {result.status}", "reward_service_result": ours}


# --- routes -----------------------------------------------------------------------------


@router.post("/verify", response_model=NeMoGymVerifyResponse, summary="NeMo Gym resources server: verify a rollout",
             responses={429: {"description": "Too many items pending; retry after `Retry-After` seconds."}})
async def verify(body: NeMoGymVerifyRequest, request: Request) -> NeMoGymVerifyResponse:
    """Score the rollout's answer against the row's ground truth, exactly as `POST /score` would."""
    settings = getattr(request.app.state, "settings", None)
    default_task = getattr(settings, "nemo_gym_default_task", "math")
    raw = body.model_dump(mode="json")
    try:
        item = row_to_item(raw, default_task)
    except ValueError as e:  # e.g. an `options` the Item model refuses
        raise HTTPException(422, f"can't build an item from this row: {e}") from e
    scorer = getattr(request.app.state, "scorer", None)
    if scorer is None:
        raise HTTPException(503, "scoring backend not started")

    from reward_service.admission import admission

    async with admission(request).hold(1):
        scored = await scorer.score([item])
    masked = frozenset(getattr(settings, "nemo_gym_mask_statuses", FAILURE_KINDS))
    return NeMoGymVerifyResponse.model_validate(raw | verify_fields(scored.results[0], masked))


@router.post("/seed_session", response_model=Empty, summary="NeMo Gym resources server: start a rollout")
async def seed_session(body: Empty) -> Empty:
    """Nothing to set up: scoring is stateless."""
    return Empty()


@router.post("/close_session", response_model=Empty, summary="NeMo Gym resources server: end a rollout")
async def close_session(body: Empty) -> Empty:
    """Nothing to release (idempotent, as NeMo Gym asks)."""
    return Empty()


def _stats(prefix: str, rewards: list[float]) -> dict[str, float]:
    if not rewards:
        return {}
    n = len(rewards)
    mean = sum(rewards) / n
    ordered = sorted(rewards)
    mid = n // 2
    median = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {f"mean/{prefix}": mean, f"max/{prefix}": ordered[-1], f"min/{prefix}": ordered[0],
            f"median/{prefix}": median, f"std/{prefix}": math.sqrt(sum((r - mean) ** 2 for r in rewards) / n)}


def _pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one task with ``c`` of ``n`` samples solved (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def aggregate(verify_responses: list[dict[str, Any]]) -> AggregateMetrics:
    """Metrics over a run's verify responses; masked samples are counted but kept out of the reward means."""
    if not verify_responses:
        return AggregateMetrics()
    by_task: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for vr in verify_responses:
        by_task[vr.get(TASK_INDEX_KEY, 0)].append(vr)

    def valid_rewards(vrs: list[dict[str, Any]]) -> list[float]:
        return [float(v.get("reward") or 0.0) for v in vrs if not v.get("mask_sample")]

    def summary(vrs: list[dict[str, Any]]) -> dict[str, Any]:
        rewards = valid_rewards(vrs)
        out: dict[str, Any] = {"num_samples": len(vrs), "num_masked": len(vrs) - len(rewards),
                               "mean/mask_sample": (len(vrs) - len(rewards)) / len(vrs)}
        out |= _stats("reward", rewards)
        if rewards:
            out["mean/solved"] = sum(r >= 1.0 for r in rewards) / len(rewards)
        return out

    groups = []
    for task_index in sorted(by_task, key=lambda t: (not isinstance(t, (int, float)), str(t))):
        groups.append({TASK_INDEX_KEY: task_index} | summary(by_task[task_index]))
    agent = summary(verify_responses)
    kinds: dict[str, int] = defaultdict(int)
    for vr in verify_responses:
        if vr.get("mask_sample") and vr.get("failure_kind"):
            kinds[str(vr["failure_kind"])] += 1
    agent |= {f"failure_kind/{k}": n for k, n in sorted(kinds.items())}
    # pass@k over the tasks with a valid sample, for k = the fewest valid samples such a task has.
    per_task = [r for r in (valid_rewards(v) for v in by_task.values()) if r]
    k = min((len(r) for r in per_task), default=0)
    if k >= 1:
        scores = [_pass_at_k(len(r), sum(x >= 1.0 for x in r), k) for r in per_task]
        agent[f"pass@{k}/solved"] = sum(scores) / len(scores)
    key = {m: agent[m] for m in ("mean/reward", "mean/solved", f"pass@{k}/solved", "mean/mask_sample") if m in agent}
    return AggregateMetrics(group_level_metrics=groups, agent_metrics=agent, key_metrics=key)


@router.post("/aggregate_metrics", response_model=AggregateMetrics,
             summary="NeMo Gym resources server: metrics over a run's verify responses")
async def aggregate_metrics(body: AggregateMetricsRequest) -> AggregateMetrics:
    """Mean/max/min/median/std reward and solved fraction over unmasked samples, per task and overall;
    the masked fraction and a count per `failure_kind`; pass@k for the smallest k every task has."""
    return aggregate(body.verify_responses)
