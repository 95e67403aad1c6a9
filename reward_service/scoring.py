"""From a validated request to a response.

    merge duplicates -> result cache -> executor (misses only) -> store new verdicts
    -> shaping (per item) -> group statistics and advantages -> prompt statistics -> response

GRPO groups often repeat completions, so identical items (same task,
completion, ground truth, options and prompt) are scored once and the
verdict is copied to each; they still count once per occurrence in group and
prompt statistics. Metrics are recorded here, once per item. ``/jobs`` scores
its sub-batches with :meth:`Scorer.score_items` and finishes the whole job
with :meth:`Scorer.finish`, so a group split across sub-batches still gets
one set of statistics.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import verifiers
from reward_service import grpo, metrics
from reward_service.config import Settings
from reward_service.executors.base import Executor, Job, Outcome
from reward_service.models import Item, Result, ScoreResponse, ScoringOptions, Summary
from reward_service.prompt_stats import PromptStatsStore, Tally
from reward_service.result_cache import ResultCache, cache_key, cacheable
from reward_service.shaping import shape


def _key(item: Item) -> str:
    return json.dumps([item.task, item.completion, item.ground_truth, item.options, item.prompt],
                      sort_keys=True, default=str)


@dataclass
class Scored:
    """Per-item results before group statistics, and what the verifier itself said."""

    results: list[Result] = field(default_factory=list)
    judged: list[bool] = field(default_factory=list)  # the verifier's status was ok (before shaping)
    unique: int = 0

    def extend(self, other: Scored) -> None:
        self.results += other.results
        self.judged += other.judged
        self.unique += other.unique


class Scorer:
    def __init__(self, executor: Executor, settings: Settings, cache: ResultCache | None = None,
                 prompt_stats: PromptStatsStore | None = None) -> None:
        self.executor = executor
        self.settings = settings
        self.cache = cache
        self.prompt_stats = prompt_stats

    def _job(self, item: Item) -> Job:
        spec = verifiers.get(item.task)
        default = spec.timeout_s if spec else 1.0
        return Job(item.task, item.completion, item.ground_truth, item.options, item.prompt,
                   self.settings.timeout_for(item.task, default))

    async def score(self, items: list[Item], timeout_s: float | None = None,
                    options: ScoringOptions | None = None) -> ScoreResponse:
        t0 = time.perf_counter()
        options = options or ScoringOptions()
        scored = await self.score_items(items, timeout_s, options)
        return await self.finish(items, scored, options, time.perf_counter() - t0)

    async def score_items(self, items: list[Item], timeout_s: float | None, options: ScoringOptions) -> Scored:
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

        outcomes: list[Outcome | None] = [None] * len(jobs)
        hit = [False] * len(jobs)
        keys: list[str | None] = [None] * len(jobs)
        cache = self.cache if options.cache else None
        if cache is not None:
            for j, job in enumerate(jobs):
                spec = verifiers.get(job.task)
                if spec is not None:  # unknown tasks are invalid: nothing to cache
                    keys[j] = cache_key(job, spec.version)
            looked = [j for j, k in enumerate(keys) if k is not None]
            found = await cache.get_many([keys[j] for j in looked])  # type: ignore[misc]
            for j, o in zip(looked, found):
                label = _label(jobs[j].task)
                if o is None:
                    metrics.CACHE_MISSES.labels(label).inc()
                else:
                    metrics.CACHE_HITS.labels(label).inc()
                    outcomes[j], hit[j] = o, True

        todo = [j for j, o in enumerate(outcomes) if o is None]
        metrics.BATCH_SIZE.observe(len(items))
        if todo:
            metrics.IN_FLIGHT.inc(len(todo))
            try:
                fresh = await self.executor.run([jobs[j] for j in todo], timeout_s)
            finally:
                metrics.IN_FLIGHT.dec(len(todo))
            for j, o in zip(todo, fresh):
                outcomes[j] = o
                metrics.ITEM_LATENCY.labels(_label(jobs[j].task)).observe(o.elapsed_ms / 1000)
                metrics.record_sandbox_run(o.detail)
            if cache is not None:
                await cache.put_many([(keys[j], outcomes[j]) for j in todo  # type: ignore[misc]
                                      if keys[j] is not None and cacheable(outcomes[j])])  # type: ignore[arg-type]

        out = Scored(unique=len(jobs))
        for item, s in zip(items, slots):
            o = outcomes[s]
            assert o is not None
            out.results.append(_result(item, o, hit[s], options))
            out.judged.append(o.status == "ok")
        for r in out.results:
            metrics.ITEMS.labels(_label(r.task), r.status).inc()
            if r.status == "ok":
                metrics.REWARD.labels(_label(r.task)).observe(r.reward)
        metrics.BATCH_LATENCY.observe(time.perf_counter() - t0)
        return out

    async def finish(self, items: list[Item], scored: Scored, options: ScoringOptions,
                     elapsed_s: float) -> ScoreResponse:
        results = scored.results
        method = options.resolved_advantage(items)
        members: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            if item.group is not None:
                members.setdefault(item.group, []).append(i)
        groups = {}
        for name, idx in members.items():
            rewards = [results[i].reward for i in idx]
            groups[name] = grpo.group_stats(rewards, [results[i].raw_reward or 0.0 for i in idx])
            advs = grpo.advantages(rewards, method)
            if advs is not None:
                for i, a in zip(idx, advs):
                    results[i].advantage = a

        if self.prompt_stats is not None:
            tallies: dict[str, Tally] = {}
            for item, r, judged in zip(items, results, scored.judged):
                if item.prompt_id is not None:
                    tallies.setdefault(item.prompt_id, Tally()).add(judged, r.raw_reward or 0.0)
            await self.prompt_stats.record(tallies)

        by_status: dict[str, int] = {}
        for r in results:
            by_status[r.status] = by_status.get(r.status, 0) + 1
        return ScoreResponse(
            results=results,
            summary=Summary(
                count=len(results),
                mean_reward=sum(r.reward for r in results) / len(results) if results else 0.0,
                by_status=by_status,
                elapsed_ms=elapsed_s * 1000,
                unique_items=scored.unique,
            ),
            groups=groups,
        )

    async def close(self) -> None:
        for store in (self.cache, self.prompt_stats):
            if store is not None:
                await store.close()


def _label(task: str) -> str:
    # Task names come from clients; only registered ones become label values.
    return task if verifiers.get(task) else "unknown"


def _result(item: Item, o: Outcome, cached: bool, options: ScoringOptions) -> Result:
    raw = o.reward if o.status == "ok" else 0.0
    status, reward, detail = o.status, raw, dict(o.detail)  # a copy per item: shaping writes into it
    if options.shaping is not None and status == "ok":
        shaped = shape(raw, item.completion, item.length, options.shaping)
        detail["shaping"] = shaped.detail
        if shaped.invalid:
            status, reward, detail["error"] = "invalid", 0.0, shaped.invalid
        else:
            reward = shaped.reward
    return Result(id=item.id, task=item.task, reward=reward, status=status, detail=detail,  # type: ignore[arg-type]
                  elapsed_ms=0.0 if cached else o.elapsed_ms, raw_reward=raw, cached=cached)
