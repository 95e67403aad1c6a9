"""A small bounded pool of expensive, reusable things (the docker sandbox's warm containers).

Creation happens in the background where possible; a broken item is discarded
and replaced in the background, so callers rarely wait for a start.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
ACQUIRE_TIMEOUT_S = 120.0


class WarmPool(Generic[T]):
    """At most ``size`` items; idle ones wait in a queue, broken ones are replaced in the background."""

    def __init__(self, size: int, create: Callable[[], T], destroy: Callable[[T], None],
                 key: Callable[[T], str]) -> None:
        self._size = size
        self._create = create
        self._destroy = destroy
        self._key = key
        self._idle: queue.SimpleQueue[T] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._count = 0  # existing or starting
        self._all: dict[str, T] = {}
        self._closed = False

    def warm_up(self) -> None:
        while self._reserve():
            threading.Thread(target=self._start_into_idle, daemon=True, name="warm-pool-start").start()

    def acquire(self, timeout: float = ACQUIRE_TIMEOUT_S) -> T:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                pass
            if self._reserve():
                try:
                    item = self._create()
                except BaseException:
                    self._unreserve()
                    raise
                if self._track(item):
                    return item
                raise TimeoutError("the pool was closed")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no pooled sandbox became free within {timeout:.0f}s")
            try:  # short waits: a failed background replacement frees a slot to grow into
                return self._idle.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue

    def release(self, item: T) -> None:
        if self._closed:
            self.discard(item, replace=False)
        else:
            self._idle.put(item)

    def discard(self, item: T, replace: bool = True) -> None:
        with self._lock:
            self._all.pop(self._key(item), None)
            self._count -= 1
        threading.Thread(target=self._destroy_quietly, args=(item,), daemon=True, name="warm-pool-destroy").start()
        if replace and not self._closed:
            self.warm_up()

    def close(self) -> list[T]:
        with self._lock:
            self._closed = True
            everything = list(self._all.values())
            self._all.clear()
            self._count = 0
        return everything

    def _reserve(self) -> bool:
        with self._lock:
            if self._closed or self._count >= self._size:
                return False
            self._count += 1
            return True

    def _unreserve(self) -> None:
        with self._lock:
            self._count -= 1

    def _track(self, item: T) -> bool:
        """Adopt a new item; one finished after close() is destroyed instead of leaking."""
        with self._lock:
            if not self._closed:
                self._all[self._key(item)] = item
                return True
        self._destroy_quietly(item)
        return False

    def _start_into_idle(self) -> None:
        try:
            item = self._create()
        except Exception:  # noqa: BLE001 - the next acquire grows into the freed slot
            log.exception("could not start a pool item")
            self._unreserve()
            return
        if self._track(item):
            self._idle.put(item)

    def _destroy_quietly(self, item: T) -> None:
        try:
            self._destroy(item)
        except Exception:  # noqa: BLE001
            log.warning("could not remove pool item %s", self._key(item)[:12], exc_info=True)
