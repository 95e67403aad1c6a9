"""Distributed executor: chunks go to RQ queues (one per task family), outcomes come back by BLPOP.

A batch gets a unique id. Its items are grouped by task family (``rs:math``,
``rs:code``, ...) so slow code execution can't starve math, and cut into
chunks. A few chunks per live worker are queued at a time, more as they
finish, so a request arriving behind a huge batch waits for a few chunks, not
the whole batch (RQ queues are FIFO). Workers push outcomes to the batch's own result
list (``rq_job``); this side BLPOPs it until every item is in or the deadline
passes, so nothing polls per job and concurrent batches or API replicas never
see each other's results. Every key the batch creates expires.

About once a second the outstanding chunks are checked: a chunk whose worker
stopped heartbeating (it died) is re-queued with the items still missing, up
to ``chunk_retries`` times; past that its items come back as ``error``.
Every batch has a deadline (``distributed_timeout_s`` by default), so a
request never waits on a queue nobody serves. The deadline a chunk carries is
on Redis's clock (``TIME``), which workers read too: API and worker hosts
whose clocks disagree still agree on when a batch ends. Liveness is Redis's
too (heartbeat keys expire on the server; workers announce themselves with
Redis time).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import math
import pickle
import time
import uuid
from dataclasses import dataclass, field

import redis
import redis.asyncio as aioredis
from rq import Queue
from rq.job import Job as RQJob

import verifiers
from reward_service import metrics
from reward_service.config import Settings
from reward_service.executors.base import (BackendUnavailable, Executor, Job, Outcome, OutcomeCallback, execute,
                                           timed_out)
from reward_service.executors.rq_job import (Chunk, heartbeat_key, live_key, queue_name, results_key, score_chunk,
                                             workers_key)

log = logging.getLogger(__name__)

MAX_CHUNK = 64  # items: RQ costs ~3-4 ms per job; 64 math items (~100 ms) keep that and the tail small
# Chunks of one batch in a queue at a time, per live worker of that queue. More are enqueued as
# these finish (a worker's worth at once, when half the window is left), so a later request's
# chunks queue behind a few of a big batch's, not all of them.
WINDOW_PER_WORKER = 4
CHECK_EVERY_S = 1.0
REFRESH_EVERY_S = 1.0
WAIT_STATES = {"queued", "deferred", "scheduled", "created"}
_REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


@dataclass
class _Pending:
    chunk: Chunk
    rq_id: str
    suspect: int = 0  # consecutive checks that found it neither waiting nor heartbeating
    last_state: str = "queued"


@dataclass
class _Gather:
    jobs: list[Job]
    outcomes: list[Outcome | None]
    pending: dict[str, _Pending] = field(default_factory=dict)  # enqueued, items still missing
    backlog: dict[str, collections.deque[Chunk]] = field(default_factory=dict)  # by queue, not yet enqueued
    owner: dict[int, str] = field(default_factory=dict)  # item index -> chunk id
    ends: float = 0.0  # the batch deadline on this host's time.monotonic clock
    on_outcome: OutcomeCallback | None = None

    def missing(self, p: _Pending) -> list[int]:
        return [i for i, _ in p.chunk.items if self.outcomes[i] is None]


class RQExecutor(Executor):
    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url
        self.settings = settings
        t = settings.redis_timeout_s
        self._sync = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=t, socket_timeout=t)
        # BLPOP blocks up to CHECK_EVERY_S on the server, so reads may take that long
        self._aio = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=t,
                                            socket_timeout=t + CHECK_EVERY_S)
        self._queues: dict[str, Queue] = {}
        self._live_workers: dict[str, int] = {}
        self._state: tuple[bool, str] = (False, "not started")
        self._refresher: asyncio.Task | None = None

    # lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        families = sorted({spec.queue for spec in verifiers.load_all().values()})
        self._queues = {f: Queue(queue_name(f), connection=self._sync) for f in families}
        await self._refresh()  # Redis may be down now: we start anyway and report it in /readyz
        self._refresher = asyncio.create_task(self._refresh_forever())

    async def stop(self) -> None:
        if self._refresher:
            self._refresher.cancel()
        await self._aio.aclose()
        self._sync.close()

    def readiness(self) -> tuple[bool, str]:
        return self._state

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_EVERY_S)
            await self._refresh()

    async def _refresh(self) -> None:
        """Readiness and the queue gauges, from one pipelined round-trip."""
        names = [q.name for q in self._queues.values()]
        try:
            secs, usecs = await self._aio.time()  # the clock workers announce themselves by
            now = secs + usecs / 1e6
            async with self._aio.pipeline(transaction=False) as p:
                for q in self._queues.values():
                    p.llen(q.key)
                    p.zcount(workers_key(q.name), now - 5 * REFRESH_EVERY_S, "+inf")
                out = await p.execute()
        except _REDIS_ERRORS as e:
            metrics.REDIS_UP.set(0)
            self._state = (False, f"Redis at {self._where()} unreachable: {e}")
            return
        metrics.REDIS_UP.set(1)
        depth, live = out[0::2], out[1::2]
        self._live_workers = dict(zip(names, live))
        for n, d, w in zip(names, depth, live):
            metrics.QUEUE_DEPTH.labels(n).set(d)
            metrics.QUEUE_WORKERS.labels(n).set(w)
        idle = [n for n, w in zip(names, live) if not w]
        if idle:
            self._state = (False, f"no live worker serves queue(s) {', '.join(idle)} "
                                  f"(start `reward-service worker --queues {','.join(n[3:] for n in idle)}`)")
        else:
            self._state = (True, "workers: " + ", ".join(f"{n}={w}" for n, w in zip(names, live)))

    def _where(self) -> str:
        kw = self._sync.connection_pool.connection_kwargs
        return f"{kw.get('host', '?')}:{kw.get('port', '?')}" if "host" in kw else kw.get("path", "?")

    def _unavailable(self, e: Exception) -> BackendUnavailable:
        self._state = (False, f"Redis at {self._where()} unreachable: {e}")
        metrics.REDIS_UP.set(0)
        return BackendUnavailable(f"the queue (Redis at {self._where()}) is unreachable: {e}; "
                                  "retry when /readyz answers 200")

    # scoring -----------------------------------------------------------
    async def run(self, jobs: list[Job], timeout_s: float | None,
                  on_outcome: OutcomeCallback | None = None) -> list[Outcome]:
        timeout_s = timeout_s or self.settings.distributed_timeout_s
        g = _Gather(jobs, [None] * len(jobs), ends=time.monotonic() + timeout_s, on_outcome=on_outcome)
        by_family: dict[str, list[int]] = {}
        for i, job in enumerate(jobs):
            spec = verifiers.get(job.task)
            if spec is None:  # unknown task: answered here, nothing to queue
                g.outcomes[i] = execute(job)
            else:
                by_family.setdefault(spec.queue, []).append(i)
        if not by_family:
            return g.outcomes  # type: ignore[return-value]

        batch_id = uuid.uuid4().hex
        keys_ttl = int(timeout_s) + 120
        try:
            secs, usecs = await self._aio.time()
            deadline = secs + usecs / 1e6 + timeout_s  # Redis's clock: the one workers compare it with
            for fam, idx in by_family.items():
                g.backlog[queue_name(fam)] = collections.deque(self._chunks(batch_id, fam, idx, jobs, deadline, keys_ttl))
            await self._aio.set(live_key(batch_id), 1, ex=keys_ttl)
            await self._top_up(g)
        except _REDIS_ERRORS as e:
            raise self._unavailable(e) from None
        try:
            await self._gather(g, batch_id)
        finally:
            try:  # workers skip what is left of this batch; the result list goes now, not at its TTL
                await asyncio.shield(self._aio.delete(live_key(batch_id), results_key(batch_id)))
            except (*_REDIS_ERRORS, asyncio.CancelledError):
                pass
        return g.outcomes  # type: ignore[return-value]

    def _chunks(self, batch_id: str, family: str, indices: list[int], jobs: list[Job], deadline: float,
                keys_ttl: int, attempt: int = 0) -> list[Chunk]:
        q = queue_name(family)
        workers = max(1, self._live_workers.get(q, 1))
        size = self.settings.chunk_size or max(1, min(MAX_CHUNK, math.ceil(len(indices) / (4 * workers))))
        return [Chunk(batch_id, uuid.uuid4().hex, q, attempt, [(i, jobs[i]) for i in indices[k:k + size]],
                      deadline, self.settings.lost_chunk_after_s, keys_ttl)
                for k in range(0, len(indices), size)]

    async def _enqueue(self, g: _Gather, chunks: list[Chunk]) -> None:
        datas = [(c, Queue.prepare_data(
            score_chunk, args=(c,), job_id=c.chunk_id, description=f"reward chunk {c.batch_id}/{c.chunk_id}",
            # RQ's own backstop, well past the per-item limits the scoring child is held to
            timeout=int(sum(j.timeout_s for _, j in c.items) + 60),
            ttl=max(1, int(g.ends - time.monotonic()) + 5),  # a chunk nobody took by the deadline just goes
            result_ttl=0, failure_ttl=300)) for c in chunks]  # results travel by our list, not RQ

        def push() -> None:
            with self._sync.pipeline() as pipe:
                for q in {c.queue for c in chunks}:
                    queue = self._queues.get(q[3:]) or Queue(q, connection=self._sync)
                    queue.enqueue_many([d for c, d in datas if c.queue == q], pipeline=pipe)
                pipe.execute()

        await asyncio.to_thread(push)
        for c in chunks:
            g.pending[c.chunk_id] = _Pending(c, c.chunk_id)
            for i, _ in c.items:
                g.owner[i] = c.chunk_id

    async def _top_up(self, g: _Gather) -> None:
        """Refill each queue's window of this batch's chunks once half of it is done."""
        fresh: list[Chunk] = []
        for q, backlog in g.backlog.items():
            window = WINDOW_PER_WORKER * max(1, self._live_workers.get(q, 1)) + 2
            inflight = sum(p.chunk.queue == q for p in g.pending.values())
            if inflight > window // 2 and not (backlog and backlog[0].attempt):  # retries go at once
                continue
            while backlog and (inflight < window or backlog[0].attempt):
                fresh.append(backlog.popleft())
                inflight += 1
        if fresh:
            try:
                await self._enqueue(g, fresh)
            except BaseException:  # not queued: keep them for the next try, in order
                for c in reversed(fresh):
                    g.backlog[c.queue].appendleft(c)
                raise

    async def _gather(self, g: _Gather, batch_id: str) -> None:
        key = results_key(batch_id)
        next_check = time.monotonic() + CHECK_EVERY_S
        failing_since: float | None = None
        while any(o is None for o in g.outcomes):
            remaining = g.ends - time.monotonic()
            if remaining <= 0:
                break
            try:
                got = await self._aio.blpop([key], timeout=max(0.01, min(CHECK_EVERY_S, remaining)))
                if got:  # then drain whatever else arrived, without blocking
                    touched = set()
                    for raw in [got[1], *(await self._aio.lpop(key, 1000) or [])]:
                        for i, outcome in pickle.loads(raw):
                            if 0 <= i < len(g.outcomes) and g.outcomes[i] is None:
                                g.outcomes[i] = outcome
                                touched.add(g.owner.get(i))
                                if g.on_outcome is not None:
                                    g.on_outcome(i, outcome)
                    for cid in touched:
                        p = g.pending.get(cid)
                        if p is not None and not g.missing(p):
                            del g.pending[cid]
                    await self._top_up(g)
                if time.monotonic() >= next_check:
                    await self._check(g)
                    next_check = time.monotonic() + CHECK_EVERY_S
                failing_since = None
            except _REDIS_ERRORS as e:
                # ride out a blip; a Redis that stays away is a 503, not a hang
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > self.settings.redis_timeout_s:
                    raise self._unavailable(e) from None
                await asyncio.sleep(0.2)
        waiting = [(p.chunk, p.last_state in WAIT_STATES) for p in g.pending.values()]
        waiting += [(c, True) for backlog in g.backlog.values() for c in backlog]
        for chunk, queued in waiting:
            for i, job in chunk.items:
                if g.outcomes[i] is not None:
                    continue
                if queued:
                    why = (f"batch deadline reached while this item was still queued on {chunk.queue} "
                           f"({self._live_workers.get(chunk.queue, 0)} live worker(s) serve it)")
                else:
                    why = "batch deadline reached before this item was scored"
                g.outcomes[i] = timed_out(job, why)

    async def _check(self, g: _Gather) -> None:
        """Spot chunks whose worker died, and re-queue or fail their missing items."""
        live = [p for p in g.pending.values() if g.missing(p)]
        for cid in set(g.pending) - {p.chunk.chunk_id for p in live}:
            del g.pending[cid]
        if not live:
            return
        async with self._aio.pipeline(transaction=False) as pipe:
            for p in live:
                pipe.hget(RQJob.key_for(p.rq_id), "status")
                pipe.exists(heartbeat_key(p.chunk.chunk_id))
            out = await pipe.execute()
        lost: list[_Pending] = []
        for p, status, beating in zip(live, out[0::2], out[1::2]):
            state = status.decode() if status else "gone"
            p.last_state = state
            if state in WAIT_STATES or beating:
                p.suspect = 0
            else:
                # Started with no heartbeat (worker died), or ended/gone with items still missing.
                # Twice in a row, so a chunk between RQ's "started" and its first beat, or one whose
                # last results are in flight, isn't taken for dead.
                p.suspect += 1
                if p.suspect >= 2:
                    lost.append(p)
        retry: list[Chunk] = []
        for p in lost:
            del g.pending[p.chunk.chunk_id]
            missing = g.missing(p)
            if not missing:
                continue
            c = p.chunk
            if c.attempt < self.settings.chunk_retries:
                metrics.CHUNK_RETRIES.labels(c.queue).inc()
                log.warning("chunk %s on %s lost (%s, no heartbeat); re-queueing %d item(s), attempt %d of %d",
                            c.chunk_id, c.queue, p.last_state, len(missing), c.attempt + 2, self.settings.chunk_retries + 1)
                retry.append(Chunk(c.batch_id, uuid.uuid4().hex, c.queue, c.attempt + 1,
                                   [(i, g.jobs[i]) for i in missing], c.deadline, c.lost_after_s, c.keys_ttl_s))
            else:
                metrics.CHUNKS_LOST.labels(c.queue).inc()
                log.error("chunk %s on %s lost %d times; giving up on %d item(s)", c.chunk_id, c.queue,
                          c.attempt + 1, len(missing))
                for i in missing:
                    g.outcomes[i] = Outcome(0.0, "error", {
                        "error": f"the worker scoring this item died {c.attempt + 1} time(s) "
                                 f"(REWARD_SERVICE_CHUNK_RETRIES={self.settings.chunk_retries}); not scored",
                        "queue": c.queue})
        for c in reversed(retry):
            g.backlog[c.queue].appendleft(c)
        await self._top_up(g)
