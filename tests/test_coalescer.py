"""The coalescer: small concurrent requests become one executor batch, and nothing else changes."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from reward_service.coalescer import Coalescer
from reward_service.executors.base import BackendUnavailable, Executor, Job, Outcome, execute


class Recording(Executor):
    """Scores with the real verifiers in this process and records every batch it is given."""

    def __init__(self, delay_s: float = 0.0, fail: Exception | None = None,
                 slow: dict[str, float] | None = None) -> None:
        self.batches: list[list[Job]] = []
        self.delay_s = delay_s
        self.fail = fail
        self.slow = slow or {}  # completion -> seconds that item takes; others report at once
        self.cancelled = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def readiness(self) -> tuple[bool, str]:
        return True, "recording"

    async def run(self, jobs: list[Job], timeout_s: float | None, on_outcome=None) -> list[Outcome]:
        self.batches.append(list(jobs))
        try:
            await asyncio.sleep(self.delay_s)
            if self.fail:
                raise self.fail
            outcomes = [execute(j) for j in jobs]
            for i, o in enumerate(outcomes):
                if jobs[i].completion not in self.slow and on_outcome:
                    on_outcome(i, o)
            await asyncio.sleep(max((self.slow.get(j.completion, 0.0) for j in jobs), default=0.0))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return outcomes


def job(answer: str, gold: str = "4", timeout_s: float = 5.0) -> Job:
    return Job("math", f"\\boxed{{{answer}}}", gold, None, None, timeout_s)


def keep_busy(co: Coalescer, seconds: float = 0.5) -> asyncio.Future:
    """A request in flight, so that the next ones have something to be merged with; it goes alone."""
    co.inner.slow["\\boxed{busy}"] = seconds
    return asyncio.ensure_future(co.run([job("busy")], None))


async def test_concurrent_single_item_requests_are_one_batch_after_the_first():
    inner = Recording()
    co = Coalescer(inner, window_s=0.02, max_items=256)
    answers = [str(i % 6) for i in range(40)]
    outs = await asyncio.gather(*(co.run([job(a)], None) for a in answers))
    assert [len(b) for b in inner.batches] == [1, 6]  # the first found nothing to wait for; 39 merged, 6 unique
    assert [o[0].reward for o in outs] == [1.0 if a == "4" else 0.0 for a in answers]


async def test_identical_items_of_different_requests_are_scored_once():
    inner = Recording()
    co = Coalescer(inner, window_s=0.02, max_items=256)
    busy = keep_busy(co)
    outs = await asyncio.gather(*(co.run([job("4")], None) for _ in range(16)), co.run([job("5")], None))
    assert [len(b) for b in inner.batches] == [1, 2]
    assert [o[0].reward for o in outs] == [1.0] * 16 + [0.0]
    await busy


async def test_each_request_gets_its_own_items_back_in_order():
    inner = Recording()
    co = Coalescer(inner, window_s=0.02, max_items=256)
    busy = keep_busy(co)
    a, b = await asyncio.gather(co.run([job("4"), job("3"), job("4")], None), co.run([job("1"), job("4")], None))
    await busy
    assert [len(x) for x in inner.batches] == [1, 3]
    assert [o.reward for o in a] == [1.0, 0.0, 1.0]
    assert [o.reward for o in b] == [0.0, 1.0]


async def test_a_batch_is_started_when_it_reaches_the_size_cap():
    inner = Recording()
    co = Coalescer(inner, window_s=10.0, max_items=4)  # the window alone would hold them for 10 s
    outs = await asyncio.wait_for(asyncio.gather(*(co.run([job(str(i))], None) for i in range(9))), 5)
    assert [len(b) for b in inner.batches] == [1, 4, 4]
    assert len(outs) == 9


async def test_a_request_as_large_as_the_cap_is_not_held():
    inner = Recording()
    co = Coalescer(inner, window_s=10.0, max_items=4)
    outs = await asyncio.wait_for(co.run([job(str(i)) for i in range(4)], None), 5)
    assert len(outs) == 4 and len(inner.batches) == 1


async def test_a_caller_sending_one_request_at_a_time_never_waits_for_a_window():
    inner = Recording()
    co = Coalescer(inner, window_s=60.0, max_items=256)
    for i in range(3):
        await asyncio.wait_for(co.run([job(str(i))], None), 5)
    assert [len(b) for b in inner.batches] == [1, 1, 1]


async def test_a_merged_request_waits_no_longer_than_the_window():
    inner = Recording()
    co = Coalescer(inner, window_s=0.05, max_items=256)
    busy = keep_busy(co, 30.0)
    await asyncio.wait_for(co.run([job("4")], None), 5)  # the window, not the busy request's 30 s
    busy.cancel()


async def test_a_slow_item_of_one_request_does_not_hold_up_the_others():
    inner = Recording(slow={"\\boxed{9}": 5.0})
    co = Coalescer(inner, window_s=0.02, max_items=256)
    busy = keep_busy(co)
    slow = asyncio.ensure_future(co.run([job("9")], None))
    fast = await asyncio.wait_for(asyncio.gather(*(co.run([job("4")], None) for _ in range(3))), 2.0)
    assert [len(b) for b in inner.batches] == [1, 2]  # merged, and still answered before the slow item finished
    await busy
    assert [o[0].reward for o in fast] == [1.0] * 3
    assert not slow.done()
    slow.cancel()


async def test_requests_with_different_deadlines_are_not_merged():
    inner = Recording()
    co = Coalescer(inner, window_s=0.02, max_items=256)
    busy = keep_busy(co)
    await asyncio.gather(co.run([job("1")], 10.0), co.run([job("2")], 10.0),
                         co.run([job("3")], 30.0), co.run([job("5")], 30.0))
    await busy
    assert [len(b) for b in inner.batches] == [1, 2, 2]


async def test_nothing_is_held_while_the_executor_has_an_idle_worker():
    inner = Recording()
    inner.has_capacity = lambda: True
    co = Coalescer(inner, window_s=60.0, max_items=256)
    await asyncio.wait_for(asyncio.gather(*(co.run([job(str(i))], None) for i in range(5))), 5)
    assert [len(b) for b in inner.batches] == [1] * 5


async def test_zero_window_passes_every_request_straight_through():
    inner = Recording()
    co = Coalescer(inner, window_s=0.0, max_items=256)
    await asyncio.gather(*(co.run([job("4")], None) for _ in range(5)))
    assert len(inner.batches) == 5


async def test_a_backend_outage_reaches_every_merged_request():
    co = Coalescer(Recording(fail=BackendUnavailable("redis down")), window_s=0.02, max_items=256)
    outs = await asyncio.gather(*(co.run([job("4")], None) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(o, BackendUnavailable) for o in outs)  # the first alone, two merged


async def test_one_caller_going_away_does_not_cancel_the_others():
    inner = Recording(delay_s=0.2)
    co = Coalescer(inner, window_s=0.01, max_items=256)
    busy = keep_busy(co)
    leaving = asyncio.ensure_future(co.run([job("3")], None))
    staying = asyncio.ensure_future(co.run([job("4")], None))
    await asyncio.sleep(0.05)
    leaving.cancel()
    assert (await staying)[0].reward == 1.0
    assert inner.cancelled == 0
    await busy


async def test_a_batch_whose_callers_all_went_away_is_cancelled():
    inner = Recording(delay_s=5.0)
    co = Coalescer(inner, window_s=0.01, max_items=256)
    busy = keep_busy(co)
    calls = [asyncio.ensure_future(co.run([job("4")], None)) for _ in range(3)]
    await asyncio.sleep(0.05)
    for c in calls:
        c.cancel()
    for _ in range(50):
        if inner.cancelled:
            break
        await asyncio.sleep(0.02)
    assert inner.cancelled == 1  # the merged batch; the busy request goes on
    busy.cancel()


def _coalesced_counts(metrics_text: str) -> tuple[float, float]:
    count = total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("reward_coalesced_requests_count"):
            count = float(line.split()[-1])
        elif line.startswith("reward_coalesced_requests_sum"):
            total = float(line.split()[-1])
    return count, total


def _batches_of(metrics_text: str, low: int, high: int) -> float:
    """Coalesced batches of more than ``low`` and at most ``high`` requests (histogram buckets)."""
    def bucket(le: int) -> float:
        key = f'reward_coalesced_requests_bucket{{le="{float(le)}"}}'
        return next(float(line.split()[-1]) for line in metrics_text.splitlines() if line.startswith(key))
    return bucket(high) - bucket(low)


@pytest.mark.slow
def test_concurrent_one_sample_requests_to_the_service_are_scored_in_few_batches():
    from live_service import running_service

    async def go(url: str) -> tuple[list[float], str]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            async def one(i: int) -> float:
                r = await client.post("/score", json={"items": [
                    {"task": "math", "completion": f"\\boxed{{{i % 4}}}", "ground_truth": "2"}]})
                r.raise_for_status()
                return r.json()["results"][0]["reward"]

            rewards = await asyncio.gather(*(one(i) for i in range(64)))
            return rewards, (await client.get("/metrics")).text

    with running_service(workers=1, REWARD_SERVICE_COALESCE_WINDOW_MS="20") as url:
        rewards, text = asyncio.run(go(url))
    assert rewards == [1.0 if i % 4 == 2 else 0.0 for i in range(64)]
    batches, requests = _coalesced_counts(text)
    assert requests >= 60  # merged; the first request or two found nothing to wait for
    assert batches < 64 / 4, f"{batches:.0f} batches for 64 concurrent requests"


def test_requests_one_at_a_time_are_never_held_for_a_window():
    from live_service import running_service

    with running_service(workers=1, REWARD_SERVICE_COALESCE_WINDOW_MS="60000") as url:
        with httpx.Client(base_url=url, timeout=30) as client:  # a minute's window would fail this
            for i in range(3):
                r = client.post("/score", json={"items": [{"task": "math", "completion": f"\\boxed{{{i}}}",
                                                           "ground_truth": "1"}]})
                assert r.json()["results"][0]["reward"] == float(i == 1)


@pytest.mark.slow
def test_a_pathological_completion_does_not_hold_up_requests_merged_with_it():
    from live_service import running_service

    async def go(url: str) -> tuple[dict[str, float], list[str], str]:
        done: dict[str, float] = {}  # answered at, seconds from the start
        order: list[str] = []
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            t0 = time.monotonic()

            async def one(name: str, completion: str) -> None:
                r = await client.post("/score", json={"items": [
                    {"task": "math", "completion": completion, "ground_truth": "2"}]})
                r.raise_for_status()
                done[name] = time.monotonic() - t0
                order.append(f"{name}:{r.json()['results'][0]['status']}")

            # Both workers busy (those two go alone), so what comes next is merged rather than started
            busy = [asyncio.ensure_future(one(f"busy{b}", f"\\boxed{{{b}^{{{b}^{{{b}^{{{b}^{{{b}}}}}}}}}}}"))
                    for b in (7, 8)]
            await asyncio.sleep(0.5)
            await asyncio.gather(one("slow", "\\boxed{9^{9^{9^{9^{9}}}}}"),
                                 *(one(f"fast{i}", f"\\boxed{{{i}}}") for i in range(3)))
            await asyncio.gather(*busy)
            return done, order, (await client.get("/metrics")).text

    with running_service(workers=2, REWARD_SERVICE_COALESCE_WINDOW_MS="200",
                         REWARD_SERVICE_TASK_TIMEOUTS='{"math": 3}') as url:
        done, order, text = asyncio.run(go(url))
    assert _batches_of(text, 2, 4) == 1  # slow and fast (4 requests) were merged into one batch
    assert sorted(order) == ["busy7:timeout", "busy8:timeout", "fast0:ok", "fast1:ok", "fast2:ok", "slow:timeout"]
    # The slow item's own 3 s limit runs after the fast ones are answered, not before them:
    # an ordering with seconds of margin, not a speed target.
    assert max(done[f"fast{i}"] for i in range(3)) < done["slow"] - 1.5, done
