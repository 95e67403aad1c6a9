"""Async scoring for very large batches: POST /jobs, then poll GET /jobs/{id}.

The batch is scored in the background by the same Scorer as /score, in
sub-batches (two at a time, so the workers never idle between them) whose
completion is the progress reported. Status and results live in a store
with a TTL: in memory in embedded mode, in Redis in distributed mode, so any
API replica can answer GET /jobs/{id}. A job runs in the replica that took
it: if that replica stops, the job stays `running` until its record expires.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from reward_service import metrics
from reward_service.admission import Reservation, admission
from reward_service.config import Settings
from reward_service.executors.base import BackendUnavailable
from reward_service.models import ErrorResponse, Item, ScoreRequest, ScoreResponse, ScoringOptions

log = logging.getLogger(__name__)

router = APIRouter()

SUB_BATCHES = 20  # progress steps for a big job
MIN_SUB_BATCH = 256
PARALLEL_SUB_BATCHES = 2


class JobAccepted(BaseModel):
    job_id: str
    status_url: str


class JobStatus(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed"]
    done: int = Field(..., description="Items scored so far.")
    total: int
    error: str | None = Field(None, description="Why the job failed (status `failed`).")
    result: ScoreResponse | None = Field(None, description="When done: the same body POST /score answers.")


# stores ------------------------------------------------------------------
class MemoryStore:
    """Embedded mode: this process is the only replica."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._jobs: dict[str, dict[str, Any]] = {}

    def _purge(self) -> None:
        now = time.monotonic()
        for k in [k for k, v in self._jobs.items() if v["expires"] is not None and v["expires"] < now]:
            del self._jobs[k]

    async def create(self, job_id: str, total: int) -> None:
        self._purge()
        self._jobs[job_id] = {"status": "queued", "done": 0, "total": total, "error": None, "result": None,
                              "expires": None}

    async def update(self, job_id: str, **fields: Any) -> None:
        rec = self._jobs.get(job_id)
        if rec is not None:
            rec.update(fields)
            if fields.get("status") in ("done", "failed"):
                rec["expires"] = time.monotonic() + self.ttl_s

    async def get(self, job_id: str) -> dict[str, Any] | None:
        self._purge()
        return self._jobs.get(job_id)

    async def close(self) -> None:
        pass


class RedisStore:
    """Distributed mode: one hash per job, ``rs:job:<id>``, expiring ``ttl_s`` after its last change."""

    def __init__(self, url: str, ttl_s: float, running_ttl_s: float, timeout_s: float) -> None:
        import redis.asyncio as aioredis

        self.ttl_s, self.running_ttl_s = int(ttl_s), int(running_ttl_s)
        self._r = aioredis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)

    @staticmethod
    def _key(job_id: str) -> str:
        return f"rs:job:{job_id}"

    async def _write(self, job_id: str, fields: dict[str, Any], ttl: int) -> None:
        import redis

        try:
            async with self._r.pipeline(transaction=True) as p:
                p.hset(self._key(job_id), mapping={k: json.dumps(v) if k != "result" else v for k, v in fields.items()})
                p.expire(self._key(job_id), ttl)
                await p.execute()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            raise BackendUnavailable(f"the job store (Redis) is unreachable: {e}") from None

    async def create(self, job_id: str, total: int) -> None:
        await self._write(job_id, {"status": "queued", "done": 0, "total": total}, self.running_ttl_s)

    async def update(self, job_id: str, **fields: Any) -> None:
        final = fields.get("status") in ("done", "failed")
        await self._write(job_id, fields, self.ttl_s if final else self.running_ttl_s)

    async def get(self, job_id: str) -> dict[str, Any] | None:
        import redis

        try:
            raw = await self._r.hgetall(self._key(job_id))
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            raise BackendUnavailable(f"the job store (Redis) is unreachable: {e}") from None
        if not raw:
            return None
        rec = {k.decode(): v for k, v in raw.items()}
        out = {k: json.loads(v) for k, v in rec.items() if k != "result"}
        out["result"] = rec["result"].decode() if "result" in rec else None
        return out

    async def close(self) -> None:
        await self._r.aclose()


def _store(request: Request):
    state = request.app.state
    store = getattr(state, "job_store", None)
    if store is None:
        s: Settings = state.settings
        if s.redis_url:
            store = RedisStore(s.redis_url, s.job_result_ttl_s,
                               s.job_result_ttl_s + (s.batch_timeout_s or s.distributed_timeout_s), s.redis_timeout_s)
        else:
            store = MemoryStore(s.job_result_ttl_s)
        state.job_store = store
        state.job_tasks = set()
    return store


