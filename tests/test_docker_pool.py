"""The warm pool behind the docker sandbox, with cheap items instead of containers."""
from __future__ import annotations

import itertools
import threading
import time

import pytest

from sandbox.docker_pool import WarmPool


class Factory:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.ids = itertools.count()
        self.destroyed: list[str] = []
        self.lock = threading.Lock()

    def create(self) -> str:
        time.sleep(self.delay_s)
        with self.lock:
            return f"item-{next(self.ids)}"

    def destroy(self, item: str) -> None:
        with self.lock:
            self.destroyed.append(item)


def make_pool(size: int, factory: Factory) -> WarmPool[str]:
    return WarmPool(size, factory.create, factory.destroy, key=lambda item: item)


def wait_for(predicate, timeout_s: float = 2.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_released_items_are_reused():
    pool = make_pool(1, Factory())
    first = pool.acquire()
    pool.release(first)
    assert pool.acquire() == first


def test_never_more_items_than_the_size():
    factory = Factory()
    pool = make_pool(2, factory)
    a, b = pool.acquire(), pool.acquire()
    with pytest.raises(TimeoutError):
        pool.acquire(timeout=0.2)
    assert len({a, b}) == 2


def test_a_waiting_caller_gets_the_next_released_item():
    pool = make_pool(1, Factory())
    held = pool.acquire()
    threading.Timer(0.1, pool.release, args=(held,)).start()
    assert pool.acquire(timeout=2) == held


def test_a_discarded_item_is_destroyed_and_replaced_in_the_background():
    factory = Factory()
    pool = make_pool(1, factory)
    broken = pool.acquire()
    pool.discard(broken)
    assert wait_for(lambda: factory.destroyed == [broken])
    replacement = pool.acquire(timeout=2)
    assert replacement != broken


def test_warm_up_fills_the_pool_without_blocking():
    factory = Factory(delay_s=1.0)
    pool = make_pool(2, factory)
    t0 = time.monotonic()
    pool.warm_up()
    assert time.monotonic() - t0 < 0.5  # a blocking warm-up takes the factory's whole second
    assert {pool.acquire(timeout=2), pool.acquire(timeout=2)} == {"item-0", "item-1"}


def test_close_hands_back_everything_and_destroys_late_arrivals():
    factory = Factory(delay_s=0.2)
    pool = make_pool(2, factory)
    pool.warm_up()
    everything = pool.close()  # before the background starts finish
    assert everything == []
    assert wait_for(lambda: sorted(factory.destroyed) == ["item-0", "item-1"])
