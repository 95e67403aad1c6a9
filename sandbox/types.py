"""The sandbox's small public vocabulary: limits in, a result out."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping


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
    side_output: bytes = b""  # what the program wrote on descriptor 4, when asked for


@dataclass(frozen=True)
class Program:
    """What one run of a session executes.

    ``argv`` is exec'd (found on the sandbox's PATH) unless ``python`` names a file of the
    work dir or ``python_source`` is given: then the run is a fork of the session's warm
    interpreter executing it as ``__main__`` (``argv`` becomes ``sys.argv[1:]``).
    ``python_source`` reaches only that process (never the work dir): a judge's program.
    ``rlimit_as`` False leaves the address space unlimited (the JVM, Go and V8 reserve far
    more than they use); the session's cgroup memory limit then bounds the run.
    """

    argv: tuple[str, ...] = ()
    python: str | None = None
    python_source: bytes | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    rlimit_as: bool = True
    cwd: str | None = None  # default: the work dir
    # rlimit_as False and no cgroup to bound the session: RLIMIT_AS = memory_mb + this (0: none at all).
    as_headroom_mb: int = 0
    stack_is_memory: bool = False  # RLIMIT_STACK = the memory limit


def compiled_python(source: str, filename: str) -> bytes:
    """``source`` in the form a session's python run loads without compiling it (when the sandbox's
    Python has this bytecode magic; otherwise it compiles the source that rides along)."""
    import importlib.util
    import marshal

    code = marshal.dumps(compile(source, filename, "exec", dont_inherit=True))
    return (b"RSCODE1\n" + importlib.util.MAGIC_NUMBER + len(code).to_bytes(8, "big") + code
            + source.encode())


@dataclass
class PairResult:
    """A judge and a candidate run side by side, joined by a socket (see ``Session.pair``)."""

    judge: RunResult
    candidate: RunResult
    report: bytes = b""  # what the judge wrote on its descriptor 1


class SandboxUnavailable(RuntimeError):
    """The configured backend cannot work here; the message says why and what to do."""
