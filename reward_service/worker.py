"""``reward-service worker``: N RQ worker processes on this host, supervised.

Each worker process is an RQ ``SimpleWorker`` (no fork per job: a chunk is a
few milliseconds of RQ bookkeeping, not ten) that hands every chunk to its
own long-lived scoring child, killed and replaced when an item overruns its
limit (see ``executors.rq_job``). This process

- restarts a worker process that dies (backing off while it keeps dying,
  e.g. while Redis is down);
- announces each live worker in ``rs:workers:<queue>`` every second, which
  the API reads for readiness and ``reward_queue_workers`` (RQ's own worker
  registry keeps a SIGKILLed worker for minutes);
- on SIGTERM/SIGINT asks the workers to finish their current chunk and stop,
  and kills what is left after a grace period;
- serves the workers' metrics, aggregated with prometheus_client's
  multiprocess mode, on ``--metrics-port``.
"""
from __future__ import annotations

import glob
import logging
import multiprocessing as mp
import os
import signal
import socket
import tempfile
import time
from dataclasses import dataclass

from reward_service.config import Settings

log = logging.getLogger("reward_service.worker")

WORKER_TTL_S = 30  # RQ's worker key TTL; its blocking dequeue wakes every WORKER_TTL_S - 15 s
ANNOUNCE_EVERY_S = 1.0
SHUTDOWN_GRACE_S = 30.0
HEARTBEAT_EVERY_S = 5.0


@dataclass
class _Slot:
    index: int
    proc: mp.process.BaseProcess | None = None
    generation: int = 0
    started_at: float = 0.0
    failures: int = 0
    restart_at: float = 0.0


def resolve_queues(names: list[str]) -> list[str]:
    """Queue names for the task families asked for (all families when none are)."""
    import verifiers
    from reward_service.executors.rq_job import QUEUE_PREFIX, queue_name

    families = sorted({spec.queue for spec in verifiers.load_all().values()})
    if not names:
        return [queue_name(f) for f in families]
    wanted = [n.strip().removeprefix(QUEUE_PREFIX) for n in names if n.strip()]
    unknown = [n for n in wanted if n not in families]
    if unknown:
        raise SystemExit(f"unknown task famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}; "
                         f"known: {', '.join(families)}")
    return [queue_name(f) for f in dict.fromkeys(wanted)]


def _metrics_dir() -> str:
    # Must be set before any process here imports prometheus_client's value classes.
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")
    if path:
        os.makedirs(path, exist_ok=True)
        for f in glob.glob(os.path.join(path, "*.db")):  # counts of a previous run on this host
            os.remove(f)
    else:
        path = tempfile.mkdtemp(prefix="reward-worker-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def run_workers(settings: Settings, count: int = 1, queues: list[str] | None = None,
                metrics_port: int | None = None) -> int:
    if not settings.redis_url:
        raise SystemExit("reward-service worker needs REDIS_URL (or REWARD_SERVICE_REDIS_URL)")
    if count < 1:
        raise SystemExit("--count must be at least 1")
    _metrics_dir()
    queue_names = resolve_queues(queues or [])
    if "rs:code" in queue_names:
        from reward_service.api import check_sandbox

        check_sandbox(settings)  # refuses to start (or warns) as the API does; exports the backend to workers

    import redis
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    from reward_service.executors.rq_job import workers_key

    if metrics_port is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(metrics_port, registry=registry)

    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    ctx = mp.get_context("spawn")
    base = f"{socket.gethostname()}:{os.getpid()}"
    slots = [_Slot(i) for i in range(count)]
    r = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    redis_ok = True

    def start(slot: _Slot) -> None:
        slot.generation += 1
        name = f"{base}:{slot.index}:{slot.generation}"
        slot.proc = ctx.Process(target=_worker_main, args=(settings, queue_names, name), name=f"rq-worker-{slot.index}")
        slot.proc.start()
        slot.started_at = time.monotonic()

    log.info("starting %d worker process(es) on %s", count, ", ".join(queue_names))
    for s in slots:
        start(s)
    try:
        while not stopping:
            now = time.monotonic()
            for s in slots:
                if s.proc is not None and not s.proc.is_alive():
                    multiprocess.mark_process_dead(s.proc.pid)
                    quick = now - s.started_at < 10
                    s.failures = s.failures + 1 if quick else 0
                    s.restart_at = now + min(10.0, 0.5 * 2 ** s.failures) if quick else now
                    log.warning("worker process %s exited (code %s); restarting%s", s.proc.pid, s.proc.exitcode,
                                f" in {s.restart_at - now:.1f} s" if quick else "")
                    s.proc = None
                if s.proc is None and now >= s.restart_at:
                    start(s)
            try:
                _announce(r, workers_key, queue_names, base, slots)
                if not redis_ok:
                    log.warning("Redis reachable again")
                redis_ok = True
            except redis.RedisError as e:
                if redis_ok:
                    log.error("cannot reach Redis at %s: %s", settings.redis_url, e)
                redis_ok = False
            time.sleep(ANNOUNCE_EVERY_S)
    finally:
        _shutdown(slots, r, workers_key, queue_names, base)
    return 0


