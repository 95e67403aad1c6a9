"""The HTTP API. Validation happens here, at the edge; scoring is delegated.

Request -> (size and auth checks) -> pydantic validation -> Scorer -> executor.
"""
from __future__ import annotations

import logging
import os
import secrets
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import verifiers
from reward_service.admission import admission, make_admission
from reward_service.config import Settings, get_settings
from reward_service.executors.base import BackendUnavailable, Executor
from reward_service.models import ErrorResponse, ScoreRequest, ScoreResponse, TaskInfo, TasksResponse
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
        app.state.scorer = Scorer(ex, settings)
        app.state.admission = await make_admission(settings).start()
        try:
            yield
        finally:
            await app.state.admission.stop()
            await ex.stop()

    app = FastAPI(
        title="Verifiable-reward service",
        version="0.1.0",
        description="Scalar rewards for RL on language models, checked by programs: math, multiple choice, "
                    "sandboxed code, logic puzzles, instruction following.",
        lifespan=lifespan,
    )
    app.state.settings = settings

    @app.middleware("http")
    async def auth(request: Request, call_next):
        key = settings.api_key.get_secret_value() if settings.api_key else None
        if key and request.url.path not in OPEN_PATHS:
            given = request.headers.get("authorization", "")
            if not (given.startswith("Bearer ") and secrets.compare_digest(given[7:].encode(), key.encode())):
                return JSONResponse({"detail": "missing or wrong API key (Authorization: Bearer <key>)"}, 401,
                                    headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

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
            return await request.app.state.scorer.score(req.items, req.timeout_s)

    @app.get("/healthz")
    async def healthz() -> dict:
        """The process is alive (answers even while batches are scored)."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorResponse}})
    async def readyz(request: Request):
        """Workers are ready to score."""
        ex = getattr(request.app.state, "executor", None)
        ready, why = ex.readiness() if ex else (False, "starting")
        return JSONResponse({"ready": ready, "detail": why}, 200 if ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics_route():
        """Prometheus metrics."""
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/tasks", response_model=TasksResponse)
    async def tasks() -> TasksResponse:
        """Every task type, what ground truth it takes and its options."""
        return TasksResponse(tasks=[task_info(s, settings) for s in verifiers.load_all().values()])

    from reward_service.integrations.openrlhf import router as openrlhf_router
    app.include_router(openrlhf_router)

    from reward_service.jobs import router as jobs_router
    app.include_router(jobs_router)

    @app.exception_handler(BackendUnavailable)
    async def backend_unavailable(request: Request, exc: BackendUnavailable):
        return JSONResponse({"detail": str(exc)}, 503, headers={"Retry-After": "5"})

    return app


def task_info(spec: verifiers.TaskSpec, settings: Settings) -> TaskInfo:
    extra = {k: (v() if callable(v) else v) for k, v in spec.extra.items()}
    return TaskInfo(name=spec.name, description=spec.description, ground_truth=spec.ground_truth,
                    options=spec.options_model.model_json_schema(),
                    timeout_s=settings.timeout_for(spec.name, spec.timeout_s), extra=extra)
