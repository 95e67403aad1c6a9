"""Admission control: a bound on items accepted and not yet finished.

Every scoring route (``/score``, ``/openrlhf``, ``/jobs``) reserves its items
before anything is scored and gives them back as they finish. A request that
would take the total past ``REWARD_SERVICE_MAX_PENDING_ITEMS`` gets 429 with
``Retry-After`` and nothing of it is scored; one larger than the limit on its
own could never be admitted, so it gets 413 naming the limit.

Embedded mode counts in this process. Distributed mode counts in Redis, so
every API replica sees one number: each request's reservation is a field of
one hash with an expiry time in a sorted set, checked and added by one Lua
script (atomic, on Redis's clock). The replica that holds reservations renews
them every few seconds; a replica that dies stops renewing, and its
reservations expire ``RESERVATION_TTL_S`` later instead of leaking capacity forever.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import AsyncIterator

from fastapi import HTTPException, Request

from reward_service import metrics
from reward_service.config import Settings
from reward_service.executors.base import BackendUnavailable

log = logging.getLogger(__name__)

RESERVATION_TTL_S = 30.0  # a dead replica's reservations free up this long after its last renewal
RENEW_EVERY_S = 5.0
RETRY_AFTER_S = 2  # what a refused client is told; the client adds its own backoff and jitter

_KEYS = ("rs:admission:held", "rs:admission:expires", "rs:admission:total")

# KEYS: held (hash id -> items), expires (zset id -> Unix time), total (string)
# ARGV: limit, items, id, ttl_s.  Returns {admitted 0/1, total after}.
_ACQUIRE = """
if redis.replicate_commands then redis.replicate_commands() end  -- Redis < 7: TIME before writes
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(gone) do
  local n = redis.call('HGET', KEYS[1], id)
  if n then
    redis.call('DECRBY', KEYS[3], n)
    redis.call('HDEL', KEYS[1], id)
  end
  redis.call('ZREM', KEYS[2], id)
end
local total = tonumber(redis.call('GET', KEYS[3]) or '0')
if total < 0 then total = 0; redis.call('SET', KEYS[3], 0) end
local n = tonumber(ARGV[2])
if total + n > tonumber(ARGV[1]) then
  return {0, total}
end
redis.call('HSET', KEYS[1], ARGV[3], n)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
return {1, redis.call('INCRBY', KEYS[3], n)}
"""

# ARGV: id, items to give back. Returns the total after.
_RELEASE = """
local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local n = math.min(held, tonumber(ARGV[2]))
if n >= held then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('HINCRBY', KEYS[1], ARGV[1], -n)
end
if n > 0 then return redis.call('DECRBY', KEYS[3], n) end
return tonumber(redis.call('GET', KEYS[3]) or '0')
"""

# ARGV: ttl_s, ids... Pushes each live reservation's expiry forward (XX: never revives an expired one).
_RENEW = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1e6 + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[2], 'XX', until_, ARGV[i])
end
return tonumber(redis.call('GET', KEYS[3]) or '0')
"""


class Reservation:
    """Items of one request counted as pending until released (all at once or in parts)."""

    def __init__(self, gate: Admission, rid: str, items: int) -> None:
        self._gate, self.id, self.items = gate, rid, items

    async def release(self, items: int | None = None) -> None:
        n = self.items if items is None else min(items, self.items)
        if n <= 0:
            return
        self.items -= n
        await self._gate._release(self, n)


