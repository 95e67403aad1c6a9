"""No isolation at all: for development on machines without bubblewrap or Docker.

The supervisor runs as a plain child process in a temporary directory and
applies rlimits only; programs see your files, your network and your
environment's defaults. Never use it for untrusted code.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sandbox.base import Sandbox, Session
from sandbox.fds_session import FdsSession, Hooks
from sandbox.process_sessions import read_child_pid  # noqa: F401 - same protocol family
from sandbox.types import Limits, SandboxUnavailable

log = logging.getLogger(__name__)

SUPERVISOR = Path(__file__).parent / "inside" / "supervisor.py"
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


class _UnsafeSession(FdsSession):
    def __init__(self, proc: subprocess.Popen, sock: socket.socket, work: str) -> None:
        def kill() -> None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass

        super().__init__(sock, "unsafe", Hooks(kill=kill, alive=lambda: proc.poll() is None), {**ENV, "HOME": work})
        self.proc, self.work = proc, work

    def close(self) -> None:
        self.reset()
        try:
            self.sock.close()
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.hooks.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(self.work, ignore_errors=True)


class UnsafeSandbox(Sandbox):
    name = "unsafe"

    def __init__(self) -> None:
        log.warning("!!! sandbox backend 'unsafe': model-written code runs WITHOUT isolation. Development only. !!!")

    def check(self) -> None:
        return None

    def session(self, limits: Limits | None = None, wait_s: float | None = None) -> Session:
        work = tempfile.mkdtemp(prefix="rs-unsafe-")
        host, inner = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        proc = subprocess.Popen([sys.executable, "-I", str(SUPERVISOR), "fds", str(inner.fileno()), work, "unsafe"],
                                pass_fds=[inner.fileno()], cwd=work, env={**ENV, "HOME": work},
                                stdin=subprocess.DEVNULL, start_new_session=True)
        inner.close()
        host.settimeout(20)
        try:
            ready = host.recv(1 << 16)
        except OSError:
            ready = b""
        host.settimeout(None)
        if b'"ready"' not in ready:
            proc.kill()
            shutil.rmtree(work, ignore_errors=True)
            raise SandboxUnavailable("the unsafe backend's supervisor did not start")
        return _UnsafeSession(proc, host, work)
