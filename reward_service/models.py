"""The wire format, defined once; OpenAPI docs are generated from these models."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Status = Literal["ok", "timeout", "error", "invalid"]
Advantage = Literal["grpo", "dr_grpo", "rloo", "none"]

# Group and prompt ids become dictionary keys (and Redis keys); a bound keeps them keys, not payloads.
ID_MAX = 512


class Length(BaseModel):
    """The completion's length as the trainer knows it (the service never tokenizes)."""

    model_config = ConfigDict(extra="forbid")

    tokens: int | None = Field(None, ge=0, description="Tokens in the completion. Needed by `shaping.overlong`.")
    max_tokens: int | None = Field(None, ge=1, description="The generation limit this sample had; "
                                   "`shaping.overlong` uses it when the request gives no `max_tokens`.")
    truncated: bool | None = Field(None, description="Generation stopped at the limit, not at an end token. "
                                   "Read by `shaping.truncated`; absent counts as not truncated.")


class Item(BaseModel):
    """One completion to score."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="Echoed back in the result; any string.")
    task: str = Field(..., description="Task type, e.g. `math`, `mcq`, `code`; see `GET /tasks`.")
    prompt: str | None = Field(None, description="The prompt, for tasks that need it (e.g. ifeval's repeat-prompt).")
    completion: str = Field(..., description="The model's full output, thinking included.")
    ground_truth: Any = Field(None, description="Task-specific reference; see `GET /tasks`.")
    options: dict[str, Any] | None = Field(None, description="Task-specific options; see `GET /tasks`.")
    group: str | None = Field(None, max_length=ID_MAX, description="The samples of one prompt in this step share it; "
                              "advantages and `groups` statistics are computed within it.")
    prompt_id: str | None = Field(None, max_length=ID_MAX, description="Stable id of the prompt across steps "
                                  "(e.g. a dataset index); its pass rate is tracked (`GET /prompts/{prompt_id}`).")
    length: Length | None = Field(None, description="Length facts for reward shaping.")


class OverlongShaping(BaseModel):
    """DAPO's soft overlong punishment, added to the reward.

    With L = `length.tokens`, M = `max_tokens`, B = `buffer`, P = `penalty`:
    0 when L <= M - B; -P * (L - (M - B)) / B when M - B < L <= M; -P when L > M.
    """

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(None, ge=1, description="The length limit M; default: the item's `length.max_tokens`.")
    buffer: int = Field(0, ge=0, description="The last B tokens before M over which the penalty ramps up.")
    penalty: float = Field(1.0, ge=0, description="The full penalty P, reached at M.")

    @model_validator(mode="after")
    def _buffer_fits(self) -> OverlongShaping:
        if self.max_tokens is not None and self.buffer > self.max_tokens:
            raise ValueError(f"buffer ({self.buffer}) is larger than max_tokens ({self.max_tokens})")
        return self


class TruncatedShaping(BaseModel):
    """Truncated completions (`length.truncated`) get `reward` instead of their verified reward."""

    model_config = ConfigDict(extra="forbid")

    reward: float = Field(0.0, description="Reward of a truncated completion.")


class FormatShaping(BaseModel):
    """A malformed reasoning block costs `penalty` (subtracted from the reward).

    Malformed: more than one `<think>` or `</think>`, a `<think>` never closed, a `</think>` before
    the `<think>`, or (with `require_think`) no `</think>` at all. A completion with no tags is fine
    unless `require_think`; a lone `</think>` is fine (chat templates often open the block in the prompt).
    """

    model_config = ConfigDict(extra="forbid")

    require_think: bool = Field(False, description="A completion without `</think>` counts as malformed.")
    penalty: float = Field(1.0, ge=0, description="Subtracted from the reward of a malformed completion.")


class Shaping(BaseModel):
    """Reward shaping, each piece off unless given. Applied to `ok` results only, in this order:
    `reward = (truncated.reward if truncated else raw_reward) + overlong + format`.
    `detail.shaping` says what was applied and by how much."""

    model_config = ConfigDict(extra="forbid")

    overlong: OverlongShaping | None = None
    truncated: TruncatedShaping | None = None
    format: FormatShaping | None = None


class ScoringOptions(BaseModel):
    """Request options of `POST /score` and `POST /jobs` beyond the items."""

    model_config = ConfigDict(extra="forbid")

    advantage: Advantage | None = Field(
        None, description="Advantage estimator, computed within each `group` on the shaped reward: "
        "`grpo` (r - mean) / (std + 1e-6) with the population std; `dr_grpo` r - mean; "
        "`rloo` r - mean of the group's other samples; `none`. A group of one gets 0. "
        "Default: `grpo` when any item has a `group`, else `none`.")
    shaping: Shaping | None = Field(None, description="Reward shaping; see `Shaping`.")
    cache: bool = Field(True, description="Answer items identical to ones scored before (same task, completion, "
                        "ground truth, options, prompt and verifier version) from the result cache. "
                        "`false`: score everything afresh and store nothing.")

    def resolved_advantage(self, items: list[Item]) -> Advantage:
        if self.advantage is not None:
            return self.advantage
        return "grpo" if any(it.group is not None for it in items) else "none"


class ScoreRequest(ScoringOptions):
    model_config = ConfigDict(extra="forbid")

    items: list[Item]
    timeout_s: float | None = Field(
        None, gt=0, description="Deadline for the whole batch; items unfinished by then get status `timeout`."
    )

    def options(self) -> ScoringOptions:
        return ScoringOptions(advantage=self.advantage, shaping=self.shaping, cache=self.cache)


class Result(BaseModel):
    id: str | None
    task: str
    reward: float = Field(..., description="The scalar reward after shaping; 0.0 for any status but `ok`.")
    status: Status
    detail: dict[str, Any] = Field(default_factory=dict, description="Why this reward: extracted answer, tests passed, errors; `shaping` when shaping applied.")
    elapsed_ms: float = Field(..., description="Time spent scoring this item in this request (0 when `cached`).")
    # Defaults so a client can read answers of a server that predates these fields.
    raw_reward: float | None = Field(None, description="The verifier's reward before shaping (0.0 for any verifier status but `ok`).")
    advantage: float | None = Field(None, description="The item's advantage within its `group`; null without a group "
                                    "or with `advantage: none`.")
    cached: bool = Field(False, description="Answered from the result cache.")


class GroupStats(BaseModel):
    count: int = Field(..., description="Samples in the group (duplicates count each time).")
    mean: float = Field(..., description="Mean shaped reward.")
    std: float = Field(..., description="Population standard deviation of the shaped reward.")
    min: float
    max: float
    solved: float = Field(..., description="Fraction of samples with raw reward 1.0.")
    zero_variance: bool = Field(..., description="Every sample has the same shaped reward: no learning signal "
                                "(what DAPO's dynamic sampling drops).")


class Summary(BaseModel):
    count: int
    mean_reward: float
    by_status: dict[str, int]
    elapsed_ms: float
    unique_items: int = Field(..., description="Items actually scored after merging identical ones.")


class ScoreResponse(BaseModel):
    results: list[Result]
    summary: Summary
    groups: dict[str, GroupStats] = Field(default_factory=dict, description="Statistics of each `group` in the request.")


class TaskInfo(BaseModel):
    name: str
    description: str
    ground_truth: list[str]
    options: dict[str, Any] = Field(..., description="JSON schema of the task's options.")
    timeout_s: float
    version: str = Field("1", description="The verifier's version; part of the result cache's key.")
    extra: dict[str, Any] = Field(default_factory=dict)


class TasksResponse(BaseModel):
    tasks: list[TaskInfo]
    request_options: dict[str, Any] = Field(
        default_factory=dict, description="JSON schema of the request options every task shares (`advantage`, "
        "`shaping`, `cache`) and of the item fields they read (`group`, `prompt_id`, `length`).")


class PromptStats(BaseModel):
    prompt_id: str
    samples: int = Field(..., description="Samples scored with status `ok` by the verifier.")
    mean_reward: float = Field(..., description="Mean raw (unshaped) reward of those samples.")
    solved: float = Field(..., description="Fraction of those samples with raw reward 1.0.")
    not_ok: int = Field(..., description="Samples whose scoring failed (timeout, error, invalid); not in the means.")
    first_seen: float = Field(..., description="Unix time of the first sample.")
    last_seen: float = Field(..., description="Unix time of the latest sample.")


class PromptStatsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_ids: list[str] = Field(..., description="Prompt ids to look up.")


class PromptStatsResponse(BaseModel):
    prompts: dict[str, PromptStats] = Field(..., description="Statistics of each known prompt id asked for.")
    missing: list[str] = Field(..., description="Ids asked for with no statistics (never seen, or expired).")


class ErrorResponse(BaseModel):
    detail: Any
