"""Python client for the reward service's ``POST /score``.

One implementation of chunking and retries, in :class:`AsyncRewardClient`;
:class:`RewardClient` drives that same code on a private event loop in a
daemon thread, so it works from plain scripts, from threads, and from code that
already runs inside an event loop (Jupyter, async trainers) alike.

    with RewardClient("http://localhost:8000") as rc:
        results = rc.score([{"task": "math", "completion": r"\\boxed{4}", "ground_truth": "4"}])
        results[0].reward  # 1.0

GRPO-aware scoring: give items a ``group`` (and a ``prompt_id``), and use
``score_response`` for the per-group statistics too. Chunks never split a
group, so advantages are computed over whole groups whatever ``chunk_size`` is.
"""
from __future__ import annotations

import asyncio
import os
import random
import threading
import weakref
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from reward_service.models import (Advantage, GroupStats, Item, PromptStats, PromptStatsResponse, Result,
                                   ScoreResponse, Shaping, Summary, TaskInfo, TasksResponse)

__all__ = [
    "AsyncRewardClient",
    "AuthError",
    "RequestTooLarge",
    "RewardClient",
    "RewardServiceError",
    "ServiceUnavailable",
    "ValidationFailed",
    "shared_client",
]

ItemLike = Item | Mapping[str, Any]
T = TypeVar("T")

# Statuses that say "the service is (momentarily) not there", not "your request
# is wrong": sending the same body again later can succeed.
RETRY_STATUSES = frozenset({429, 502, 503, 504})


