"""The HTTP API. Validation happens here, at the edge; scoring is delegated.

Request -> (size and auth checks) -> pydantic validation -> Scorer -> executor.
"""
from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import verifiers
from reward_service.admission import admission, make_admission
from reward_service.auth import carries_key, unauthorized
from reward_service.coalescer import Coalescer
from reward_service.config import Settings, get_settings
from reward_service.executors.base import BackendUnavailable, Executor
from reward_service.models import (ErrorResponse, Item, PromptStats, PromptStatsRequest, PromptStatsResponse,
                                   ScoreRequest, ScoreResponse, ScoringOptions, TaskInfo, TasksResponse)
from reward_service.prompt_stats import make_prompt_stats
from reward_service.result_cache import make_cache
from reward_service.scoring import Scorer

log = logging.getLogger("reward_service")

OPEN_PATHS = {"/healthz", "/metrics"}


def make_executor(settings: Settings) -> Executor:
    if settings.redis_url:
        from reward_service.executors.rq import RQExecutor

        return RQExecutor(settings)
    from reward_service.executors.embedded import EmbeddedExecutor

    return EmbeddedExecutor(settings)


def check_sandbox(settings: Settings) -> None:
    """Say at start-up, not at the first code item, when code can't be run safely."""
    from sandbox import SandboxUnavailable, get_sandbox

    os.environ["REWARD_SERVICE_SANDBOX_BACKEND"] = settings.sandbox_backend  # for worker processes
    try:
        get_sandbox(settings.sandbox_backend).check()
        report = sandbox_report(settings)
        log.info("code sandbox %s: %s; languages: %s", report["backend"], report.get("isolation", {}),
                 report["languages"])
    except SandboxUnavailable as e:
        msg = (f"code sandbox backend {settings.sandbox_backend!r} cannot work here: {e}. "
               "Fix it, choose another with REWARD_SERVICE_SANDBOX_BACKEND, or set "
               "REWARD_SERVICE_SANDBOX_REQUIRED=false to serve the other tasks without code.")
        if settings.sandbox_required:
            raise SystemExit(msg) from None
        log.error(msg)


