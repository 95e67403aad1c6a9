"""From a validated request to a response: merge duplicates, run, reassemble.

GRPO groups often repeat completions, so identical items (same task,
completion, ground truth, options and prompt) are scored once and the
outcome is copied to each. Metrics are recorded here, once per item.
"""
from __future__ import annotations

import json
import time

import verifiers
from reward_service import metrics
from reward_service.config import Settings
from reward_service.executors.base import Executor, Job, Outcome
from reward_service.models import Item, Result, ScoreResponse, Summary


def _key(item: Item) -> str:
    return json.dumps([item.task, item.completion, item.ground_truth, item.options, item.prompt],
                      sort_keys=True, default=str)


class Scorer:
    def __init__(self, executor: Executor, settings: Settings) -> None:
        self.executor = executor
        self.settings = settings

    def _job(self, item: Item) -> Job:
        spec = verifiers.get(item.task)
        default = spec.timeout_s if spec else 1.0
        return Job(item.task, item.completion, item.ground_truth, item.options, item.prompt,
                   self.settings.timeout_for(item.task, default))

    async def score(self, items: list[Item], timeout_s: float | None = None) -> ScoreResponse:
        t0 = time.perf_counter()
        timeout_s = timeout_s or self.settings.batch_timeout_s
        unique: dict[str, int] = {}
        slots: list[int] = []
        jobs: list[Job] = []
        for item in items:
            k = _key(item)
            if k not in unique:
                unique[k] = len(jobs)
                jobs.append(self._job(item))
            slots.append(unique[k])

        metrics.BATCH_SIZE.observe(len(items))
        metrics.IN_FLIGHT.inc(len(items))
        try:
            outcomes = await self.executor.run(jobs, timeout_s)
        finally:
            metrics.IN_FLIGHT.dec(len(items))

        results = [_result(item, outcomes[s]) for item, s in zip(items, slots)]
        for o, job in zip(outcomes, jobs):
            metrics.ITEM_LATENCY.labels(_label(job.task)).observe(o.elapsed_ms / 1000)
            metrics.record_sandbox_run(o.detail)
        for r in results:
            metrics.ITEMS.labels(_label(r.task), r.status).inc()
            if r.status == "ok":
                metrics.REWARD.labels(_label(r.task)).observe(r.reward)
        elapsed = time.perf_counter() - t0
        metrics.BATCH_LATENCY.observe(elapsed)
        by_status: dict[str, int] = {}
        for r in results:
            by_status[r.status] = by_status.get(r.status, 0) + 1
        return ScoreResponse(
            results=results,
            summary=Summary(
                count=len(results),
                mean_reward=sum(r.reward for r in results) / len(results) if results else 0.0,
                by_status=by_status,
                elapsed_ms=elapsed * 1000,
                unique_items=len(jobs),
            ),
        )


def _label(task: str) -> str:
    # Task names come from clients; only registered ones become label values.
    return task if verifiers.get(task) else "unknown"


def _result(item: Item, o: Outcome) -> Result:
    return Result(id=item.id, task=item.task, reward=o.reward if o.status == "ok" else 0.0, status=o.status,  # type: ignore[arg-type]
                  detail=o.detail, elapsed_ms=o.elapsed_ms)
