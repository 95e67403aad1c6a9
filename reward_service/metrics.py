"""Prometheus metrics, named once here and used by the API and executors."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

ITEMS = Counter("reward_items_total", "Items scored, by task and status.", ["task", "status"])
ITEM_LATENCY = Histogram("reward_item_seconds", "Time to score one item in a worker, by task.", ["task"],
                         buckets=LATENCY_BUCKETS)
REWARD = Histogram("reward_value", "Rewards given, by task.", ["task"],
                   buckets=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 1.0))
BATCH_SIZE = Histogram("reward_batch_items", "Items per scoring request.",
                       buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384))
BATCH_LATENCY = Histogram("reward_batch_seconds", "Time to answer one scoring request.", buckets=LATENCY_BUCKETS)
IN_FLIGHT = Gauge("reward_items_in_flight", "Items accepted and not yet scored.")
WORKER_RESTARTS = Counter("reward_worker_restarts_total", "Scoring workers replaced, by reason.", ["reason"])
WORKERS = Gauge("reward_workers", "Scoring worker processes alive.", multiprocess_mode="livesum")

SANDBOX_RUNS = Counter("reward_sandbox_runs_total", "Code items' sandbox outcome, by backend and status.",
                       ["backend", "status"])  # by the API in both modes: record_sandbox_run

# Distributed mode. Worker hosts also count ITEMS, ITEM_LATENCY, WORKERS and WORKER_RESTARTS
# (aggregated over the host's worker processes); the API counts every item too, so filter by job.
WORKER_CHUNKS = Counter("reward_worker_chunks_total", "Chunks (RQ jobs) executed by workers, by queue.", ["queue"])
QUEUE_DEPTH = Gauge("reward_queue_depth", "Chunks waiting in each RQ queue.", ["queue"])
QUEUE_WORKERS = Gauge("reward_queue_workers", "Live worker processes serving each RQ queue.", ["queue"])
REDIS_UP = Gauge("reward_redis_up", "1 when the API reached Redis at its last check.")
CHUNK_RETRIES = Counter("reward_chunk_retries_total", "Chunks re-queued because their worker died.", ["queue"])
CHUNKS_LOST = Counter("reward_chunks_lost_total", "Chunks given up on after their retries; their items get error.",
                      ["queue"])
ASYNC_JOBS = Counter("reward_async_jobs_total", "/jobs batches finished, by status.", ["status"])

# issue 12: result cache and per-prompt statistics
CACHE_HITS = Counter("reward_cache_hits_total", "Unique items of a request answered from the result cache, by task.",
                     ["task"])
CACHE_MISSES = Counter("reward_cache_misses_total", "Unique items looked up in the result cache and not found, by task.",
                       ["task"])
CACHE_ERRORS = Counter("reward_cache_errors_total", "Result-cache reads or writes that failed (Redis unreachable).")
PROMPT_STATS_ERRORS = Counter("reward_prompt_stats_errors_total",
                              "Requests whose per-prompt statistics could not be recorded (Redis unreachable).")

# issue 11: admission control, self-healing pool
PENDING_ITEMS = Gauge("reward_pending_items", "Items accepted and not yet finished (distributed mode: over every "
                      "API replica, as this replica last saw it in Redis).", multiprocess_mode="max")
ADMISSION_REFUSALS = Counter("reward_admission_refusals_total", "Requests refused by admission control, by reason "
                             "(overloaded: 429, too_large: 413).", ["reason"])
WORKER_START_FAILURES = Counter("reward_worker_start_failures_total", "Scoring worker processes that failed to "
                                "start (retried with backoff).")
WORKERS_UNSTARTABLE = Gauge("reward_workers_unstartable", "Embedded pool slots whose worker cannot be restarted "
                            "right now (retrying with backoff; /readyz says why).", multiprocess_mode="livesum")

# issue 13: small concurrent requests scored as one batch
COALESCED_REQUESTS = Histogram("reward_coalesced_requests", "Requests scored together in one coalesced batch "
                               "(REWARD_SERVICE_COALESCE_WINDOW_MS).", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))


def record_sandbox_run(detail: object) -> None:
    """Count one scored item's sandbox outcome. Called by the API's Scorer for every unique item in both
    modes (workers don't: in distributed mode that would count each run twice)."""
    box = detail.get("sandbox") if isinstance(detail, dict) else None
    if isinstance(box, dict) and "status" in box:
        SANDBOX_RUNS.labels(str(box.get("backend", "")), str(box["status"])).inc()
