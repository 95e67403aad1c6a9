"""The one place a run's raw facts become a status, for every backend.

Backends only report what happened (exit status or signal, CPU and wall time,
peak memory, output sizes, which limit fired); :func:`classify` decides what
that means, with the same rules everywhere.
"""
from __future__ import annotations

import math
import signal
from dataclasses import dataclass

from sandbox.types import Limits, RunResult, RunStatus

# What runtimes print when an allocation fails (a failed run whose stderr ends like this hit
# its memory limit, even when the kill came from the runtime rather than the kernel).
MEMORY_MESSAGES = (b"MemoryError", b"std::bad_alloc", b"Cannot allocate memory", b"out of memory",
                   b"memory exhausted", b"java.lang.OutOfMemoryError", b"JavaScript heap out of memory",
                   b"memory allocation of", b"cannot allocate memory")


@dataclass
class Facts:
    """What a backend observed about one run, judged by nobody yet."""

    exit_code: int | None  # negative: killed by that signal; None: the session died under the run
    cpu_s: float = 0.0
    wall_s: float = 0.0
    peak_mb: float = 0.0
    timed_out: bool = False  # the wall clock fired
    over_output: bool = False  # a stream passed output_bytes
    oom_killed: bool = False  # the session's memory cgroup killed something during the run
    forks_refused: int = 0
    stderr: bytes = b""


def classify(f: Facts, limits: Limits) -> tuple[RunStatus, str]:
    """(status, human-readable reason; "" for ok)."""
    code = f.exit_code
    if f.over_output:
        return RunStatus.output_limit, f"more than {limits.output_bytes} bytes of output; killed"
    if f.timed_out:
        return RunStatus.timeout, f"wall time limit {limits.wall_time_s:g}s exceeded; killed"
    if code is None:
        if f.oom_killed:
            return RunStatus.memory_limit, f"memory limit {limits.memory_mb} MB exceeded (OOM kill)"
        return RunStatus.runtime_error, "the sandbox session ended during the run"
    if code == 0:  # a program that survives a child's OOM kill (a test harness, say) still succeeded
        return RunStatus.ok, "a child process was killed by the out-of-memory killer" if f.oom_killed else ""
    cpu_cap = max(1, math.ceil(limits.cpu_time_s))
    if code == -signal.SIGXCPU or (code == -signal.SIGKILL and f.cpu_s >= cpu_cap):
        # SIGXCPU at the soft CPU limit; SIGKILL at the hard one if it was ignored.
        return RunStatus.timeout, f"CPU time limit {limits.cpu_time_s:g}s exceeded"
    if f.oom_killed:
        return RunStatus.memory_limit, f"memory limit {limits.memory_mb} MB exceeded (OOM kill)"
    if any(m in f.stderr[-4096:] for m in MEMORY_MESSAGES):
        return RunStatus.memory_limit, f"memory limit {limits.memory_mb} MB exceeded"
    if code == -signal.SIGKILL and f.peak_mb >= 0.9 * limits.memory_mb:
        # Runtimes without a readable OOM counter (gVisor) still show the kill at the limit.
        return RunStatus.memory_limit, "killed at the memory limit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return RunStatus.runtime_error, f"killed by {name}"
    return RunStatus.runtime_error, f"exit code {code}"


def result(f: Facts, limits: Limits, stdout: bytes, stderr: bytes, **kw) -> RunResult:
    status, detail = classify(f, limits)
    extra = kw.pop("extra", {})
    if f.forks_refused:
        extra["forks_refused"] = f.forks_refused
    return RunResult(status, f.exit_code, stdout, stderr, round(f.wall_s, 4), round(f.cpu_s, 4),
                     round(f.peak_mb, 2), detail=detail, extra=extra, **kw)


def exit_code(wait_status: int | None) -> int | None:
    """``os.waitstatus_to_exitcode``, tolerating an unknown status."""
    if wait_status is None:
        return None
    import os
    return os.waitstatus_to_exitcode(wait_status)
