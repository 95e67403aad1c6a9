"""The body of one embedded scoring worker process.

Imported by the forkserver before it forks workers (preload), so a
replacement worker starts with every verifier already imported. Items are
scored in the process's main thread, where math-verify's ``signal.alarm``
timeouts work; the parent enforces the hard per-item limit by killing us.
"""
from __future__ import annotations

import resource
import signal

import verifiers
import verifiers.registry
from reward_service.executors.base import execute

verifiers.load_all()
verifiers.registry.preload()


def main(conn, memory_mb: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server; it stops us itself
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = memory_mb << 20
    if hard == resource.RLIM_INFINITY or limit <= hard:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    conn.send("ready")
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        for idx, job in batch:
            conn.send((idx, execute(job)))
