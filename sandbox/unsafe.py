"""No isolation at all: for development on machines without bubblewrap or Docker.

Limits are applied with rlimits only; the program sees your files, your
network and your environment. Never use it for untrusted code.
"""
from __future__ import annotations

import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Mapping

from sandbox.base import Sandbox
from sandbox.types import Limits, RunResult, RunStatus

log = logging.getLogger(__name__)


class UnsafeSandbox(Sandbox):
    name = "unsafe"

    def __init__(self) -> None:
        log.warning("!!! sandbox backend 'unsafe': model-written code runs WITHOUT isolation. Development only. !!!")

    def check(self) -> None:
        return None

    def run(self, language: str, source: str, *, stdin: bytes = b"", limits: Limits | None = None,
            files: Mapping[str, bytes] | None = None, argv: list[str] | None = None) -> RunResult:
        limits = limits or Limits()
        work = tempfile.mkdtemp(prefix="rs-unsafe-")
        try:
            for name, data in (files or {}).items():
                with open(os.path.join(work, name), "wb") as f:
                    f.write(data)
            if language == "python":
                with open(os.path.join(work, "main.py"), "w") as f:
                    f.write(source)
                cmd = [sys.executable, "-I", "main.py", *(argv or [])]
            elif language == "cpp":
                with open(os.path.join(work, "main.cpp"), "w") as f:
                    f.write(source)
                cc = subprocess.run(["g++", "-O2", "-std=c++17", "-o", "main", "main.cpp"], cwd=work,
                                    capture_output=True, timeout=limits.wall_time_s)
                if cc.returncode != 0:
                    return RunResult(RunStatus.compile_error, cc.returncode, detail="compilation failed",
                                     compile_output=cc.stderr.decode(errors="replace")[-4000:])
                cmd = ["./main", *(argv or [])]
            else:
                return RunResult(RunStatus.sandbox_error, detail=f"unsupported language {language!r}")

            def limit() -> None:
                os.setsid()
                resource.setrlimit(resource.RLIMIT_CPU, (int(limits.cpu_time_s) + 1,) * 2)
                resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb << 20,) * 2)
                resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb << 20,) * 2)

            t0 = time.monotonic()
            p = subprocess.Popen(cmd, cwd=work, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, preexec_fn=limit)
            try:
                out, err = p.communicate(stdin, timeout=limits.wall_time_s)
                status = RunStatus.ok if p.returncode == 0 else RunStatus.runtime_error
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                out, err = p.communicate()
                status = RunStatus.timeout
            n = limits.output_bytes
            if status == RunStatus.ok and (len(out) > n or len(err) > n):
                status = RunStatus.output_limit
            return RunResult(status, p.returncode, out[:n], err[:n], time.monotonic() - t0)
        finally:
            shutil.rmtree(work, ignore_errors=True)
