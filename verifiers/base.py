"""The contract every verifier follows.

A verifier is a pure function ``(completion, ground_truth, options, prompt) -> Verdict``.
It never does I/O of its own (code verification goes through ``sandbox``);
the executor that calls it owns time limits, so a verifier only judges.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict

Status = Literal["ok", "timeout", "error", "invalid"]


class InvalidInput(ValueError):
    """The ground truth or options can't be used by this task (status ``invalid``).

    Raised by verifiers; the message becomes ``detail.error`` and should say
    what was expected.
    """


def json_object(ground_truth: Any, shapes: str) -> dict[str, Any]:
    """A ground truth given as an object or as a JSON string of one (datasets store both).

    ``shapes`` describes what is accepted; it goes into the ``invalid`` detail.
    """
    if isinstance(ground_truth, (str, bytes)):
        try:
            ground_truth = json.loads(ground_truth)
        except ValueError as e:
            raise InvalidInput(f"ground truth is a string but not valid JSON ({e}); expected {shapes}") from None
    if not isinstance(ground_truth, dict):
        raise InvalidInput(f"expected {shapes}")
    return ground_truth


@dataclass
class Verdict:
    reward: float
    status: Status = "ok"
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Any status but ok pays nothing: a failed check must never be rewarded.
        if self.status != "ok":
            self.reward = 0.0
        self.reward = float(self.reward)


class TaskOptions(BaseModel):
    """Base for a task's options; unknown keys are rejected so typos surface."""

    model_config = ConfigDict(extra="forbid")


VerifyFn = Callable[[str, Any, Any, "str | None"], Verdict]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    ground_truth: list[str]
    options_model: type[TaskOptions]
    verify: VerifyFn  # (completion, ground_truth, options: options_model, prompt) -> Verdict
    timeout_s: float = 10.0
    family: str = ""  # queue / metrics grouping; defaults to name
    extra: dict[str, Any] = field(default_factory=dict)
    # Heavy modules the verifier imports lazily; long-lived workers import them once
    # before forking scoring processes, so a replaced process doesn't pay for them again.
    preload: tuple[str, ...] = ()
    # Part of the result cache's key: bump it whenever the verifier's behaviour changes, so a
    # deployed cache never answers with a reward the new code would not give.
    version: str = "1"

    @property
    def queue(self) -> str:
        return self.family or self.name
