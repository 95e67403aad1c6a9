"""Reusable empty network namespaces for the process sandbox (root only).

Creating and destroying a network namespace per run costs a bwrap session
about 0.6 ms more, plus the kernel's asynchronous netns cleanup work, which
shows under load (measured 5-10 % more runs per second with two concurrent
runs). A slot keeps one namespace for its whole life instead: it has no interface up (its loopback stays down)
and belongs to the host's user namespace, so the unprivileged program can
neither bring anything up nor leave anything behind in it once its processes
are gone. Runs in different slots never share one.

The spawning thread steps into the namespace just for the fork (namespaces
are per thread), so bwrap is born inside it with no extra exec.
"""
from __future__ import annotations

import ctypes
import os
import threading
from contextlib import contextmanager
from typing import Iterator

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def new_netns() -> int:
    """A fresh, empty network namespace, held by the returned file descriptor."""
    box: dict = {}

    def make() -> None:
        # In a throwaway thread: unshare() moves only the calling thread, which then just ends.
        try:
            _check(_libc.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            box["fd"] = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            box["error"] = e

    t = threading.Thread(target=make, name="sandbox-netns")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["fd"]


@contextmanager
def entered(netns_fd: int) -> Iterator[None]:
    """Run the block with the calling thread in that network namespace."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(netns_fd, _CLONE_NEWNET), "setns(sandbox netns)")
        try:
            yield
        finally:
            _check(_libc.setns(home, _CLONE_NEWNET), "setns(back to the service's netns)")
    finally:
        os.close(home)