class _BodyLimit:
    """413 for bodies over the limit, counted as they stream (Content-Length can lie or be absent)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._reject(send)
        seen = 0

        async def counting_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return msg

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await self._reject(send)

    async def _reject(self, send):
        body = b'{"detail":"request body larger than %d bytes (REWARD_SERVICE_MAX_BODY_MB)"}' % self.max_bytes
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class _KeyCheck:
    """401 unless the request carries the API key (``reward_service/auth.py``), on every route but OPEN_PATHS.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware
    runs each request in a task group with a streaming response, which cost about a
    third of the API process's time per one-sample request (trainers that send one
    sample per request send thousands of them a step).
    """

    def __init__(self, app, key: str) -> None:
        self.app, self.key = app, key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        if carries_key(given, self.key):
            return await self.app(scope, receive, send)
        await unauthorized(scope.get("path", ""))(scope, receive, send)


def create_app(settings: Settings | None = None, executor: Executor | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        verifiers.load_all()
        if not settings.redis_url:  # distributed: code runs on the workers, which check at their start
            check_sandbox(settings)
        ex = executor or make_executor(settings)
        await ex.start()
        app.state.executor = ex
        coalesced = Coalescer(ex, settings.coalesce_window_s(), settings.coalesce_max_items)
        app.state.scorer = Scorer(coalesced, settings, make_cache(settings), make_prompt_stats(settings))
        app.state.admission = await make_admission(settings).start()
        try:
            yield
        finally:
            await app.state.admission.stop()
            await app.state.scorer.close()
            await coalesced.stop()  # and the executor under it

    app = FastAPI(
        title="Verifiable-reward service",
        version="0.1.0",
        description="Scalar rewards for RL on language models, checked by programs: math, multiple choice, "
                    "sandboxed code, logic puzzles, instruction following.\n\n"
                    "**GRPO-aware scoring.** Items may carry a `group` (the samples of one prompt in this step), "
                    "a `prompt_id` (stable across steps) and a `length`. A request may ask for `advantage` "
                    "(`grpo`: (r - mean) / (std + 1e-6), population std; `dr_grpo`: r - mean; `rloo`: r - mean "
                    "of the other samples; `none`; default `grpo` when any item has a group), `shaping` "
                    "(`overlong`, `truncated`, `format`) and `cache` (default true). Results then carry "
                    "`advantage`, `raw_reward` (before shaping) and `cached`; the response carries `groups` "
                    "(count, mean, std, min, max, solved, zero_variance). Per-prompt pass rates: "
                    "`GET /prompts/{prompt_id}`, `POST /prompts/stats`, `GET /prompts` (JSONL).",
        lifespan=lifespan,
    )
    app.state.settings = settings

    key = settings.api_key.get_secret_value() if settings.api_key else None
    if key:
        app.add_middleware(_KeyCheck, key=key)
    app.add_middleware(_BodyLimit, max_bytes=int(settings.max_body_mb * (1 << 20)))

    @app.post("/score", response_model=ScoreResponse,
              responses={401: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
                         422: {"description": "Malformed body; `detail` names the offending field."},
                         429: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
    async def score(req: ScoreRequest, request: Request) -> ScoreResponse:
        """Score a batch: one result per item, in order."""
        if len(req.items) > settings.max_items:
            raise HTTPException(413, f"{len(req.items)} items; at most {settings.max_items} per request "
                                     "(REWARD_SERVICE_MAX_ITEMS)")
        async with admission(request).hold(len(req.items)):
            return await request.app.state.scorer.score(req.items, req.timeout_s, req.options())

    @app.get("/healthz")
    async def healthz() -> dict:
        """The process is alive (answers even while batches are scored)."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorResponse}})
    async def readyz(request: Request):
        """Workers are ready to score."""
        ex = getattr(request.app.state, "executor", None)
        ready, why = ex.readiness() if ex else (False, "starting")
        body = {"ready": ready, "detail": why}
        if not settings.redis_url:  # embedded: code runs here, so say how and in which languages
            body["sandbox"] = sandbox_report(settings)
        return JSONResponse(body, 200 if ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics_route():
        """Prometheus metrics."""
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/tasks", response_model=TasksResponse)
    async def tasks() -> TasksResponse:
        """Every task type, what ground truth it takes and its options."""
        return TasksResponse(tasks=[task_info(s, settings) for s in verifiers.load_all().values()],
                             request_options=request_options_schema())

    @app.get("/prompts", response_class=StreamingResponse,
             responses={200: {"content": {"application/x-ndjson": {}},
                              "description": "One `PromptStats` JSON object per line, least recently seen first."},
                        401: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
    async def export_prompts(request: Request) -> StreamingResponse:
        """Every prompt's statistics, as JSONL (what `reward-service prompts export` writes)."""
        rows = await request.app.state.scorer.prompt_stats.export()
        return StreamingResponse((r.model_dump_json() + "\n" for r in rows), media_type="application/x-ndjson")

    @app.post("/prompts/stats", response_model=PromptStatsResponse,
              responses={401: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
    async def prompts_stats(req: PromptStatsRequest, request: Request) -> PromptStatsResponse:
        """Pass rates of the prompts asked for: samples, mean raw reward, solved fraction, first and last seen."""
        if len(req.prompt_ids) > settings.max_items:
            raise HTTPException(413, f"{len(req.prompt_ids)} prompt ids; at most {settings.max_items} per request "
                                     "(REWARD_SERVICE_MAX_ITEMS)")
        found = await request.app.state.scorer.prompt_stats.get_many(req.prompt_ids)
        return PromptStatsResponse(prompts=found, missing=[p for p in dict.fromkeys(req.prompt_ids) if p not in found])

    @app.get("/prompts/{prompt_id:path}", response_model=PromptStats,
             responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
    async def prompt(prompt_id: str, request: Request) -> PromptStats:
        """One prompt's pass rate across every request that carried its `prompt_id`."""
        found = await request.app.state.scorer.prompt_stats.get_many([prompt_id])
        if prompt_id not in found:
            raise HTTPException(404, f"no statistics for prompt {prompt_id!r} (never scored with this prompt_id, "
                                     "or expired: REWARD_SERVICE_PROMPT_STATS_TTL_S)")
        return found[prompt_id]

    from reward_service.integrations.openrlhf import router as openrlhf_router
    app.include_router(openrlhf_router)
    from reward_service.integrations.nemo_gym import router as nemo_gym_router
    app.include_router(nemo_gym_router)

    from reward_service.jobs import router as jobs_router
    app.include_router(jobs_router)

    @app.exception_handler(BackendUnavailable)
    async def backend_unavailable(request: Request, exc: BackendUnavailable):
        return JSONResponse({"detail": str(exc)}, 503, headers={"Retry-After": "5"})

    return app


def sandbox_report(settings: Settings) -> dict:
    """The code sandbox as this process runs it: backend, what confines runs, and which languages'
    toolchains are missing here (their items get `error`, never a silent 0)."""
    from sandbox import languages

    out: dict = {"backend": settings.sandbox_backend,
                 "languages": {name: ("missing " + ", ".join(m)) if (m := lang.missing()) else "ok"
                               for name, lang in languages.LANGUAGES.items()}}
    try:
        from sandbox import get_sandbox

        box = get_sandbox(settings.sandbox_backend)
        if hasattr(box, "isolation"):
            out["isolation"] = box.isolation()
    except Exception as e:  # noqa: BLE001 - readiness must answer even when the sandbox can't
        out["error"] = f"{type(e).__name__}: {e}"[:300]
    return out


def task_info(spec: verifiers.TaskSpec, settings: Settings) -> TaskInfo:
    extra = {k: (v() if callable(v) else v) for k, v in spec.extra.items()}
    return TaskInfo(name=spec.name, description=spec.description, ground_truth=spec.ground_truth,
                    options=spec.options_model.model_json_schema(),
                    timeout_s=settings.timeout_for(spec.name, spec.timeout_s), version=spec.version, extra=extra)


def request_options_schema() -> dict:
    """The shared request options and the item fields they read, for `GET /tasks`."""
    schema = ScoringOptions.model_json_schema()
    item = Item.model_json_schema()
    schema["item_fields"] = {k: item["properties"][k] for k in ("group", "prompt_id", "length")}
    schema["$defs"] = {**schema.get("$defs", {}), **item.get("$defs", {})}
    return schema
