"""The sandbox's small public vocabulary: limits in, a result out."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class RunStatus(str, Enum):
    ok = "ok"
    runtime_error = "runtime_error"
    timeout = "timeout"
    memory_limit = "memory_limit"
    output_limit = "output_limit"
    compile_error = "compile_error"
    sandbox_error = "sandbox_error"


@dataclass(frozen=True)
class Limits:
    wall_time_s: float = 10.0
    cpu_time_s: float = 10.0
    memory_mb: int = 512
    max_processes: int = 32
    output_bytes: int = 1 << 20  # per stream; more is cut and reported as output_limit
    file_size_mb: int = 16


@dataclass
class RunResult:
    status: RunStatus
    exit_code: int | None = None  # negative: killed by that signal
    stdout: bytes = b""
    stderr: bytes = b""
    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0
    peak_memory_mb: float = 0.0
    detail: str = ""  # human-readable reason for any status but ok
    compile_output: str = ""  # compiler diagnostics, truncated
    extra: dict = field(default_factory=dict)


class SandboxUnavailable(RuntimeError):
    """The configured backend cannot work here; the message says why and what to do."""
