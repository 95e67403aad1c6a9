"""The default executor: a local pool of worker processes, no Redis.

Each worker process is driven by one thread here. A thread hands its worker
a small chunk of items and watches the clock for the item being scored; an
item past its limit gets ``timeout`` and its worker is killed and replaced
(a verifier stuck in C code can't be interrupted any other way). Chunks
from concurrent requests are taken round-robin, so a big batch can't starve
a small one. The kill-on-overrun driver lives in ``supervised`` (RQ workers use
it too).

A worker that cannot be restarted (the host refuses it memory or processes)
doesn't take its thread down: the thread keeps trying with backoff, takes no
work meanwhile, and /readyz names the reason. Once every worker has failed to
start for ``POOL_DOWN_AFTER_S``, items are answered ``error`` at once instead
of queueing for a pool that isn't there. And no batch waits forever: one that
brings no deadline gets ``default_batch_timeout_s``.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import math
import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from reward_service import metrics
from reward_service.config import Settings
from reward_service.executors.base import Executor, Job, Outcome, OutcomeCallback, timed_out
from reward_service.executors.supervised import ScoringProcess, WorkerStartFailed, run_items

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = 0.5  # first retry of a worker that failed to start; doubles per failure ...
RESTART_BACKOFF_MAX_S = 30.0  # ... up to this
POOL_DOWN_AFTER_S = 10.0
CHUNK_TRIES = 3  # a chunk whose worker fails to restart under it goes back to the queue this often


def default_batch_timeout_s(jobs: list[Job], workers: int) -> float:
    """Deadline of a batch that brings none (no ``timeout_s``, no ``REWARD_SERVICE_BATCH_TIMEOUT_S``).

    A healthy pool of ``workers`` scores the batch in at most (sum of the item limits / workers +
    the largest item limit): every item ends within its limit. Twice that plus 30 s leaves room for
    concurrent batches sharing the pool, and still ends a wait on a pool that stopped scoring.
    """
    if not jobs:
        return 30.0
    limits = [j.timeout_s for j in jobs]
    return 2 * (sum(limits) / max(1, workers) + max(limits)) + 30.0


class _Batch:
    def __init__(self, jobs: list[Job], deadline: float | None,
                 on_outcome: Callable[[int, Outcome], None] | None = None) -> None:
        self.jobs = jobs
        self.on_outcome = on_outcome
        self.deadline = deadline
        self.outcomes: list[Outcome | None] = [None] * len(jobs)
        self.left = len(jobs)
        self.done = False
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self._lock = threading.Lock()
        if not jobs:
            self._finish()

    def set(self, i: int, outcome: Outcome) -> None:
        with self._lock:
            if self.outcomes[i] is not None:
                return
            self.outcomes[i] = outcome
            self.left -= 1
            if self.left == 0:
                self._finish()
        if self.on_outcome is not None:
            self.on_outcome(i, outcome)

    def expire(self) -> None:
        """The batch deadline passed: whatever is unscored now is a timeout."""
        with self._lock:
            for i, o in enumerate(self.outcomes):
                if o is None:
                    self.outcomes[i] = timed_out(self.jobs[i], "batch deadline reached before this item was scored")
            self.left = 0
            self._finish()

    def _finish(self) -> None:
        self.done = True
        if not self.future.done():
            self.future.set_result(self.outcomes)


@dataclass
class _Chunk:
    batch: _Batch
    indices: list[int]
    tries: int = 0


@dataclass
class _Slot:
    """One worker process, its thread, and how its restarts are going."""

    index: int
    worker: ScoringProcess
    failures: int = 0
    failing_since: float | None = None  # monotonic; set while its worker cannot be started
    last_error: str = ""
    next_try: float = 0.0


class _RoundRobin:
    """Chunks queued per batch, handed out one batch at a time in turn."""

    def __init__(self) -> None:
        self._batches: collections.deque[collections.deque[_Chunk]] = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        self._waiting = 0  # worker threads blocked in get() for want of work

    def idle(self) -> bool:
        """A worker is waiting and nothing is queued: a batch put now starts at once."""
        return self._waiting > 0 and not self._batches

    def put(self, chunks: list[_Chunk]) -> None:
        with self._cv:
            self._batches.append(collections.deque(chunks))
            self._cv.notify_all()

    def get(self) -> _Chunk | None:
        with self._cv:
            while True:
                if self._closed:
                    return None
                while self._batches:
                    q = self._batches.popleft()
                    chunk = q.popleft()
                    if q:
                        self._batches.append(q)
                    if not chunk.batch.done:
                        return chunk
                self._waiting += 1
                try:
                    self._cv.wait()
                finally:
                    self._waiting -= 1

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``; wakes early when work arrives or the pool closes."""
        with self._cv:
            if not self._closed and seconds > 0:
                self._cv.wait(seconds)

    def drain(self) -> list[_Chunk]:
        with self._cv:
            chunks = [c for q in self._batches for c in q]
            self._batches.clear()
            return chunks


