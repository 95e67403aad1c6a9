"""Small concurrent requests scored as one batch.

Trainers that send one sample per request (OpenRLHF's remote reward model,
verl's per-sample reward loop without the client-side coalescer) would make
the executor run thousands of one-item batches a step: one round trip to a
scoring child, or one RQ job and one Redis result list, per sample. The
coalescer holds a small request for at most ``window_s`` and runs every
request that arrived meanwhile as one executor batch, with identical items
(the repeated answers of a GRPO group) scored once.

Only requests of the same ``timeout_s`` share a batch, since the executor
gives a batch one deadline. A request of ``max_items`` or more goes straight
through: it is a batch already, and holding it would only add latency. Nor
is anything held when no other request is in flight (a caller sending one
request at a time) or when the executor has a worker idle right now (the
embedded pool: merging pays only while requests would queue anyway). A
request never waits longer than the window before its batch starts, and it is
answered as soon as its own items are scored (the executor reports items as
they finish): a pathological completion in one request never holds up the
others merged with it. When every request of a batch has gone away (clients
disconnected) the batch is cancelled, as the executor would cancel a lone
request's.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from reward_service import metrics
from reward_service.executors.base import Executor, Job, Outcome, OutcomeCallback


def _key(job: Job) -> str:
    return json.dumps([job.task, job.completion, job.ground_truth, job.options, job.prompt, job.timeout_s],
                      sort_keys=True, default=str)


@dataclass
class _Open:
    """A batch still taking requests."""

    timeout_s: float | None
    jobs: list[Job] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    waiters: list[tuple[list[int], asyncio.Future[list[Outcome]]]] = field(default_factory=list)
    callbacks: list[OutcomeCallback | None] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    outcomes: dict[int, Outcome] = field(default_factory=dict)

    def add(self, jobs: list[Job], on_outcome: OutcomeCallback | None) -> asyncio.Future[list[Outcome]]:
        slots = []
        for job in jobs:
            k = _key(job)
            if k not in self.index:
                self.index[k] = len(self.jobs)
                self.jobs.append(job)
            slots.append(self.index[k])
        fut: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        self.waiters.append((slots, fut))
        self.callbacks.append(on_outcome)
        return fut

    def submitted(self) -> int:
        return sum(len(slots) for slots, _ in self.waiters)


class Coalescer(Executor):
    """An executor that merges small concurrent ``run`` calls into one call of ``inner``."""

    def __init__(self, inner: Executor, window_s: float, max_items: int) -> None:
        self.inner = inner
        self.window_s = window_s
        self.max_items = max_items
        self._open: dict[float | None, _Open] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._busy = 0  # run() calls in progress, merged or not

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        for batch in list(self._open.values()):
            self._flush(batch)
        for task in list(self._running):
            task.cancel()
        await self.inner.stop()

    def readiness(self) -> tuple[bool, str]:
        return self.inner.readiness()

    async def run(self, jobs: list[Job], timeout_s: float | None,
                  on_outcome: OutcomeCallback | None = None) -> list[Outcome]:
        self._busy += 1
        try:
            if (self.window_s <= 0 or len(jobs) >= self.max_items or not jobs
                    or (timeout_s not in self._open and (self._busy == 1 or self.inner.has_capacity()))):
                # Nothing else in flight to merge with (a caller sending one request at a time),
                # or a worker idle right now: waiting for company would only leave it idle.
                return await self.inner.run(jobs, timeout_s, on_outcome)
            return await self._merged(jobs, timeout_s, on_outcome)
        finally:
            self._busy -= 1

    async def _merged(self, jobs: list[Job], timeout_s: float | None,
                      on_outcome: OutcomeCallback | None) -> list[Outcome]:
        batch = self._open.get(timeout_s)
        if batch is not None and batch.submitted() + len(jobs) > self.max_items:
            self._flush(batch)
            batch = None
        if batch is None:
            batch = self._open[timeout_s] = _Open(timeout_s)
            batch.timer = asyncio.get_running_loop().call_later(self.window_s, self._flush, batch)
        fut = batch.add(jobs, on_outcome)
        if batch.submitted() >= self.max_items:
            self._flush(batch)
        try:
            # shield: one caller going away must not cancel the others' results
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            fut.cancel()
            raise

    def _flush(self, batch: _Open) -> None:
        if self._open.get(batch.timeout_s) is batch:
            del self._open[batch.timeout_s]
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        if not batch.waiters:
            return
        metrics.COALESCED_REQUESTS.observe(len(batch.waiters))
        task = asyncio.get_running_loop().create_task(self._score(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _score(self, batch: _Open) -> None:
        users: dict[int, list[int]] = {}  # job slot -> the waiters that asked for it
        left = []  # per waiter: distinct slots not scored yet
        for w, (slots, _) in enumerate(batch.waiters):
            for s in set(slots):
                users.setdefault(s, []).append(w)
            left.append(len(set(slots)))

        def on_outcome(i: int, outcome: Outcome) -> None:
            if i in batch.outcomes:
                return
            batch.outcomes[i] = outcome
            for w in users.get(i, ()):
                left[w] -= 1
                slots, fut = batch.waiters[w]
                tell = batch.callbacks[w]
                if tell is not None and not fut.done():
                    for k, s in enumerate(slots):
                        if s == i:
                            tell(k, outcome)
                if left[w] == 0 and not fut.done():
                    fut.set_result([batch.outcomes[s] for s in slots])

        inner = asyncio.ensure_future(self.inner.run(batch.jobs, batch.timeout_s, on_outcome))
        try:
            while True:
                live = [f for _, f in batch.waiters if not f.done()]
                if not live:  # every caller was answered or went away: nothing left to wait for
                    if len(batch.outcomes) < len(batch.jobs):
                        inner.cancel()  # someone went away: stop spending workers on their items
                    else:
                        await inner
                    return
                done, _ = await asyncio.wait([inner, *live], return_when=asyncio.FIRST_COMPLETED)
                if inner in done:
                    break
            outcomes = inner.result()
        except asyncio.CancelledError:
            inner.cancel()
            for _, fut in batch.waiters:
                if not fut.done():
                    fut.cancel()
            raise
        except BaseException as e:  # BackendUnavailable (503) and the like: every caller gets it
            for _, fut in batch.waiters:
                if not fut.done():
                    fut.set_exception(e)
            return
        for i, outcome in enumerate(outcomes):
            on_outcome(i, outcome)
