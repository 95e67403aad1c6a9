"""One ``/score`` request for many concurrent one-item calls in the same event loop.

Trainers that score per sample (verl >= 0.9's reward loop awaits one ``compute_score``
per response, all of a chunk at once) would otherwise cost a round trip per response
and send a GRPO group's identical answers as separate requests. :class:`ScoreCoalescer`
collects the calls that arrive close together and sends them as one batch:

- a batch goes once no call has joined it for ``window_s`` (so a burst is caught whole
  however long it takes to arrive), at the latest ``max_delay_s`` after its first call,
  and at once when it holds ``max_items``;
- identical items in a batch are sent once (a GRPO group's repeated answers);
- each call gets its own result, or its own error: an item the service refuses as
  invalid is isolated by sending the batch's items one by one, so it fails alone;
- every call has a hard deadline, whatever the network does.

State lives per event loop and per process (a forked or Ray worker makes its own), and
is created on first use; this module holds it in module globals only because the module
is importable by name, so pickling a function that uses it (Ray, cloudpickle) pickles a
reference to it, never the state.
"""
from __future__ import annotations

import asyncio
import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from reward_service.client import AsyncRewardClient, RequestTooLarge, RewardServiceError, ValidationFailed
from reward_service.models import Item, Result

__all__ = ["CoalesceConfig", "ScoreCoalescer", "coalescer_for"]

# Requests in flight at once while a refused batch is resent item by item.
ISOLATION_CONCURRENCY = 8


@dataclass(frozen=True)
class CoalesceConfig:
    """How long calls wait for company and how big a batch gets.

    ``window_s <= 0`` or ``max_items == 1`` sends every call on its own. ``deadline_s`` bounds
    each call from its arrival (None: the client's HTTP timeout plus slack for retries).
    """

    window_s: float = 0.005
    max_delay_s: float = 0.1
    max_items: int = 512
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_items < 1 or self.max_delay_s < 0:
            raise ValueError("max_items must be >= 1 and max_delay_s >= 0")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ValueError("deadline_s must be > 0")


@dataclass(eq=False)
class _Batch:
    timeout_s: float | None
    first: float
    items: list[Item] = field(default_factory=list)
    futures: list[asyncio.Future[Result]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


def _consume(future: asyncio.Future[Any]) -> None:
    # A caller that gave up (deadline, cancellation) never reads its future: mark the
    # error as seen so asyncio doesn't log it as lost.
    if not future.cancelled():
        future.exception()


class ScoreCoalescer:
    """Batches :meth:`score` calls made in one event loop into few requests of ``client``."""

    def __init__(self, client: AsyncRewardClient, config: CoalesceConfig | None = None) -> None:
        self.client = client
        self.config = config or CoalesceConfig()
        self._open: dict[float | None, _Batch] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self.requests_sent = 0  # batches handed to the client (isolation retries not counted)

    def _deadline(self, timeout_s: float | None) -> float:
        if self.config.deadline_s is not None:
            return self.config.deadline_s
        # The client gives the service's batch deadline 30 s of slack on the read; the rest
        # covers a retry or two after a refused connection.
        read = self.client.timeout if timeout_s is None else max(self.client.timeout, timeout_s + 30.0)
        return read + 60.0

    async def score(self, item: Item, *, timeout_s: float | None = None) -> Result:
        """This item's result, scored in a batch with the calls around it."""
        loop = asyncio.get_running_loop()
        deadline = self._deadline(timeout_s)
        future: asyncio.Future[Result] = loop.create_future()
        future.add_done_callback(_consume)
        self._join(loop, item, future, timeout_s)
        try:
            # shield: one caller's timeout or cancellation must not cancel its batch-mates' future.
            return await asyncio.wait_for(asyncio.shield(future), deadline + self.config.max_delay_s)
        except asyncio.TimeoutError:
            raise RewardServiceError(f"no reward from {self.client.url} within {deadline:.0f} s") from None

    def _join(self, loop: asyncio.AbstractEventLoop, item: Item, future: asyncio.Future[Result],
              timeout_s: float | None) -> None:
        cfg = self.config
        batch = self._open.get(timeout_s)
        if batch is None:
            batch = self._open[timeout_s] = _Batch(timeout_s, loop.time())
        batch.items.append(item)
        batch.futures.append(future)
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        if cfg.window_s <= 0 or len(batch.items) >= cfg.max_items:
            self._flush(batch)
            return
        when = min(loop.time() + cfg.window_s, batch.first + cfg.max_delay_s)
        batch.timer = loop.call_at(when, self._flush, batch)

    def _flush(self, batch: _Batch) -> None:
        if self._open.get(batch.timeout_s) is batch:
            del self._open[batch.timeout_s]
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: _Batch) -> None:
        # Identical items get one slot: the service would score them once anyway.
        slot: dict[str, int] = {}
        unique: list[Item] = []
        where: list[int] = []
        for item in batch.items:
            key = item.model_dump_json(exclude_none=True)
            if key not in slot:
                slot[key] = len(unique)
                unique.append(item)
            where.append(slot[key])
        self.requests_sent += 1
        try:
            outcomes = await asyncio.wait_for(self._score(unique, batch.timeout_s), self._deadline(batch.timeout_s))
        except asyncio.TimeoutError:
            error: BaseException = RewardServiceError(
                f"no reward from {self.client.url} within {self._deadline(batch.timeout_s):.0f} s")
            outcomes = [error] * len(unique)
        except Exception as e:  # the service down, a 401: every call of the batch has the same error
            outcomes = [e] * len(unique)
        except asyncio.CancelledError:
            for f in batch.futures:
                f.cancel()
            raise
        for future, i in zip(batch.futures, where):
            if future.done():
                continue
            if isinstance(outcomes[i], BaseException):
                future.set_exception(outcomes[i])
            else:
                future.set_result(outcomes[i])

    async def _score(self, items: list[Item], timeout_s: float | None) -> list[Result | BaseException]:
        try:
            return list(await self.client.score(items, timeout_s=timeout_s))
        except (ValidationFailed, RequestTooLarge):
            if len(items) == 1:
                raise
        # The service refused the batch for what is in it: one by one, so the refusal
        # lands on the item that earned it and the others still get rewards.
        gate = asyncio.Semaphore(ISOLATION_CONCURRENCY)

        async def alone(item: Item) -> Result:
            async with gate:
                return (await self.client.score([item], timeout_s=timeout_s))[0]

        return list(await asyncio.gather(*(alone(it) for it in items), return_exceptions=True))


# (pid, url, api key, config) -> coalescer, per event loop.
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], ScoreCoalescer]] = (
    weakref.WeakKeyDictionary())
_lock = threading.Lock()


def coalescer_for(url: str, api_key: str | None, config: CoalesceConfig | None = None) -> ScoreCoalescer:
    """The running loop's coalescer for this service and configuration, made on first use."""
    loop = asyncio.get_running_loop()
    config = config or CoalesceConfig()
    key = (os.getpid(), url, api_key, config)
    with _lock:
        per_loop = _by_loop.setdefault(loop, {})
        found = per_loop.get(key)
        if found is None:
            # A client keeps a reference to its loop, so weak keys alone never let a closed
            # loop's entry go (a process that runs asyncio.run per step makes one loop each time).
            for old in [lp for lp in _by_loop if lp.is_closed()]:
                del _by_loop[old]
            found = per_loop[key] = ScoreCoalescer(AsyncRewardClient(url, api_key), config)
        return found