def _announce(r, workers_key, queue_names: list[str], base: str, slots: list[_Slot]) -> None:
    secs, usecs = r.time()  # Redis's clock, not ours: hosts' clocks may disagree
    now = secs + usecs / 1e6
    with r.pipeline(transaction=False) as p:
        for q in queue_names:
            for s in slots:
                member = f"{base}:{s.index}"
                if s.proc is not None and s.proc.is_alive():
                    p.zadd(workers_key(q), {member: now})
                else:
                    p.zrem(workers_key(q), member)
            p.expire(workers_key(q), 3600)
        p.execute()


def _shutdown(slots: list[_Slot], r, workers_key, queue_names: list[str], base: str) -> None:
    live = [s.proc for s in slots if s.proc is not None and s.proc.is_alive()]
    log.info("stopping %d worker process(es): finishing current chunks (up to %g s)", len(live), SHUTDOWN_GRACE_S)
    for p in live:
        try:
            os.kill(p.pid, signal.SIGTERM)  # RQ's warm shutdown: finish the chunk, then exit
        except ProcessLookupError:
            pass
    end = time.monotonic() + SHUTDOWN_GRACE_S
    for p in live:
        p.join(max(0.0, end - time.monotonic()))
        if p.is_alive():
            log.warning("worker process %s still busy after %g s; killing it", p.pid, SHUTDOWN_GRACE_S)
            p.kill()
            p.join(5)
    try:
        with r.pipeline(transaction=False) as p:
            for q in queue_names:
                p.zrem(workers_key(q), *[f"{base}:{s.index}" for s in slots])
            p.execute()
    except Exception:  # Redis gone: the API ages the entries out anyway
        pass


FAULT_CLOCK_OFFSET = "REWARD_SERVICE_FAULT_CLOCK_OFFSET_S"


def _skew_clock_for_tests() -> None:
    """With REWARD_SERVICE_FAULT_CLOCK_OFFSET_S set, this process's wall clock (time.time) is off by
    that many seconds, as on a host whose NTP is broken: tests check that deadlines don't depend on it."""
    offset = float(os.environ.get(FAULT_CLOCK_OFFSET) or 0)
    if offset:
        real = time.time
        time.time = lambda: real() + offset  # type: ignore[assignment]


def _worker_main(settings: Settings, queue_names: list[str], name: str) -> None:
    """One RQ worker process (spawned: a fresh interpreter that sees the metrics dir)."""
    _skew_clock_for_tests()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from reward_service.executors.supervised import die_with_parent

    die_with_parent(signal.SIGTERM)  # a killed supervisor takes its workers along (warm stop), not orphans them
    import redis
    from rq import SimpleWorker
    from rq.worker import DequeueStrategy

    from reward_service.executors import rq_job

    class ScoringWorker(SimpleWorker):
        max_connection_wait_time = 2.0  # back on a restarted Redis within seconds, not a minute
        log_result_lifespan = False
        log_job_description = False

        def heartbeat(self, timeout=None, pipeline=None):
            # RQ beats (3 round trips) several times per job; with jobs of ~0.1 s that is most
            # of its per-job cost. Once every few seconds keeps the worker key (TTL 90 s) alive.
            now = time.monotonic()
            if pipeline is None and now - getattr(self, "_beat_at", -1e9) < HEARTBEAT_EVERY_S:
                return
            self._beat_at = now
            super().heartbeat(timeout, pipeline)

        def _install_signal_handlers(self):
            # Ctrl-C reaches the whole process group; the supervisor turns it into one SIGTERM
            # (a warm stop), where RQ would take a second signal as a cold one.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, self.request_stop)

    conn = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=WORKER_TTL_S,
                                socket_keepalive=True)
    try:
        worker = ScoringWorker(queue_names, connection=conn, name=name, worker_ttl=WORKER_TTL_S,
                               maintenance_interval=60, default_result_ttl=60)
    except redis.RedisError as e:  # the supervisor retries with backoff; one line says why
        log.error("worker %s cannot reach Redis: %s", name, e)
        raise SystemExit(1) from None
    rq_job.start_scoring(settings.worker_memory_mb)
    try:
        worker.work(logging_level="WARNING", dequeue_strategy=DequeueStrategy.ROUND_ROBIN)
    finally:
        rq_job.stop_scoring()
