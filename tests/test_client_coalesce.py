"""The client-side coalescer: concurrent one-item calls become few /score requests to the real service."""
from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from live_service import running_service
from reward_service.client import AsyncRewardClient, RequestTooLarge, RewardServiceError
from reward_service.integrations.coalesce import CoalesceConfig, ScoreCoalescer, coalescer_for
from reward_service.models import Item


class CountingClient(AsyncRewardClient):
    """The real client; remembers how many items each request it sent carried."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[int] = []

    async def score(self, items, **kwargs):
        items = list(items)
        self.sent.append(len(items))
        return await super().score(items, **kwargs)


def math(answer: str, truth: str = "4") -> Item:
    return Item(task="math", completion=f"\\boxed{{{answer}}}", ground_truth=truth)


@pytest.fixture(scope="module")
def url():
    # The service's own coalescing off, so what is counted is the client's.
    with running_service(REWARD_SERVICE_COALESCE_WINDOW_MS="0", REWARD_SERVICE_MAX_BODY_MB="0.02") as u:
        yield u


async def test_concurrent_calls_are_one_request_with_results_in_call_order(url):
    client = CountingClient(url)
    co = ScoreCoalescer(client)
    answers = [str(i % 6) for i in range(16)]
    results = await asyncio.gather(*(co.score(math(a)) for a in answers))
    assert [r.reward for r in results] == [1.0 if a == "4" else 0.0 for a in answers]
    assert client.sent == [6]  # one request, each distinct answer once
    await client.aclose()


async def test_identical_items_are_sent_once_and_every_caller_gets_the_result(url):
    client = CountingClient(url)
    co = ScoreCoalescer(client)
    results = await asyncio.gather(*(co.score(math("4")) for _ in range(8)))
    assert [r.reward for r in results] == [1.0] * 8
    assert client.sent == [1]
    await client.aclose()


async def test_the_size_cap_splits_a_burst(url):
    client = CountingClient(url)
    co = ScoreCoalescer(client, CoalesceConfig(max_items=4))
    results = await asyncio.gather(*(co.score(math(str(i))) for i in range(10)))
    assert [r.reward for r in results] == [1.0 if i == 4 else 0.0 for i in range(10)]
    assert client.sent == [4, 4, 2]
    await client.aclose()


async def test_a_zero_window_sends_every_call_alone(url):
    client = CountingClient(url)
    co = ScoreCoalescer(client, CoalesceConfig(window_s=0))
    await asyncio.gather(*(co.score(math(str(i))) for i in range(3)))
    assert client.sent == [1, 1, 1]
    await client.aclose()


async def test_calls_arriving_in_a_trickle_still_share_a_request(url):
    client = CountingClient(url)
    co = ScoreCoalescer(client, CoalesceConfig(window_s=0.2, max_delay_s=5.0))

    async def later(i: int):
        await asyncio.sleep(0.01 * i)  # each call inside the previous one's window
        return await co.score(math(str(i)))

    await asyncio.gather(*(later(i) for i in range(8)))
    assert client.sent == [8]
    await client.aclose()


async def test_max_delay_bounds_how_long_a_batch_waits_for_company(url):
    client = CountingClient(url)
    co = ScoreCoalescer(client, CoalesceConfig(window_s=0.5, max_delay_s=0.05))

    async def later(i: int):
        await asyncio.sleep(0.04 * i)
        return await co.score(math(str(i)))

    await asyncio.gather(*(later(i) for i in range(10)))  # 0.36 s of arrivals, all inside the quiet window
    assert len(client.sent) >= 2 and sum(client.sent) == 10
    await client.aclose()


async def test_calls_with_different_service_deadlines_go_in_different_requests(url):
    client = CountingClient(url)
    co = ScoreCoalescer(client)
    await asyncio.gather(co.score(math("1"), timeout_s=10), co.score(math("2"), timeout_s=20), co.score(math("3")))
    assert sorted(client.sent) == [1, 1, 1]
    await client.aclose()


async def test_an_item_the_service_refuses_fails_alone(url):
    # The service takes bodies up to 0.02 MiB here: the batch with the long answer is refused
    # whole (413), so the coalescer sends its items one by one and only that call fails.
    client = CountingClient(url)
    co = ScoreCoalescer(client)
    calls = [co.score(math("4")), co.score(math("x" * 30_000)), co.score(math("5"))]
    out = await asyncio.gather(*calls, return_exceptions=True)
    assert out[0].reward == 1.0 and out[2].reward == 0.0
    assert isinstance(out[1], RequestTooLarge)
    assert client.sent == [3, 1, 1, 1]
    await client.aclose()


async def test_a_service_that_is_down_fails_every_call_of_the_batch_with_its_error():
    client = AsyncRewardClient(f"http://127.0.0.1:{_closed_port()}", retries=0)
    co = ScoreCoalescer(client)
    out = await asyncio.gather(co.score(math("1")), co.score(math("2")), return_exceptions=True)
    assert all(isinstance(e, RewardServiceError) for e in out)


async def test_a_service_that_never_answers_fails_calls_at_the_deadline_not_never():
    with _silent_server() as port:
        co = ScoreCoalescer(AsyncRewardClient(f"http://127.0.0.1:{port}"), CoalesceConfig(deadline_s=1.0))
        t0 = time.monotonic()
        out = await asyncio.gather(co.score(math("1")), co.score(math("2")), return_exceptions=True)
        waited = time.monotonic() - t0
    assert all(isinstance(e, RewardServiceError) and "within" in str(e) for e in out)
    assert waited < 5


async def test_a_cancelled_caller_does_not_cancel_its_batch_mates(url):
    client = CountingClient(url)
    co = ScoreCoalescer(client, CoalesceConfig(window_s=0.05))
    doomed = asyncio.ensure_future(co.score(math("1")))
    kept = asyncio.ensure_future(co.score(math("4")))
    await asyncio.sleep(0.01)
    doomed.cancel()
    assert (await kept).reward == 1.0
    assert client.sent == [2]
    await client.aclose()


async def test_each_event_loop_gets_its_own_coalescer(url):
    here = coalescer_for(url, None)
    assert coalescer_for(url, None) is here
    other = await asyncio.to_thread(lambda: asyncio.run(_coalescer_in_new_loop(url)))
    assert other is not here


async def _coalescer_in_new_loop(url: str) -> ScoreCoalescer:
    return coalescer_for(url, None)


def test_config_rejects_a_cap_below_one():
    with pytest.raises(ValueError):
        CoalesceConfig(max_items=0)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _silent_server:
    """Accepts connections and never answers: a hung service, which the real app can't be made to be."""

    def __enter__(self) -> int:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()

        def accept() -> None:
            self.sock.settimeout(0.1)
            while not self.stop.is_set():
                try:
                    self.conns.append(self.sock.accept()[0])
                except OSError:
                    continue

        self.thread = threading.Thread(target=accept, daemon=True)
        self.thread.start()
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for c in self.conns:
            c.close()
        self.sock.close()


def test_coalescers_of_closed_loops_are_dropped(url):
    from reward_service.integrations import coalesce

    async def make() -> None:
        coalescer_for(url, None)

    for _ in range(3):
        asyncio.run(make())
    asyncio.run(make())
    assert sum(1 for lp in list(coalesce._by_loop) if lp.is_closed()) <= 1
