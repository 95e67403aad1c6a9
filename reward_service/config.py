"""All configuration, in one settings object read from the environment.

Every field is ``REWARD_SERVICE_<NAME>`` (e.g. ``REWARD_SERVICE_WORKERS=4``);
``REDIS_URL`` is also accepted unprefixed, as deployments commonly set it.
CLI flags override the environment. The README's configuration table is
generated from this class (``reward-service config``).
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REWARD_SERVICE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, description="Port the API listens on.")
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1,
                         description="Scoring worker processes (embedded mode). Default: one per core.")
    api_key: SecretStr | None = Field(None, description="When set, every route but /healthz and /metrics needs `Authorization: Bearer <key>`.")
    max_items: int = Field(10_000, ge=1, description="Most items one request may carry (413 beyond).")
    max_body_mb: float = Field(64.0, gt=0, description="Largest request body in MiB (413 beyond).")
    task_timeouts: dict[str, float] = Field(default_factory=dict,
                                            description='Per-item time limit by task in seconds, as JSON, e.g. `{"math": 5}`; tasks not named keep their default (see /tasks).')
    batch_timeout_s: float | None = Field(None, gt=0, description="Default deadline of a whole batch when the request gives none. Unset: the embedded pool derives one from the items' own limits (2 x (sum of item limits / workers + largest item limit) + 30 s), distributed mode uses `REWARD_SERVICE_DISTRIBUTED_TIMEOUT_S`.")
    chunk_size: int = Field(0, ge=0, description="Items sent to a worker at a time; 0 picks one from the batch size.")
    worker_memory_mb: int = Field(4096, ge=256, description="Address-space limit of each scoring worker; a verifier that exceeds it gets `error`.")
    sandbox_backend: str = Field("process", description="Code sandbox: `process` (bubblewrap), `docker`, or `unsafe` (no isolation; development only).")
    sandbox_required: bool = Field(True, description="Refuse to start when the sandbox backend can't work. Set false to serve the other tasks anyway (code items then get `error`).")
    redis_url: str | None = Field(None, validation_alias=AliasChoices("REWARD_SERVICE_REDIS_URL", "REDIS_URL"),
                                  description="Redis URL (also read from `REDIS_URL`). When set, batches are scored by RQ workers instead of the embedded pool.")
    distributed_timeout_s: float = Field(600.0, gt=0, description="Distributed mode: deadline of a batch when neither the request nor `REWARD_SERVICE_BATCH_TIMEOUT_S` gives one, so no request waits forever on a missing worker.")
    chunk_retries: int = Field(2, ge=0, description="Distributed mode: times a chunk is re-queued after its worker died under it; past that its items get `error`.")
    lost_chunk_after_s: float = Field(4.0, gt=0, description="Distributed mode: a running chunk whose worker sent no heartbeat for this long counts as lost (its worker died).")
    redis_timeout_s: float = Field(2.0, gt=0, description="Distributed mode: how long to wait for Redis before answering 503.")
    job_result_ttl_s: float = Field(3600.0, gt=0, description="How long `GET /jobs/{id}` keeps a finished job's results.")
    job_max_items: int = Field(1_000_000, ge=1, description="Most items one `POST /jobs` may carry (413 beyond).")
    log_level: str = Field("info", description="Log level.")

    # issue 12: result cache and per-prompt statistics
    cache_enabled: bool = Field(True, description="Answer items identical to earlier ones (task, completion, ground truth, options, prompt, verifier version) from the result cache: in-process in embedded mode, in Redis in distributed mode. Requests can opt out with `\"cache\": false`.")
    cache_max_items: int = Field(100_000, ge=1, description="Most results the cache keeps; the least recently used (embedded) or oldest (Redis) go first.")
    cache_ttl_s: float = Field(86_400.0, gt=0, description="How long a cached result is served after it was scored.")
    prompt_stats_max_prompts: int = Field(500_000, ge=1, description="Most prompts whose pass rates are kept; the least recently seen go first.")
    prompt_stats_ttl_s: float = Field(14 * 86_400.0, gt=0, description="A prompt's statistics are dropped this long after its last sample.")
    prompt_stats_file: str | None = Field(None, description="Embedded mode: JSONL file the per-prompt statistics are loaded from at start and saved to (at most every `REWARD_SERVICE_PROMPT_STATS_FLUSH_S` and at shutdown); unset keeps them in memory only.")
    prompt_stats_flush_s: float = Field(30.0, gt=0, description="Embedded mode: least time between two writes of `REWARD_SERVICE_PROMPT_STATS_FILE`.")

    # issue 11: admission control, self-healing pool
    max_pending_items: int = Field(100_000, ge=1, description="Most items accepted and not yet finished, over `/score`, `/openrlhf` and `/jobs` together (in distributed mode across every API replica, counted in Redis). Past it a request gets 429 with `Retry-After`; one request larger than it gets 413.")

    # issue 13: small concurrent requests scored as one batch
    coalesce_window_ms: float | None = Field(None, ge=0, description="Requests of fewer than `REWARD_SERVICE_COALESCE_MAX_ITEMS` items that arrive within this many milliseconds of each other (and ask for the same `timeout_s`) are scored as one batch, identical items once: trainers that send one sample per request (OpenRLHF) cost a batch per few milliseconds instead of one per sample. Nothing is held while no other request is in flight or an embedded worker is idle. Unset: 5 embedded, 20 distributed (where a batch costs an RQ job and Redis round trips). 0 turns it off.")
    coalesce_max_items: int = Field(256, ge=1, description="Most items one coalesced batch takes; a request this large or larger is scored on its own at once.")
    # NeMo Gym resources-server routes
    nemo_gym_default_task: str = Field("math", description="`POST /verify` (NeMo Gym): the task of a row that names none and whose shape implies none (NeMo Gym calls `host:port/verify`, so a query parameter can't carry it).")
    nemo_gym_mask_statuses: list[Literal["error", "invalid", "timeout"]] = Field(["error", "invalid", "timeout"], description="`POST /verify` (NeMo Gym): the scoring statuses answered with `mask_sample: true` (left out of training) rather than reward 0, as JSON. A completion can cause a `timeout` (slow on purpose, an endless loop): leave it out, `[\"error\", \"invalid\"]`, so such a sample keeps its 0 in the loss.")

    def coalesce_window_s(self) -> float:
        if self.coalesce_window_ms is not None:
            return self.coalesce_window_ms / 1000
        return 0.020 if self.redis_url else 0.005

    def timeout_for(self, task: str, default: float) -> float:
        return float(self.task_timeouts.get(task, default))


@lru_cache
def get_settings() -> Settings:
    return Settings()
