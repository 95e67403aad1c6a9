"""Running untrusted programs under limits, behind one small interface.

Backends: ``process`` (Linux namespaces through bubblewrap; the default),
``docker`` (hardened, pooled containers) and ``unsafe`` (no isolation, for
development only, and loud about it). There is never a silent fallback.
"""
from __future__ import annotations

import os

from sandbox.base import LANGUAGES, Sandbox
from sandbox.types import Limits, RunResult, RunStatus, SandboxUnavailable

__all__ = ["LANGUAGES", "Limits", "RunResult", "RunStatus", "Sandbox", "SandboxUnavailable", "get_sandbox"]

BACKEND_ENV = "REWARD_SERVICE_SANDBOX_BACKEND"
_instances: dict[str, Sandbox] = {}


def get_sandbox(name: str | None = None) -> Sandbox:
    """The process-wide instance of backend ``name`` (default from the environment)."""
    name = name or os.environ.get(BACKEND_ENV, "process")
    if name not in _instances:
        try:
            if name == "process":
                from sandbox.process import ProcessSandbox as cls
            elif name == "docker":
                from sandbox.docker import DockerSandbox as cls
            elif name == "unsafe":
                from sandbox.unsafe import UnsafeSandbox as cls
            else:
                raise SandboxUnavailable(f"unknown sandbox backend {name!r}; choose process, docker or unsafe")
        except ImportError as e:
            raise SandboxUnavailable(f"sandbox backend {name!r} can't be loaded: {e}") from e
        _instances[name] = cls()
    return _instances[name]