class EmbeddedExecutor(Executor):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["reward_service.executors.worker_process", "reward_service.executors.supervised"])
        self._sched = _RoundRobin()
        self._slots = [_Slot(i, ScoringProcess(self._ctx, settings.worker_memory_mb)) for i in range(settings.workers)]
        self._threads: list[threading.Thread] = []
        self._ready = False
        self._stopping = False

    @property
    def _workers(self) -> list[ScoringProcess]:
        return [s.worker for s in self._slots]

    # lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._start_workers)

    def _start_workers(self) -> None:
        for slot in self._slots:
            self._try_start(slot)  # one that fails is retried by its thread; /readyz says why
        for slot in self._slots:
            t = threading.Thread(target=self._serve, args=(slot,), name=f"scoring-worker-{slot.index}", daemon=True)
            t.start()
            self._threads.append(t)
        self._ready = True

    async def stop(self) -> None:
        self._stopping = True
        self._ready = False
        self._sched.close()
        for t in self._threads:
            await asyncio.to_thread(t.join, 10)
        for w in self._workers:
            w.kill()

    def has_capacity(self) -> bool:
        """Some worker would start on a new batch at once (the coalescer then holds nothing back)."""
        return self._sched.idle()

    def readiness(self) -> tuple[bool, str]:
        if not self._ready:
            return False, "worker pool not started"
        alive = sum(w.alive() for w in self._workers)
        detail = f"{alive}/{len(self._slots)} scoring workers alive"
        broken = [s for s in self._slots if s.failing_since is not None]
        if broken:
            b, now = broken[0], time.monotonic()
            detail += (f"; {len(broken)} cannot be restarted (retrying with backoff, next try in "
                       f"{max(0.0, b.next_try - now):.0f} s): worker {b.index}: {b.last_error}, "
                       f"{b.failures} failed start(s) over {now - b.failing_since:.0f} s")
        return alive > 0, detail

    def _try_start(self, slot: _Slot) -> bool:
        """Start the slot's worker unless it is backing off; False when it is not running."""
        if self._stopping or time.monotonic() < slot.next_try:
            return False
        try:
            slot.worker.start()
        except Exception as e:  # WorkerStartFailed, or the forkserver itself refusing (OSError)
            self._start_failed(slot, e)
            return False
        if slot.failing_since is not None:
            log.warning("scoring worker %d started again after %d failed start(s)", slot.index, slot.failures)
            metrics.WORKERS_UNSTARTABLE.dec()
        slot.failures, slot.failing_since, slot.last_error, slot.next_try = 0, None, "", 0.0
        return True

    def _start_failed(self, slot: _Slot, e: Exception) -> None:
        now = time.monotonic()
        metrics.WORKER_START_FAILURES.inc()
        if slot.failing_since is None:
            slot.failing_since = now
            metrics.WORKERS_UNSTARTABLE.inc()
        slot.failures += 1
        slot.last_error = f"{type(e).__name__}: {e}"[:300]
        delay = min(RESTART_BACKOFF_MAX_S, RESTART_BACKOFF_S * 2 ** (slot.failures - 1))
        slot.next_try = now + delay
        if slot.failures == 1 or slot.failures % 10 == 0:
            log.error("scoring worker %d cannot be started (%d failure(s)): %s; retrying in %.1f s",
                      slot.index, slot.failures, slot.last_error, delay)

    def _pool_down(self) -> str | None:
        """Why nothing can be scored, once every worker has failed to start for POOL_DOWN_AFTER_S."""
        now = time.monotonic()
        if not self._slots or any(s.failing_since is None or s.worker.alive() for s in self._slots):
            return None
        if min(now - s.failing_since for s in self._slots) < POOL_DOWN_AFTER_S:  # type: ignore[operator]
            return None
        s = self._slots[0]
        return (f"no scoring worker could be started for {now - s.failing_since:.0f} s "  # type: ignore[operator]
                f"({s.last_error}); not scored")

    def _fail_queued_if_down(self) -> None:
        why = self._pool_down()
        if why:
            for chunk in self._sched.drain():
                for i in chunk.indices:
                    chunk.batch.set(i, Outcome(0.0, "error", {"error": why}))

    # scoring -----------------------------------------------------------
    async def run(self, jobs: list[Job], timeout_s: float | None,
                  on_outcome: OutcomeCallback | None = None) -> list[Outcome]:
        down = self._pool_down()
        if down:
            return [Outcome(0.0, "error", {"error": down}) for _ in jobs]
        timeout_s = timeout_s or default_batch_timeout_s(jobs, len(self._slots))
        deadline = time.monotonic() + timeout_s
        notify = None
        if on_outcome is not None:  # worker threads set outcomes; the callback belongs to this loop
            loop = asyncio.get_running_loop()

            def notify(i: int, outcome: Outcome) -> None:
                try:
                    loop.call_soon_threadsafe(on_outcome, i, outcome)
                except RuntimeError:  # the loop has closed: nobody is waiting any more
                    pass
        batch = _Batch(jobs, deadline, notify)
        size = self.settings.chunk_size or max(1, min(16, math.ceil(len(jobs) / (4 * len(self._slots)))))
        self._sched.put([_Chunk(batch, list(range(i, min(i + size, len(jobs))))) for i in range(0, len(jobs), size)])
        try:
            # shield: a timeout here must not cancel the future the worker threads complete
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(batch.future)), timeout=timeout_s + 1.0)
        except asyncio.TimeoutError:
            batch.expire()
            return batch.outcomes  # type: ignore[return-value]
        except asyncio.CancelledError:  # the client went away: stop spending workers on it
            batch.expire()
            raise

    def _serve(self, slot: _Slot) -> None:
        while not self._stopping:
            if not slot.worker.alive() and not self._try_start(slot):
                self._fail_queued_if_down()
                self._sched.pause(min(1.0, slot.next_try - time.monotonic()))
                continue
            chunk = self._sched.get()
            if chunk is None:
                return
            try:
                self._run_chunk(slot.worker, chunk)
            except WorkerStartFailed as e:  # replacing the worker failed mid-chunk: another slot takes the rest
                self._start_failed(slot, e)
                self._requeue(chunk, str(e))
            except Exception:  # never let one chunk take the thread (and its worker) down
                log.exception("scoring chunk failed")
                for i in chunk.indices:
                    chunk.batch.set(i, Outcome(0.0, "error", {"error": "internal error in the worker pool"}))
                slot.worker.kill()
                metrics.WORKER_RESTARTS.labels("crash").inc()

    def _requeue(self, chunk: _Chunk, why: str) -> None:
        left = [i for i in chunk.indices if chunk.batch.outcomes[i] is None]
        if not left or chunk.batch.done:
            return
        if chunk.tries + 1 >= CHUNK_TRIES:
            for i in left:
                chunk.batch.set(i, Outcome(0.0, "error", {"error": f"scoring worker could not be restarted: {why}"}))
            return
        self._sched.put([_Chunk(chunk.batch, left, chunk.tries + 1)])

    def _replace(self, worker: ScoringProcess, reason: str) -> None:
        worker.kill()
        metrics.WORKER_RESTARTS.labels(reason).inc()
        if not self._stopping:
            worker.start()  # WorkerStartFailed goes up to _serve, which backs off

    def _run_chunk(self, worker: ScoringProcess, chunk: _Chunk) -> None:
        batch = chunk.batch
        pending = [i for i in chunk.indices if batch.outcomes[i] is None]
        if not pending or batch.done:
            return
        run_items(worker, [(i, batch.jobs[i]) for i in pending], deadline=batch.deadline, emit=batch.set,
                  cancelled=lambda: batch.done, replace=lambda reason: self._replace(worker, reason))
