"""Results of earlier requests, answered again without scoring.

The key is a hash of everything the verdict depends on: task, the
verifier's version, completion, ground truth, options and prompt. Only
verdicts that would come out the same next time are stored: status ``ok``
with no timeout anywhere in the detail (a code test that hit its limit under
load could pass on a quieter machine). Two stores, one interface:

- ``MemoryCache``: an in-process LRU (embedded mode: this process is the service);
- ``RedisCache``: ``rs:cache:<sha256>`` strings with a TTL, indexed by store time
  in ``rs:cache:index`` so the oldest beyond the size bound are dropped; every
  API replica reads and writes it, so a result scored through one is a hit on all.

Lookups and stores happen in the API process, before enqueueing and after
gathering, so workers never score a cached item. A store that fails (Redis
away) is a miss, never a failed request.
"""
from __future__ import annotations

import collections
import hashlib
import json
import logging
import time
from typing import Any, Protocol

from reward_service import metrics
from reward_service.config import Settings
from reward_service.executors.base import Job, Outcome

log = logging.getLogger(__name__)

KEY_PREFIX = "rs:cache:"
INDEX_KEY = "rs:cache:index"


def cache_key(job: Job, version: str) -> str:
    blob = json.dumps([job.task, version, job.completion, job.ground_truth, job.options, job.prompt],
                      sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def _timed_out_inside(value: Any, depth: int = 0) -> bool:
    """A ``status``/``statuses`` entry saying ``timeout`` anywhere in a verdict's detail."""
    if depth > 4:
        return False
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "status" and isinstance(v, str) and "timeout" in v:
                return True
            if k == "statuses" and isinstance(v, dict) and any("timeout" in str(s) for s in v):
                return True
            if isinstance(v, (dict, list)) and _timed_out_inside(v, depth + 1):
                return True
    elif isinstance(value, list):
        return any(_timed_out_inside(v, depth + 1) for v in value[:64])
    return False


def cacheable(o: Outcome) -> bool:
    return o.status == "ok" and not _timed_out_inside(o.detail)


class ResultCache(Protocol):
    async def get_many(self, keys: list[str]) -> list[Outcome | None]: ...
    async def put_many(self, entries: list[tuple[str, Outcome]]) -> None: ...
    async def close(self) -> None: ...


class MemoryCache:
    def __init__(self, max_items: int, ttl_s: float) -> None:
        self.max_items, self.ttl_s = max_items, ttl_s
        self._d: collections.OrderedDict[str, tuple[float, Outcome]] = collections.OrderedDict()

    async def get_many(self, keys: list[str]) -> list[Outcome | None]:
        now, out = time.monotonic(), []
        for k in keys:
            hit = self._d.get(k)
            if hit is not None and hit[0] <= now:
                del self._d[k]
                hit = None
            if hit is not None:
                self._d.move_to_end(k)
            out.append(hit[1] if hit else None)
        return out

    async def put_many(self, entries: list[tuple[str, Outcome]]) -> None:
        expires = time.monotonic() + self.ttl_s
        for k, o in entries:
            self._d[k] = (expires, o)
            self._d.move_to_end(k)
        while len(self._d) > self.max_items:
            self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)

    async def close(self) -> None:
        pass


def _dump(o: Outcome) -> bytes:
    return json.dumps({"reward": o.reward, "status": o.status, "detail": o.detail, "elapsed_ms": o.elapsed_ms},
                      default=str).encode()


def _load(raw: bytes) -> Outcome:
    d = json.loads(raw)
    return Outcome(float(d["reward"]), d["status"], d.get("detail") or {}, float(d.get("elapsed_ms", 0.0)))


class RedisCache:
    def __init__(self, url: str, max_items: int, ttl_s: float, timeout_s: float) -> None:
        import redis.asyncio as aioredis

        self.max_items, self.ttl_s = max_items, max(1, int(ttl_s))
        self._r = aioredis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)

    async def get_many(self, keys: list[str]) -> list[Outcome | None]:
        import redis

        if not keys:
            return []
        try:
            raws = await self._r.mget([KEY_PREFIX + k for k in keys])
        except (redis.RedisError, OSError) as e:
            metrics.CACHE_ERRORS.inc()
            log.warning("result cache (Redis) unreachable, scoring without it: %s", e)
            return [None] * len(keys)
        out: list[Outcome | None] = []
        for raw in raws:
            try:
                out.append(_load(raw) if raw else None)
            except (ValueError, KeyError, TypeError):  # written by an incompatible version: a miss
                out.append(None)
        return out

    async def put_many(self, entries: list[tuple[str, Outcome]]) -> None:
        import redis

        if not entries:
            return
        now = time.time()
        try:
            async with self._r.pipeline(transaction=False) as p:
                for k, o in entries:
                    p.set(KEY_PREFIX + k, _dump(o), ex=self.ttl_s)
                # distinct scores, so trimming drops the earliest of a batch, not an arbitrary one of a tie
                p.zadd(INDEX_KEY, {k: now + i * 1e-6 for i, (k, _) in enumerate(entries)})
                p.zremrangebyscore(INDEX_KEY, "-inf", now - self.ttl_s)  # their values expired by themselves
                p.zcard(INDEX_KEY)
                size = (await p.execute())[-1]
            if size > self.max_items:
                oldest = [k for k, _ in await self._r.zpopmin(INDEX_KEY, size - self.max_items)]
                if oldest:
                    await self._r.delete(*(KEY_PREFIX + k.decode() for k in oldest))
        except (redis.RedisError, OSError) as e:
            metrics.CACHE_ERRORS.inc()
            log.warning("result cache (Redis) unreachable, results not stored: %s", e)

    async def close(self) -> None:
        await self._r.aclose()


def make_cache(settings: Settings) -> ResultCache | None:
    if not settings.cache_enabled:
        return None
    if settings.redis_url:
        return RedisCache(settings.redis_url, settings.cache_max_items, settings.cache_ttl_s, settings.redis_timeout_s)
    return MemoryCache(settings.cache_max_items, settings.cache_ttl_s)
