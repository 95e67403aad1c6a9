"""The one interface every sandbox backend implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Mapping

from sandbox.types import Limits, RunResult

LANGUAGES = ("python", "cpp")


class Sandbox(ABC):
    """Runs one untrusted program in a fresh, private, network-less session.

    ``language`` is ``python`` (the source runs as ``main.py`` under the
    sandbox's Python 3) or ``cpp`` (``main.cpp`` is compiled with g++ inside
    the sandbox, then run; a failed build gives ``compile_error``).
    ``files`` are extra files placed beside it in the work directory,
    ``argv`` extra arguments. ``limits`` bound the whole session.
    """

    name: str = "abstract"

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`sandbox.types.SandboxUnavailable` if this backend can't work here."""

    @abstractmethod
    def run(
        self,
        language: str,
        source: str,
        *,
        stdin: bytes = b"",
        limits: Limits | None = None,
        files: Mapping[str, bytes] | None = None,
        argv: list[str] | None = None,
    ) -> RunResult:
        ...

    def close(self) -> None:
        """Release pooled resources (containers, slots)."""
