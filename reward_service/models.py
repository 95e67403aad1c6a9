"""The wire format, defined once; OpenAPI docs are generated from these models."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["ok", "timeout", "error", "invalid"]


class Item(BaseModel):
    """One completion to score."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="Echoed back in the result; any string.")
    task: str = Field(..., description="Task type, e.g. `math`, `mcq`, `code`; see `GET /tasks`.")
    prompt: str | None = Field(None, description="The prompt, for tasks that need it (e.g. ifeval's repeat-prompt).")
    completion: str = Field(..., description="The model's full output, thinking included.")
    ground_truth: Any = Field(None, description="Task-specific reference; see `GET /tasks`.")
    options: dict[str, Any] | None = Field(None, description="Task-specific options; see `GET /tasks`.")


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Item]
    timeout_s: float | None = Field(
        None, gt=0, description="Deadline for the whole batch; items unfinished by then get status `timeout`."
    )


class Result(BaseModel):
    id: str | None
    task: str
    reward: float = Field(..., description="The scalar reward; 0.0 for any status but `ok`.")
    status: Status
    detail: dict[str, Any] = Field(default_factory=dict, description="Why this reward: extracted answer, tests passed, errors.")
    elapsed_ms: float


class Summary(BaseModel):
    count: int
    mean_reward: float
    by_status: dict[str, int]
    elapsed_ms: float
    unique_items: int = Field(..., description="Items actually scored after merging identical ones.")


class ScoreResponse(BaseModel):
    results: list[Result]
    summary: Summary


class TaskInfo(BaseModel):
    name: str
    description: str
    ground_truth: list[str]
    options: dict[str, Any] = Field(..., description="JSON schema of the task's options.")
    timeout_s: float
    extra: dict[str, Any] = Field(default_factory=dict)


class TasksResponse(BaseModel):
    tasks: list[TaskInfo]


class ErrorResponse(BaseModel):
    detail: Any
