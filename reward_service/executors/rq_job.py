"""What an RQ worker does with one chunk, and the Redis keys it shares with the API.

The RQ worker process never scores an item itself: it hands the chunk to its
long-lived scoring child (``supervised.ScoringProcess``, the same kill-on-
overrun child the embedded pool uses), so a verifier stuck in C code costs
one child, not the worker. While the chunk runs, the job

- pushes outcomes to the batch's result list (pickled ``(index, Outcome)``
  pairs, flushed every heartbeat and at the end; the list expires with the
  batch), so the API gathers them with BLPOP instead of polling each job;
- refreshes the chunk's heartbeat key, whose absence tells the API that the
  worker died under the chunk (RQ's own abandoned-job detection takes over
  a minute: its started-job TTL is the monitoring interval + 60 s);
- checks that the batch is still wanted (its live key), so work for a
  request that expired or went away stops.

This module is imported by RQ workers by name; keep it light.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import pickle
import time
from dataclasses import dataclass

from reward_service import metrics
from reward_service.executors.base import Job, Outcome
from reward_service.executors.supervised import ScoringProcess, WorkerStartFailed, run_items

log = logging.getLogger(__name__)

EXIT_CANNOT_SCORE = 75  # EX_TEMPFAIL: the supervisor restarts the worker process with backoff

QUEUE_PREFIX = "rs:"


def queue_name(family: str) -> str:
    return family if family.startswith(QUEUE_PREFIX) else QUEUE_PREFIX + family


def results_key(batch_id: str) -> str:
    return f"rs:batch:{batch_id}:results"


def live_key(batch_id: str) -> str:
    return f"rs:batch:{batch_id}:live"


def heartbeat_key(chunk_id: str) -> str:
    return f"rs:chunk:{chunk_id}:hb"


def workers_key(queue: str) -> str:
    """Sorted set of worker names serving ``queue``, scored by last-seen Unix time."""
    return f"rs:workers:{queue}"


@dataclass(frozen=True)
class Chunk:
    batch_id: str
    chunk_id: str
    queue: str
    attempt: int
    items: list[tuple[int, Job]]
    deadline: float  # on Redis's clock (TIME), seconds since the epoch; the API stops waiting then
    lost_after_s: float  # heartbeat TTL: no beat for this long and the API re-queues the chunk
    keys_ttl_s: int


_proc: ScoringProcess | None = None


def start_scoring(memory_mb: int) -> None:
    """Start this worker's scoring child (before the first job, so no job pays for it)."""
    global _proc
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["reward_service.executors.worker_process", "reward_service.executors.supervised"])
    _proc = ScoringProcess(ctx, memory_mb)
    _proc.start()


def stop_scoring() -> None:
    if _proc is not None:
        _proc.kill()


def _replace(reason: str) -> None:
    assert _proc is not None
    _proc.kill()
    metrics.WORKER_RESTARTS.labels(reason).inc()
    _proc.start()


def _record(job: Job, o: Outcome) -> None:
    metrics.ITEMS.labels(job.task, o.status).inc()
    metrics.ITEM_LATENCY.labels(job.task).observe(o.elapsed_ms / 1000)
    # Sandbox outcomes are counted by the API (metrics.record_sandbox_run), which sees every item.


def score_chunk(chunk: Chunk) -> int:
    """The RQ job: score ``chunk`` and push its outcomes; returns how many were scored."""
    from rq import get_current_job

    if _proc is None:
        raise RuntimeError("scoring child not started (run RQ workers with `reward-service worker`)")
    r = get_current_job().connection
    res_key, hb_key = results_key(chunk.batch_id), heartbeat_key(chunk.chunk_id)
    hb_ttl_ms = max(1, int(chunk.lost_after_s * 1000))
    with r.pipeline() as p:
        p.exists(live_key(chunk.batch_id))
        p.set(hb_key, chunk.attempt, px=hb_ttl_ms)
        p.time()
        wanted, _, (secs, usecs) = p.execute()
    # Time left by Redis's clock, as the API set the deadline: this host's own clock may be off.
    left_s = chunk.deadline - (secs + usecs / 1e6)
    if not wanted or left_s <= 0:
        r.delete(hb_key)
        return 0
    metrics.WORKER_CHUNKS.labels(chunk.queue).inc()

    jobs = dict(chunk.items)
    buffer: list[tuple[int, Outcome]] = []
    emitted: set[int] = set()
    cancelled = False

    def emit(i: int, o: Outcome) -> None:
        if i not in emitted:
            emitted.add(i)
            buffer.append((i, o))
            _record(jobs[i], o)

    def flush(beat: bool) -> None:
        nonlocal cancelled
        with r.pipeline() as p:
            if buffer:
                p.rpush(res_key, pickle.dumps(buffer, protocol=pickle.HIGHEST_PROTOCOL))
                p.expire(res_key, chunk.keys_ttl_s)
            if beat:
                p.set(hb_key, chunk.attempt, px=hb_ttl_ms)
                p.exists(live_key(chunk.batch_id))
            else:  # the last flush: the chunk is over
                p.delete(hb_key)
            out = p.execute()
        buffer.clear()
        if beat:
            cancelled = not out[-1]

    deadline = time.monotonic() + left_s
    cannot_start: WorkerStartFailed | None = None
    try:
        run_items(_proc, chunk.items, deadline=deadline, emit=emit, cancelled=lambda: cancelled,
                  replace=_replace, tick=lambda: flush(True), tick_s=max(0.1, chunk.lost_after_s / 4))
    except WorkerStartFailed as e:
        # No scoring child can start on this host: answering the rest `error` would make this worker a
        # fast sink for every queued chunk. Hand the chunk back instead (the final flush drops its
        # heartbeat, so the API re-queues the missing items to another worker) and leave; the
        # supervisor restarts this process with backoff, and stops announcing it meanwhile.
        cannot_start = e
    except Exception as e:  # RQ's job timeout, or a bug: the items must still come back
        for i, job in chunk.items:
            emit(i, Outcome(0.0, "error", {"error": f"worker failed while scoring this chunk: {type(e).__name__}: {e}"[:500]}))
        _replace("crash")
        raise
    finally:
        flush(False)
    if cannot_start is not None:
        log.error("scoring child cannot be started (%s); handing chunk %s back and exiting", cannot_start,
                  chunk.chunk_id)
        os._exit(EXIT_CANNOT_SCORE)
    return len(emitted)