class Admission:
    """The in-process counter (embedded mode)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._total = 0
        self._lock = threading.Lock()

    async def start(self) -> Admission:
        return self

    async def stop(self) -> None:
        pass

    async def acquire(self, items: int) -> Reservation:
        """A reservation for ``items``, or HTTPException 413 (never fits) / 429 (not now)."""
        self._check_size(items)
        made, total = await self._try(uuid.uuid4().hex, items)
        metrics.PENDING_ITEMS.set(total)
        if made is None:
            metrics.ADMISSION_REFUSALS.labels("overloaded").inc()
            raise HTTPException(429, f"{total} items pending; {items} more would pass the limit of {self.limit} "
                                     "(REWARD_SERVICE_MAX_PENDING_ITEMS): retry later",
                                headers={"Retry-After": str(RETRY_AFTER_S)})
        return made

    @contextlib.asynccontextmanager
    async def hold(self, items: int) -> AsyncIterator[Reservation]:
        """Reserve ``items`` for the duration of the block."""
        r = await self.acquire(items)
        try:
            yield r
        finally:
            await _shielded(r.release())

    def _check_size(self, items: int) -> None:
        if items > self.limit:
            metrics.ADMISSION_REFUSALS.labels("too_large").inc()
            raise HTTPException(413, f"{items} items; at most {self.limit} can be pending at once "
                                     "(REWARD_SERVICE_MAX_PENDING_ITEMS)")

    async def _try(self, rid: str, items: int) -> tuple[Reservation | None, int]:
        """(the reservation, or None when refused; the pending total)."""
        with self._lock:
            if self._total + items > self.limit:
                return None, self._total
            self._total += items
            return Reservation(self, rid, items), self._total

    async def _release(self, r: Reservation, items: int) -> None:
        with self._lock:
            self._total -= items
            total = self._total
        metrics.PENDING_ITEMS.set(total)


class RedisAdmission(Admission):
    """The count shared by every API replica (distributed mode)."""

    def __init__(self, limit: int, url: str, timeout_s: float) -> None:
        super().__init__(limit)
        import redis.asyncio as aioredis

        self._r = aioredis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        self._acquire = self._r.register_script(_ACQUIRE)
        self._release_script = self._r.register_script(_RELEASE)
        self._renew = self._r.register_script(_RENEW)
        self._live: dict[str, Reservation] = {}
        self._renewer: asyncio.Task | None = None

    async def start(self) -> Admission:
        self._renewer = asyncio.create_task(self._renew_forever())
        return self

    async def stop(self) -> None:
        if self._renewer:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        for r in list(self._live.values()):  # a clean stop gives its capacity back at once
            with contextlib.suppress(Exception):
                await r.release()
        await self._r.aclose()

    async def _try(self, rid: str, items: int) -> tuple[Reservation | None, int]:
        import redis

        try:
            ok, total = await self._acquire(keys=_KEYS, args=[self.limit, items, rid, RESERVATION_TTL_S])
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            raise BackendUnavailable(f"admission control (Redis) is unreachable: {e}; retry later") from None
        if not ok:
            return None, int(total)
        made = self._live[rid] = Reservation(self, rid, items)
        return made, int(total)

    async def _release(self, r: Reservation, items: int) -> None:
        if r.items <= 0:
            self._live.pop(r.id, None)
        try:
            total = await self._release_script(keys=_KEYS, args=[r.id, items])
        except Exception as e:  # Redis away: the reservation expires on its own once we stop renewing it
            self._live.pop(r.id, None)
            log.warning("admission: could not release %d item(s) (%s); they free up within %g s",
                        items, e, RESERVATION_TTL_S)
            return
        metrics.PENDING_ITEMS.set(int(total))

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY_S)
            try:
                total = await self._renew(keys=_KEYS, args=[RESERVATION_TTL_S, *self._live])
                metrics.PENDING_ITEMS.set(int(total))
            except Exception as e:  # keep trying: reservations outlive a blip of RESERVATION_TTL_S
                log.warning("admission: could not renew reservations: %s", e)


def make_admission(settings: Settings) -> Admission:
    if settings.redis_url:
        return RedisAdmission(settings.max_pending_items, settings.redis_url, settings.redis_timeout_s)
    return Admission(settings.max_pending_items)


def admission(request: Request) -> Admission:
    gate = getattr(request.app.state, "admission", None)
    if gate is None:
        raise HTTPException(503, "scoring backend not started")
    return gate


async def _shielded(aw) -> None:
    # A cancelled request (client gone) must still give its items back.
    task = asyncio.ensure_future(aw)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
