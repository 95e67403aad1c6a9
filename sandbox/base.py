"""The one interface every sandbox backend implements: sessions of runs.

A :class:`Session` is one private, network-less sandbox with a work dir that
persists across its runs, so a completion is built once and then run against
every test. Backends only start sessions and carry requests to the in-sandbox
supervisor (``sandbox/inside/supervisor.py``); what a run's facts mean is
decided in one place for all of them (``sandbox/verdict.py``), and what a
language needs to build and run is in one table (``sandbox/languages.py``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Mapping

from sandbox import languages
from sandbox.types import Limits, PairResult, Program, RunResult, RunStatus

LANGUAGES = tuple(languages.LANGUAGES)
COMPILE_OUTPUT_CHARS = 4000


def valid_name(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and ".." not in parts and "\x00" not in name and "" not in parts


class Session(ABC):
    """Runs of one sandbox session, one at a time. Use as a context manager."""

    backend: str = "abstract"
    # Backend-wide overrides of every language's build budget (None: the language table's).
    compile_time_s: float | None = None
    compile_memory_mb: int | None = None

    @abstractmethod
    def put(self, files: Mapping[str, bytes]) -> None:
        """Write files into the work dir (kept for the session's later runs)."""

    @abstractmethod
    def exec(self, program: Program, *, stdin: bytes = b"", limits: Limits,
             side_input: bytes | None = None, side_output: bool = False, last: bool = False) -> RunResult:
        """Run ``program`` to its end under ``limits``. ``side_input`` is readable on descriptor 3,
        and with ``side_output`` what it writes on descriptor 4 comes back as ``side_output``.
        ``last``: nothing more runs in this session (its closing wipe goes with this run)."""

    @abstractmethod
    def pair(self, judge: Program, candidate: Program, *, judge_input: bytes, limits: Limits,
             judge_limits: Limits, last: bool = False) -> PairResult:
        """Run a trusted ``judge`` beside an untrusted ``candidate``, joined by a socket on
        descriptor 3 of each. The judge reads ``judge_input`` on descriptor 4 (no other process
        of the session can), writes its report on descriptor 1, and stays out of the candidate's
        reach (not dumpable, no shared descriptor). Ends when the judge does; ``limits``
        (wall clock) bound both."""

    @abstractmethod
    def close(self) -> None:
        """End the session: everything in it is killed and wiped (or the session destroyed)."""

    def build(self, language: languages.Language, source: str, limits: Limits) -> RunResult:
        """Compile ``source`` (already in the work dir) with the language's own budget; a failure
        comes back as ``compile_error`` with the compiler's diagnostics in ``compile_output``."""
        argv = language.compile_argv(source)
        if argv is None:
            return RunResult(RunStatus.ok)
        budget = max(self.compile_time_s or language.compile_time_s, limits.wall_time_s)
        memory = max(self.compile_memory_mb or language.compile_memory_mb, limits.memory_mb)
        build_limits = replace(limits, wall_time_s=budget, cpu_time_s=budget, memory_mb=memory,
                               max_processes=max(limits.max_processes, 64), output_bytes=1 << 20)
        r = self.exec(Program(tuple(argv), env=language.environment(memory),
                              rlimit_as=language.memory == "rlimit", as_headroom_mb=language.as_headroom_mb),
                      limits=build_limits)
        r.compile_output = (r.stderr + r.stdout).decode("utf-8", "replace")[-COMPILE_OUTPUT_CHARS:]
        if r.status != RunStatus.ok:
            why = {RunStatus.timeout: f"compiler timed out after {budget:g}s",
                   RunStatus.memory_limit: f"compiler ran out of memory ({memory} MB)",
                   RunStatus.output_limit: "compiler output too long"}.get(r.status, "compilation failed")
            r.detail = f"{why} ({r.detail})" if r.detail else why
            r.status = RunStatus.compile_error if r.status != RunStatus.sandbox_error else r.status
        return r

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Sandbox(ABC):
    """A backend: starts sessions (``session``); ``run`` is one program in a session of its own."""

    name: str = "abstract"
    fork_python: bool = True  # python runs fork the session's warm interpreter

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`sandbox.types.SandboxUnavailable` if this backend can't work here."""

    @abstractmethod
    def session(self, limits: Limits | None = None, wait_s: float | None = None) -> Session:
        """A fresh (or wiped) session sized for runs under ``limits`` (its tmpfs, its cgroup).
        ``wait_s``: the longest wait for a free slot (default: the runs' wall limit); a wait never
        outlasts the scored item it is for."""

    def close(self) -> None:
        """Release pooled resources (containers, slots, warm sessions)."""

    def program(self, language: languages.Language, source: str, limits: Limits,
                argv: list[str] | None = None) -> Program:
        """How a built ``language`` program runs in a session of this backend."""
        if language.fork_python and self.fork_python:
            return Program(python=language.source_file(source), argv=tuple(argv or ()))
        return Program(tuple(language.run_argv(source, limits.memory_mb)) + tuple(argv or ()),
                       env=language.environment(limits.memory_mb), rlimit_as=language.memory == "rlimit",
                       as_headroom_mb=language.as_headroom_mb, stack_is_memory=language.stack_is_memory)

    def run(self, language: str, source: str, *, stdin: bytes = b"", limits: Limits | None = None,
            files: Mapping[str, bytes] | None = None, argv: list[str] | None = None) -> RunResult:
        """Build (if the language compiles) and run ``source`` once, in a session of its own.

        ``files`` are placed beside it in the work dir; ``argv`` are extra arguments."""
        limits = limits or Limits()
        lang = languages.get(language)
        if lang is None:
            return RunResult(RunStatus.sandbox_error, detail=f"unsupported language {language!r}")
        files = dict(files or {})
        src_name = lang.source_file(source)
        bad = [n for n in files if not valid_name(n) or n in (src_name, "main")]
        if bad:
            return RunResult(RunStatus.sandbox_error, detail=f"refusing extra file names {bad}")
        too_big = [n for n, d in files.items() if len(d) > limits.file_size_mb << 20]
        if too_big:
            return RunResult(RunStatus.sandbox_error, detail=f"files over file_size_mb={limits.file_size_mb}: {too_big}")
        missing = lang.missing()
        if missing:
            return RunResult(RunStatus.sandbox_error, detail=f"{language} toolchain not installed here "
                                                               f"(missing {', '.join(missing)})")
        try:
            session = self.session(limits)
        except TimeoutError as e:
            return RunResult(RunStatus.sandbox_error, detail=f"no sandbox slot: {e}")
        except Exception as e:  # noqa: BLE001 - a broken sandbox must not look like a broken program
            return RunResult(RunStatus.sandbox_error, detail=f"no sandbox session: {type(e).__name__}: {e}")
        try:
            with session as s:
                return self._run_in(s, lang, source, files, src_name, stdin, limits, argv)
        except Exception as e:  # noqa: BLE001 - a session that broke under us
            return RunResult(RunStatus.sandbox_error, detail=f"sandbox failure: {type(e).__name__}: {e}")

    def _run_in(self, s: Session, lang: languages.Language, source: str, files: dict, src_name: str,
                stdin: bytes, limits: Limits, argv: list[str] | None) -> RunResult:
        s.put({**files, src_name: source.encode()})
        compile_output = ""
        if lang.compile is not None:
            built = s.build(lang, source, limits)
            if built.status != RunStatus.ok:
                return built
            compile_output = built.compile_output
            compile_time = built.wall_time_s
        r = s.exec(self.program(lang, source, limits, argv), stdin=stdin, limits=limits, last=True)
        r.compile_output = compile_output
        if lang.compile is not None:
            r.extra["compile_time_s"] = compile_time
        return r
