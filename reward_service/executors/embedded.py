"""The default executor: a local pool of worker processes, no Redis.

Each worker process is driven by one thread here. A thread hands its worker
a small chunk of items and watches the clock for the item being scored; an
item past its limit gets ``timeout`` and its worker is killed and replaced
(a verifier stuck in C code can't be interrupted any other way). Chunks
from concurrent requests are taken round-robin, so a big batch can't starve
a small one. The kill-on-overrun driver lives in ``supervised`` (RQ workers use
it too).
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
from dataclasses import dataclass

from reward_service import metrics
from reward_service.config import Settings
from reward_service.executors.base import Executor, Job, Outcome, timed_out
from reward_service.executors.supervised import ScoringProcess, run_items

log = logging.getLogger(__name__)


class _Batch:
    def __init__(self, jobs: list[Job], deadline: float | None) -> None:
        self.jobs = jobs
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


class _RoundRobin:
    """Chunks queued per batch, handed out one batch at a time in turn."""

    def __init__(self) -> None:
        self._batches: collections.deque[collections.deque[_Chunk]] = collections.deque()
        self._cv = threading.Condition()
        self._closed = False

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
                self._cv.wait()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()


class EmbeddedExecutor(Executor):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["reward_service.executors.worker_process", "reward_service.executors.supervised"])
        self._sched = _RoundRobin()
        self._workers = [ScoringProcess(self._ctx, settings.worker_memory_mb) for _ in range(settings.workers)]
        self._threads: list[threading.Thread] = []
        self._ready = False
        self._stopping = False

    # lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._start_workers)

    def _start_workers(self) -> None:
        for w in self._workers:
            w.start()
        for i, w in enumerate(self._workers):
            t = threading.Thread(target=self._serve, args=(w,), name=f"scoring-worker-{i}", daemon=True)
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

    def readiness(self) -> tuple[bool, str]:
        if not self._ready:
            return False, "worker pool not started"
        alive = sum(w.alive() for w in self._workers)
        return alive > 0, f"{alive}/{len(self._workers)} scoring workers alive"

    # scoring -----------------------------------------------------------
    async def run(self, jobs: list[Job], timeout_s: float | None) -> list[Outcome]:
        deadline = time.monotonic() + timeout_s if timeout_s else None
        batch = _Batch(jobs, deadline)
        size = self.settings.chunk_size or max(1, min(16, math.ceil(len(jobs) / (4 * len(self._workers)))))
        self._sched.put([_Chunk(batch, list(range(i, min(i + size, len(jobs))))) for i in range(0, len(jobs), size)])
        try:
            # shield: a timeout here must not cancel the future the worker threads complete
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(batch.future)),
                                          timeout=None if timeout_s is None else timeout_s + 1.0)
        except asyncio.TimeoutError:
            batch.expire()
            return batch.outcomes  # type: ignore[return-value]
        except asyncio.CancelledError:  # the client went away: stop spending workers on it
            batch.expire()
            raise

    def _serve(self, worker: ScoringProcess) -> None:
        while True:
            chunk = self._sched.get()
            if chunk is None:
                return
            try:
                self._run_chunk(worker, chunk)
            except Exception:  # never let one chunk take the thread (and its worker) down
                log.exception("scoring chunk failed")
                for i in chunk.indices:
                    chunk.batch.set(i, Outcome(0.0, "error", {"error": "internal error in the worker pool"}))
                self._replace(worker, "crash")

    def _replace(self, worker: ScoringProcess, reason: str) -> None:
        worker.kill()
        metrics.WORKER_RESTARTS.labels(reason).inc()
        if not self._stopping:
            worker.start()

    def _run_chunk(self, worker: ScoringProcess, chunk: _Chunk) -> None:
        batch = chunk.batch
        pending = [i for i in chunk.indices if batch.outcomes[i] is None]
        if not pending or batch.done:
            return
        run_items(worker, [(i, batch.jobs[i]) for i in pending], deadline=batch.deadline, emit=batch.set,
                  cancelled=lambda: batch.done, replace=lambda reason: self._replace(worker, reason))
