"""What every executor takes and gives back."""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import verifiers


@dataclass(frozen=True)
class Job:
    """One unique item to score, with its own time limit."""

    task: str
    completion: str
    ground_truth: Any
    options: dict[str, Any] | None
    prompt: str | None
    timeout_s: float


@dataclass
class Outcome:
    reward: float
    status: str
    detail: dict[str, Any] = field(default_factory=dict)
    elapsed_ms: float = 0.0


OutcomeCallback = Callable[[int, Outcome], None]


def execute(job: Job) -> Outcome:
    """Score one job in the current process (what a worker does per item)."""
    t0 = time.perf_counter()
    v = verifiers.score(job.task, job.completion, job.ground_truth, job.options, job.prompt)
    return Outcome(v.reward, v.status, v.detail, (time.perf_counter() - t0) * 1000)


def timed_out(job: Job, why: str) -> Outcome:
    return Outcome(0.0, "timeout", {"error": why, "limit_s": job.timeout_s}, job.timeout_s * 1000)


class BackendUnavailable(RuntimeError):
    """The executor's backend (e.g. Redis) can't be reached; the API answers 503 with this message."""


class Executor(ABC):
    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    def readiness(self) -> tuple[bool, str]:
        """(ready, a human-readable reason) for /readyz."""

    def has_capacity(self) -> bool:
        """Whether a batch given now would start at once. False when the executor can't tell
        (remote workers): the coalescer then merges whatever arrives within its window."""
        return False

    @abstractmethod
    async def run(self, jobs: list[Job], timeout_s: float | None,
                  on_outcome: OutcomeCallback | None = None) -> list[Outcome]:
        """Score ``jobs``; one outcome each, in order. Never raises for an item's sake;
        items still unscored when ``timeout_s`` runs out come back as ``timeout``.

        ``on_outcome(index, outcome)``, when given, is called in the caller's event loop
        as items finish (not necessarily for every item: the returned list is complete),
        so a caller that merged several requests into ``jobs`` can answer each one as
        soon as its own items are done."""