# routes ------------------------------------------------------------------
@router.post("/jobs", status_code=202, response_model=JobAccepted,
             responses={401: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 429: {"model": ErrorResponse},
                        503: {"model": ErrorResponse}})
async def submit_job(req: ScoreRequest, request: Request) -> JobAccepted:
    """Accept a (very large) batch for scoring in the background; poll `status_url` for progress and results."""
    settings: Settings = request.app.state.settings
    if len(req.items) > settings.job_max_items:
        raise HTTPException(413, f"{len(req.items)} items; at most {settings.job_max_items} per job "
                                 "(REWARD_SERVICE_JOB_MAX_ITEMS)")
    store = _store(request)
    held = await admission(request).acquire(len(req.items))  # given back sub-batch by sub-batch as they finish
    job_id = uuid.uuid4().hex
    try:
        await store.create(job_id, len(req.items))
    except BaseException:
        await held.release()
        raise
    task = asyncio.create_task(_run(request.app.state.scorer, store, job_id, req.items, req.timeout_s,
                                    req.options(), held))
    request.app.state.job_tasks.add(task)
    task.add_done_callback(request.app.state.job_tasks.discard)
    return JobAccepted(job_id=job_id, status_url=str(request.url_for("get_job", job_id=job_id)))


@router.get("/jobs/{job_id}", response_model=JobStatus, name="get_job",
            responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
async def get_job(job_id: str, request: Request) -> Response:
    """Progress of a job; when `done`, its results (the same body POST /score answers)."""
    rec = await _store(request).get(job_id)
    if rec is None:
        raise HTTPException(404, f"no job {job_id!r} (unknown, or its results expired: REWARD_SERVICE_JOB_RESULT_TTL_S)")
    head = {"job_id": job_id, "status": rec["status"], "done": rec["done"], "total": rec["total"],
            "error": rec.get("error")}
    # The result is stored as the JSON /score would send: splice it in rather than re-validate it.
    body = json.dumps(head)[:-1] + ', "result": ' + (rec.get("result") or "null") + "}"
    return Response(body, media_type="application/json")


# the background run ---------------------------------------------------------
async def _run(scorer, store, job_id: str, items: list[Item], timeout_s: float | None,
               options: ScoringOptions, held: Reservation | None = None) -> None:
    from reward_service.scoring import Scored

    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout_s if timeout_s else None
    size = max(MIN_SUB_BATCH, math.ceil(len(items) / SUB_BATCHES))
    parts = [items[i:i + size] for i in range(0, len(items), size)]
    answers: list[Scored | None] = [None] * len(parts)
    gate = asyncio.Semaphore(PARALLEL_SUB_BATCHES)
    done = 0

    async def part(k: int) -> None:
        nonlocal done
        async with gate:
            if done == 0:
                await _quietly(store.update(job_id, status="running"))
            left = None if deadline is None else max(0.001, deadline - time.monotonic())
            answers[k] = await scorer.score_items(parts[k], left, options)
            if held is not None:
                await held.release(len(parts[k]))
            done += len(parts[k])
            await _quietly(store.update(job_id, done=done))

    try:
        await asyncio.gather(*(part(k) for k in range(len(parts))))
        scored = Scored()
        for a in answers:
            if a is not None:
                scored.extend(a)
        # groups and advantages over the whole job: a group may straddle sub-batches
        result = await scorer.finish(items, scored, options, time.perf_counter() - t0)
        await store.update(job_id, status="done", done=len(items), result=result.model_dump_json())
        metrics.ASYNC_JOBS.labels("done").inc()
    except asyncio.CancelledError:  # shutting down
        await _quietly(store.update(job_id, status="failed", error="the API replica running this job stopped"))
        raise
    except Exception as e:
        log.exception("job %s failed", job_id)
        metrics.ASYNC_JOBS.labels("failed").inc()
        await _quietly(store.update(job_id, status="failed", error=str(e)[:1000]))
    finally:
        if held is not None:
            await asyncio.shield(held.release())


async def _quietly(aw) -> None:
    try:
        await aw
    except BackendUnavailable as e:  # progress is best effort; the final write is what matters
        log.warning("job store: %s", e)