class RewardServiceError(Exception):
    """The service refused or failed a request; ``detail`` is the server's ``detail``."""

    def __init__(self, message: str, *, status_code: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class AuthError(RewardServiceError):
    """401/403: the API key is missing or wrong."""


class RequestTooLarge(RewardServiceError):
    """413: too many items or too big a body even for one chunk; lower ``chunk_size``."""


class ValidationFailed(RewardServiceError):
    """422 from the server, or an item that fails the wire model before sending."""


class ServiceUnavailable(RewardServiceError):
    """502/503/504/429 or a connection failure that outlasted every retry."""


_ERRORS_BY_STATUS: dict[int, type[RewardServiceError]] = {
    401: AuthError,
    403: AuthError,
    413: RequestTooLarge,
    422: ValidationFailed,
}


def _to_item(item: ItemLike) -> Item:
    if isinstance(item, Item):
        return item
    try:
        return Item.model_validate(item)
    except ValidationError as e:
        raise ValidationFailed(f"invalid item: {e.error_count()} problem(s)", detail=e.errors(include_url=False)) from e


def _payload(items: Sequence[Item], timeout_s: float | None, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"items": [it.model_dump(mode="json", exclude_none=True) for it in items]}
    if timeout_s is not None:
        body["timeout_s"] = timeout_s
    body.update(options or {})
    return body


def _options(advantage: Advantage | None, shaping: Shaping | Mapping[str, Any] | None,
             cache: bool | None) -> dict[str, Any]:
    """The request options that were given, as JSON (the server's defaults apply to the rest)."""
    out: dict[str, Any] = {}
    if advantage is not None:
        out["advantage"] = advantage
    if shaping is not None:
        try:
            model = shaping if isinstance(shaping, Shaping) else Shaping.model_validate(shaping)
        except ValidationError as e:
            raise ValidationFailed(f"invalid shaping: {e.error_count()} problem(s)",
                                   detail=e.errors(include_url=False)) from e
        out["shaping"] = model.model_dump(mode="json", exclude_none=True)
    if cache is not None:
        out["cache"] = cache
    return out


def _chunks(batch: list[Item], size: int) -> list[list[int]]:
    """Indices per request: runs of ``size``, but never splitting a group (its advantages need all of it)."""
    if all(it.group is None for it in batch):
        return [list(range(i, min(i + size, len(batch)))) for i in range(0, len(batch), size)]
    units: dict[Any, list[int]] = {}
    for i, it in enumerate(batch):
        units.setdefault(("g", it.group) if it.group is not None else ("i", i), []).append(i)
    chunks: list[list[int]] = [[]]
    for idx in units.values():
        if chunks[-1] and len(chunks[-1]) + len(idx) > size:
            chunks.append([])
        chunks[-1] += idx  # a group larger than size goes alone, whole
    return chunks


def _merge(parts: list[ScoreResponse], order: list[list[int]], n: int) -> ScoreResponse:
    if len(parts) == 1 and order[0] == list(range(n)):
        return parts[0]
    results: list[Result | None] = [None] * n
    groups: dict[str, GroupStats] = {}
    by_status: dict[str, int] = {}
    for part, idx in zip(parts, order):
        for i, r in zip(idx, part.results):
            results[i] = r
        groups.update(part.groups)
        for k, v in part.summary.by_status.items():
            by_status[k] = by_status.get(k, 0) + v
    done = [r for r in results if r is not None]
    return ScoreResponse(results=done, groups=groups, summary=Summary(
        count=len(done), mean_reward=sum(r.reward for r in done) / len(done) if done else 0.0, by_status=by_status,
        elapsed_ms=max(p.summary.elapsed_ms for p in parts), unique_items=sum(p.summary.unique_items for p in parts)))


def _error_for(response: httpx.Response) -> RewardServiceError:
    try:
        detail = response.json().get("detail")
    except Exception:
        detail = response.text[:2000] or None
    cls = _ERRORS_BY_STATUS.get(response.status_code, RewardServiceError)
    if response.status_code in RETRY_STATUSES:
        cls = ServiceUnavailable
    msg = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    if detail:
        msg += f": {detail}"
    return cls(msg, status_code=response.status_code, detail=detail)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:  # the HTTP-date form: not worth parsing for a short outage
        return None


def _parse_response(response: httpx.Response, expected: int) -> ScoreResponse:
    try:
        parsed = ScoreResponse.model_validate(response.json())
    except ValueError as e:  # not JSON, or not a ScoreResponse (a proxy's error page, a wrong URL)
        raise RewardServiceError(f"unexpected answer from {response.request.url}: {e}",
                                 status_code=response.status_code) from e
    if len(parsed.results) != expected:
        raise RewardServiceError(
            f"service returned {len(parsed.results)} results for {expected} items", status_code=response.status_code
        )
    return parsed


class AsyncRewardClient:
    """Async client; ``score`` splits big batches into chunks sent concurrently.

    ``retries`` is the number of extra attempts per request after a 429/502/503/504
    or a connection failure, with exponential backoff from ``backoff_s`` (doubling,
    capped at ``max_backoff_s``, with jitter so many trainer workers don't retry in step).
    A read timeout is not retried: the service got the batch and is still busy with it.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 300.0,
        chunk_size: int = 1000,
        max_concurrency: int = 4,
        retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        if chunk_size < 1 or max_concurrency < 1 or retries < 0:
            raise ValueError("chunk_size and max_concurrency must be >= 1 and retries >= 0")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.max_concurrency = max_concurrency
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._http: httpx.AsyncClient | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_env(cls, **kwargs: Any) -> AsyncRewardClient:
        """Client for ``REWARD_SERVICE_URL`` (default ``http://127.0.0.1:8000``) and ``REWARD_SERVICE_API_KEY``."""
        return cls(*_env_url_and_key(), **kwargs)

    # -- public API -----------------------------------------------------------------

    async def score(
        self,
        items: Iterable[ItemLike],
        *,
        timeout_s: float | None = None,
        advantage: Advantage | None = None,
        shaping: Shaping | Mapping[str, Any] | None = None,
        cache: bool | None = None,
    ) -> list[Result]:
        """Score items; results come back in the order given, whatever the chunking.

        ``advantage``, ``shaping`` and ``cache`` are the request options of ``POST /score``
        (unset: the server's defaults).
        """
        return (await self.score_response(items, timeout_s=timeout_s, advantage=advantage, shaping=shaping,
                                          cache=cache)).results

    async def score_response(
        self,
        items: Iterable[ItemLike],
        *,
        timeout_s: float | None = None,
        advantage: Advantage | None = None,
        shaping: Shaping | Mapping[str, Any] | None = None,
        cache: bool | None = None,
    ) -> ScoreResponse:
        """Like :meth:`score`, but the whole response: results, summary and per-group statistics."""
        batch = [_to_item(it) for it in items]
        options = _options(advantage, shaping, cache)
        if not batch:
            return ScoreResponse(results=[], summary=Summary(count=0, mean_reward=0.0, by_status={}, elapsed_ms=0.0,
                                                             unique_items=0))
        order = _chunks(batch, self.chunk_size)
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(idx: list[int]) -> ScoreResponse:
            async with gate:
                return await self._score_chunk([batch[i] for i in idx], timeout_s, options)

        tasks = [asyncio.ensure_future(one(c)) for c in order]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            # One chunk failed (e.g. 401): the batch is lost, so stop sending the rest.
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return _merge(list(parts), order, len(batch))

    async def score_one(
        self,
        task: str,
        completion: str,
        ground_truth: Any = None,
        *,
        prompt: str | None = None,
        options: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        cache: bool | None = None,
    ) -> Result:
        # A dict, not an Item: a bad field should raise ValidationFailed like score() does.
        item = dict(task=task, completion=completion, ground_truth=ground_truth, prompt=prompt, options=options)
        return (await self.score([item], timeout_s=timeout_s, cache=cache))[0]

    async def tasks(self) -> list[TaskInfo]:
        response = await self._request("GET", "/tasks")
        return TasksResponse.model_validate(response.json()).tasks

    async def prompt_stats(self, prompt_ids: Iterable[str]) -> dict[str, PromptStats]:
        """Pass rates of these prompts (``POST /prompts/stats``); unknown ids are left out."""
        ids = list(prompt_ids)
        found: dict[str, PromptStats] = {}
        for i in range(0, len(ids), self.chunk_size):
            response = await self._request("POST", "/prompts/stats", json={"prompt_ids": ids[i : i + self.chunk_size]})
            found.update(PromptStatsResponse.model_validate(response.json()).prompts)
        return found

    async def healthz(self) -> dict[str, Any]:
        response = await self._request("GET", "/healthz")
        return response.json()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- internals ------------------------------------------------------------------

    async def _score_chunk(self, chunk: list[Item], timeout_s: float | None,
                           options: Mapping[str, Any] | None = None) -> ScoreResponse:
        # The batch deadline is the server's; give the HTTP read that long plus slack
        # so the client doesn't give up on an answer the server is about to send.
        read_timeout = self.timeout if timeout_s is None else max(self.timeout, timeout_s + 30.0)
        response = await self._request("POST", "/score", json=_payload(chunk, timeout_s, options),
                                       read_timeout=read_timeout)
        return _parse_response(response, len(chunk))

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._http is None or self._http_loop is not loop:
            # httpx connections belong to the loop that opened them: a client reused
            # under a new loop (a second asyncio.run, a forked child) needs its own.
            self._http_loop = loop
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=self.timeout)
        return self._http

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        base = min(self.backoff_s * (2**attempt), self.max_backoff_s)
        backoff = base / 2 + random.uniform(0, base / 2)
        hinted = _retry_after(response) if response is not None else None
        if hinted is not None:
            # The server's Retry-After (429: overloaded, 503) is the floor; the growing backoff and a
            # little jitter on top keep many refused trainer workers from coming back in step.
            return min(max(hinted, backoff) + random.uniform(0, hinted / 4), self.max_backoff_s)
        return backoff

    async def _request(
        self, method: str, path: str, *, json: Any = None, read_timeout: float | None = None
    ) -> httpx.Response:
        timeout = httpx.Timeout(self.timeout, read=read_timeout) if read_timeout else httpx.USE_CLIENT_DEFAULT
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = await self._client().request(method, path, json=json, timeout=timeout)
            except httpx.ReadTimeout as e:
                raise RewardServiceError(f"{method} {path}: no answer within {read_timeout or self.timeout}s") from e
            except httpx.TransportError as e:
                if last:
                    raise ServiceUnavailable(f"{method} {self.url}{path}: {type(e).__name__}: {e}") from e
                await asyncio.sleep(self._delay(attempt, None))
                continue
            if response.status_code in RETRY_STATUSES and not last:
                await asyncio.sleep(self._delay(attempt, response))
                continue
            if response.is_success:
                return response
            raise _error_for(response)
        raise AssertionError("unreachable")  # the loop always returns or raises on its last attempt


def _env_url_and_key() -> tuple[str, str | None]:
    url = os.environ.get("REWARD_SERVICE_URL", "http://127.0.0.1:8000")
    return url, os.environ.get("REWARD_SERVICE_API_KEY") or None


class _LoopThread:
    """An event loop running forever in a daemon thread; coroutines are submitted to it."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="reward-client", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    @staticmethod
    def stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
        if not loop.is_running() and not loop.is_closed():
            loop.close()


class RewardClient:
    """Blocking client with the same behaviour as :class:`AsyncRewardClient`; thread-safe."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 300.0,
        chunk_size: int = 1000,
        max_concurrency: int = 4,
        retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._async = AsyncRewardClient(
            url,
            api_key,
            timeout=timeout,
            chunk_size=chunk_size,
            max_concurrency=max_concurrency,
            retries=retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
        )
        self._runner: _LoopThread | None = None
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize | None = None

    @classmethod
    def from_env(cls, **kwargs: Any) -> RewardClient:
        """Client for ``REWARD_SERVICE_URL`` (default ``http://127.0.0.1:8000``) and ``REWARD_SERVICE_API_KEY``."""
        return cls(*_env_url_and_key(), **kwargs)

    @property
    def url(self) -> str:
        return self._async.url

    def score(
        self,
        items: Iterable[ItemLike],
        *,
        timeout_s: float | None = None,
        advantage: Advantage | None = None,
        shaping: Shaping | Mapping[str, Any] | None = None,
        cache: bool | None = None,
    ) -> list[Result]:
        """Score items; results come back in the order given, whatever the chunking."""
        return self._run(self._async.score(list(items), timeout_s=timeout_s, advantage=advantage, shaping=shaping,
                                           cache=cache))

    def score_response(
        self,
        items: Iterable[ItemLike],
        *,
        timeout_s: float | None = None,
        advantage: Advantage | None = None,
        shaping: Shaping | Mapping[str, Any] | None = None,
        cache: bool | None = None,
    ) -> ScoreResponse:
        """The whole response: results in order, summary, and statistics per ``group``."""
        return self._run(self._async.score_response(list(items), timeout_s=timeout_s, advantage=advantage,
                                                    shaping=shaping, cache=cache))

    def prompt_stats(self, prompt_ids: Iterable[str]) -> dict[str, PromptStats]:
        """Pass rates of these prompts (``POST /prompts/stats``); unknown ids are left out."""
        return self._run(self._async.prompt_stats(list(prompt_ids)))

    def score_one(
        self,
        task: str,
        completion: str,
        ground_truth: Any = None,
        *,
        prompt: str | None = None,
        options: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        cache: bool | None = None,
    ) -> Result:
        return self._run(
            self._async.score_one(task, completion, ground_truth, prompt=prompt, options=options, timeout_s=timeout_s,
                                  cache=cache)
        )

    def tasks(self) -> list[TaskInfo]:
        return self._run(self._async.tasks())

    def healthz(self) -> dict[str, Any]:
        return self._run(self._async.healthz())

    def close(self) -> None:
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None and runner.pid == os.getpid():  # a forked child has no loop thread to ask
            runner.run(self._async.aclose())
            if self._finalizer is not None:
                self._finalizer()

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            # After a fork (dataloader or Ray workers) the parent's loop thread
            # doesn't exist in the child: start a fresh one there.
            if self._runner is None or self._runner.pid != os.getpid():
                self._runner = _LoopThread()
                # A client dropped without close() must not leave its thread behind.
                self._finalizer = weakref.finalize(self, _LoopThread.stop, self._runner.loop, self._runner.thread)
            runner = self._runner
        return runner.run(coro)


_shared: dict[tuple[int, str, str | None], RewardClient] = {}
_shared_lock = threading.Lock()


def shared_client() -> RewardClient:
    """The process's client for ``REWARD_SERVICE_URL`` / ``REWARD_SERVICE_API_KEY``.

    For trainer hooks that are plain functions (verl, OpenRLHF): one connection pool
    per process instead of one per call. Keyed by pid, since trainers fork workers.
    """
    url, key = _env_url_and_key()
    cache_key = (os.getpid(), url, key)
    with _shared_lock:
        client = _shared.get(cache_key)
        if client is None:
            client = _shared[cache_key] = RewardClient(url, key)
        return client
