"""Running pass rates per prompt across requests (ProRL-style difficulty filtering).

For every item with a ``prompt_id`` the service counts samples, the sum of
raw rewards and how many were solved (raw reward 1.0). Only samples the
verifier judged (status ``ok``) enter the means; failed ones are counted apart
(``not_ok``), so a sandbox outage doesn't make a prompt look unsolvable.

- ``MemoryPromptStats``: embedded mode; least recently seen prompts go first
  past the size bound; optionally persisted to a JSONL file (the same lines
  ``reward-service prompts export`` writes), loaded at start and rewritten
  at most every ``flush_s`` and at shutdown.
- ``RedisPromptStats``: distributed mode; a hash ``rs:prompt:<id>`` per prompt
  (atomic increments, so every replica adds to the same counts) with a TTL,
  and ``rs:prompts``, a sorted set by last seen, to bound their number and
  to list them for export.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from reward_service import metrics
from reward_service.config import Settings
from reward_service.executors.base import BackendUnavailable
from reward_service.models import PromptStats

log = logging.getLogger(__name__)

HASH_PREFIX = "rs:prompt:"
INDEX_KEY = "rs:prompts"
EXPORT_PAGE = 1000


@dataclass
class Tally:
    """What one request adds to one prompt."""

    samples: int = 0
    reward_sum: float = 0.0
    solved: int = 0
    not_ok: int = 0

    def add(self, ok: bool, raw_reward: float) -> None:
        if ok:
            self.samples += 1
            self.reward_sum += raw_reward
            self.solved += raw_reward == 1.0
        else:
            self.not_ok += 1


def _stats(prompt_id: str, samples: int, reward_sum: float, solved: int, not_ok: int, first: float,
           last: float) -> PromptStats:
    return PromptStats(prompt_id=prompt_id, samples=samples, mean_reward=reward_sum / samples if samples else 0.0,
                       solved=solved / samples if samples else 0.0, not_ok=not_ok, first_seen=first, last_seen=last)


class PromptStatsStore(Protocol):
    async def record(self, tallies: dict[str, Tally]) -> None: ...
    async def get_many(self, prompt_ids: list[str]) -> dict[str, PromptStats]: ...
    async def export(self) -> list[PromptStats]: ...
    async def close(self) -> None: ...


class MemoryPromptStats:
    def __init__(self, max_prompts: int, ttl_s: float, path: str | None = None, flush_s: float = 30.0) -> None:
        self.max_prompts, self.ttl_s, self.path, self.flush_s = max_prompts, ttl_s, path, flush_s
        # id -> [samples, reward_sum, solved, not_ok, first_seen, last_seen], least recently seen first
        self._d: collections.OrderedDict[str, list] = collections.OrderedDict()
        self._dirty = False
        self._last_flush = time.monotonic()
        self._flushing: asyncio.Task | None = None
        if path and os.path.exists(path):
            self._load(path)

    def _load(self, path: str) -> None:
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(PromptStats.model_validate_json(line))
                    except ValueError as e:
                        log.warning("%s:%d: not a prompt-stats line, skipped: %s", path, n, e)
        for s in sorted(rows, key=lambda s: s.last_seen):
            self._d[s.prompt_id] = [s.samples, s.mean_reward * s.samples, round(s.solved * s.samples), s.not_ok,
                                    s.first_seen, s.last_seen]
        self._purge(time.time())

    def _purge(self, now: float) -> None:
        while self._d:
            k, v = next(iter(self._d.items()))
            if v[5] >= now - self.ttl_s and len(self._d) <= self.max_prompts:
                break
            del self._d[k]

    async def record(self, tallies: dict[str, Tally]) -> None:
        if not tallies:
            return
        now = time.time()
        for pid, t in tallies.items():
            v = self._d.pop(pid, None) or [0, 0.0, 0, 0, now, now]
            v[0] += t.samples
            v[1] += t.reward_sum
            v[2] += t.solved
            v[3] += t.not_ok
            v[5] = now
            self._d[pid] = v
        self._purge(now)
        self._dirty = True
        if self.path and time.monotonic() - self._last_flush >= self.flush_s and not self._flushing:
            self._flushing = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            lines = self._lines()
            self._dirty, self._last_flush = False, time.monotonic()
            await asyncio.to_thread(_write_atomically, self.path, lines)
        except OSError as e:
            self._dirty = True
            log.warning("could not write prompt stats to %s: %s", self.path, e)
        finally:
            self._flushing = None

    def _lines(self) -> list[str]:
        return [s.model_dump_json() + "\n" for s in self._all()]

    def _all(self) -> list[PromptStats]:
        return [_stats(k, *v) for k, v in self._d.items()]

    async def get_many(self, prompt_ids: list[str]) -> dict[str, PromptStats]:
        self._purge(time.time())
        return {pid: _stats(pid, *self._d[pid]) for pid in prompt_ids if pid in self._d}

    async def export(self) -> list[PromptStats]:
        self._purge(time.time())
        return self._all()

    async def close(self) -> None:
        if self._flushing:
            await self._flushing
        if self.path and self._dirty:
            await self._flush()


def _write_atomically(path: str, lines: Iterable[str]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".prompt-stats-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class RedisPromptStats:
    def __init__(self, url: str, max_prompts: int, ttl_s: float, timeout_s: float) -> None:
        import redis.asyncio as aioredis

        self.max_prompts, self.ttl_s = max_prompts, max(1, int(ttl_s))
        self._r = aioredis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)

    async def record(self, tallies: dict[str, Tally]) -> None:
        import redis

        if not tallies:
            return
        now = time.time()
        try:
            async with self._r.pipeline(transaction=False) as p:
                for pid, t in tallies.items():
                    key = HASH_PREFIX + pid
                    p.hincrby(key, "samples", t.samples)
                    p.hincrbyfloat(key, "reward_sum", t.reward_sum)
                    p.hincrby(key, "solved", t.solved)
                    p.hincrby(key, "not_ok", t.not_ok)
                    p.hsetnx(key, "first_seen", now)
                    p.hset(key, "last_seen", now)
                    p.expire(key, self.ttl_s)
                p.zadd(INDEX_KEY, {pid: now + i * 1e-6 for i, pid in enumerate(tallies)})
                p.zremrangebyscore(INDEX_KEY, "-inf", now - self.ttl_s)  # their hashes expired by themselves
                p.zcard(INDEX_KEY)
                size = (await p.execute())[-1]
            if size > self.max_prompts:
                dropped = [k for k, _ in await self._r.zpopmin(INDEX_KEY, size - self.max_prompts)]
                if dropped:
                    await self._r.delete(*(HASH_PREFIX + k.decode() for k in dropped))
        except (redis.RedisError, OSError) as e:  # the rewards are right without them; say so and go on
            metrics.PROMPT_STATS_ERRORS.inc()
            log.warning("prompt stats (Redis) unreachable, this request's samples not counted: %s", e)

    async def _read(self, prompt_ids: list[str]) -> dict[str, PromptStats]:
        import redis

        try:
            async with self._r.pipeline(transaction=False) as p:
                for pid in prompt_ids:
                    p.hgetall(HASH_PREFIX + pid)
                rows = await p.execute()
        except (redis.RedisError, OSError) as e:
            raise BackendUnavailable(f"the prompt-stats store (Redis) is unreachable: {e}") from None
        out = {}
        for pid, h in zip(prompt_ids, rows):
            if h and b"last_seen" in h:
                out[pid] = _stats(pid, int(h.get(b"samples", 0)), float(h.get(b"reward_sum", 0)),
                                  int(h.get(b"solved", 0)), int(h.get(b"not_ok", 0)),
                                  float(h.get(b"first_seen", 0)), float(h[b"last_seen"]))
        return out

    async def get_many(self, prompt_ids: list[str]) -> dict[str, PromptStats]:
        return await self._read(list(dict.fromkeys(prompt_ids))) if prompt_ids else {}

    async def export(self) -> list[PromptStats]:
        import redis

        # ZSCAN, not ranks: replicas reorder the index while we page through it; a scan still
        # returns every prompt present throughout (perhaps twice, hence the dict).
        out: dict[str, PromptStats] = {}
        cursor = 0
        try:
            while True:
                cursor, page = await self._r.zscan(INDEX_KEY, cursor, count=EXPORT_PAGE)
                ids = [k.decode() for k, _ in page]
                if ids:
                    out.update(await self._read(ids))
                if cursor == 0:
                    return sorted(out.values(), key=lambda s: s.last_seen)
        except (redis.RedisError, OSError) as e:
            raise BackendUnavailable(f"the prompt-stats store (Redis) is unreachable: {e}") from None

    async def close(self) -> None:
        await self._r.aclose()


def make_prompt_stats(settings: Settings) -> PromptStatsStore:
    if settings.redis_url:
        return RedisPromptStats(settings.redis_url, settings.prompt_stats_max_prompts, settings.prompt_stats_ttl_s,
                                settings.redis_timeout_s)
    return MemoryPromptStats(settings.prompt_stats_max_prompts, settings.prompt_stats_ttl_s,
                             settings.prompt_stats_file, settings.prompt_stats_flush_s)
