"""A scoring child process held to per-item limits by killing it on overrun.

Shared by the embedded pool (one per pool slot, driven by a thread of the
API) and by RQ workers (one per worker process, driven by the job). Items
are scored in the child's main thread, where math-verify's ``signal.alarm``
timeouts work; a verifier stuck in C code can only be stopped by a kill, so
the driver watches the clock of the item being scored and replaces the
child when it overruns.
"""
from __future__ import annotations

import ctypes
import os
import signal
import time
from typing import Callable

from reward_service import metrics
from reward_service.executors.base import Job, Outcome, timed_out

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send us ``sig`` when our parent process exits (Linux; a no-op elsewhere)."""
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before we asked
        os.kill(os.getpid(), sig)


FAULT_WORKER_START = "REWARD_SERVICE_FAULT_WORKER_START"


class WorkerStartFailed(RuntimeError):
    """A scoring child could not be started (it exited or hung before saying it was ready)."""


def _child_main(conn, memory_mb: int) -> None:
    # The forkserver dies with its owner: a SIGKILLed API or RQ worker must not
    # leave a child grinding on an item for nobody.
    die_with_parent()
    # Fault injection for tests and drills: while the file this names exists, children die at
    # start, the way they do when the host refuses them memory or processes.
    flag = os.environ.get(FAULT_WORKER_START)
    if flag and os.path.exists(flag):
        os._exit(70)
    from reward_service.executors import worker_process

    worker_process.main(conn, memory_mb)


class ScoringProcess:
    """One scoring child process and the pipe to it."""

    def __init__(self, ctx, memory_mb: int) -> None:
        self._ctx = ctx
        self._memory_mb = memory_mb
        self.proc = None
        self.conn = None

    def start(self, timeout_s: float = 120.0) -> None:
        parent, child = self._ctx.Pipe()
        self.proc = self._ctx.Process(target=_child_main, args=(child, self._memory_mb), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        try:
            hello = parent.recv() if parent.poll(timeout_s) else None
        except (EOFError, OSError):  # it died before saying it was ready
            hello = None
        if hello != "ready":
            self.proc.join(1)  # one that exited has its exit code by now; a hung one is killed next
            code = self.proc.exitcode
            self._reap()
            why = f"exited with code {code}" if code is not None else f"not ready after {timeout_s:g} s"
            raise WorkerStartFailed(f"scoring worker process {why} while starting")
        metrics.WORKERS.inc()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def kill(self) -> None:
        if self.proc is None:
            return
        self._reap()
        metrics.WORKERS.dec()

    def _reap(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()
        self.proc = None


def run_items(
    worker: ScoringProcess,
    items: list[tuple[int, Job]],
    *,
    deadline: float | None,
    emit: Callable[[int, Outcome], None],
    cancelled: Callable[[], bool],
    replace: Callable[[str], None],
    tick: Callable[[], None] | None = None,
    tick_s: float = 1.0,
) -> None:
    """Score ``items`` (index, job) on ``worker``, calling ``emit`` once per index.

    ``deadline`` is on the ``time.monotonic`` clock. An item past its limit gets
    ``timeout``, one whose child died gets ``error``; either way the child is
    replaced through ``replace(reason)`` and the rest of the items go on. Once
    ``cancelled()`` is true the remaining items are dropped (not emitted).
    ``tick`` is called at least every ``tick_s`` while waiting (heartbeats).
    """
    pending = list(items)
    if not pending or cancelled():
        return
    if not worker.alive():
        replace("crash")
    worker.conn.send(pending)
    started = time.monotonic()
    next_tick = started + tick_s
    while pending:
        i, job = pending[0]
        limit = started + job.timeout_s
        if deadline is not None:
            limit = min(limit, deadline + 0.5)
        now = time.monotonic()
        if tick is not None and now >= next_tick:
            tick()
            next_tick = now + tick_s
        wait = max(0.0, limit - now)
        if tick is not None:
            wait = min(wait, max(0.0, next_tick - now))
        try:
            ready = worker.conn.poll(wait)
            msg = worker.conn.recv() if ready else None
        except (EOFError, OSError):
            msg = "died"
        if isinstance(msg, tuple):
            idx, outcome = msg
            emit(idx, outcome)
            pending.pop(0)
            started = time.monotonic()
            if pending and cancelled():  # expired meanwhile: don't finish the rest
                replace("batch_expired")
                return
            continue
        if msg is None and time.monotonic() < limit:
            continue  # woke up only to tick
        # The item overran its limit, or the child died under it.
        # Replace before answering, so a caller that got its answer finds the pool whole again.
        # (try/finally: the item is answered even when no replacement can be started.)
        if msg == "died":
            code = worker.proc.exitcode if worker.proc else None
            try:
                replace("crash")
            finally:
                emit(i, Outcome(0.0, "error", {"error": f"scoring worker died (exit code {code}) while scoring this item"}))
        elif deadline is not None and time.monotonic() >= deadline:
            try:
                replace("batch_expired")
            finally:
                for j, jb in pending:
                    emit(j, timed_out(jb, "batch deadline reached before this item was scored"))
            return
        else:
            try:
                replace("timeout")
            finally:
                emit(i, timed_out(job, f"verifier exceeded the {job.timeout_s:g} s item limit; stopped"))
        pending.pop(0)
        if pending:
            worker.conn.send(pending)
            started = time.monotonic()
