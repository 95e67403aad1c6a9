"""RewardClient / AsyncRewardClient against the real service and a scripted HTTP server."""
from __future__ import annotations

import asyncio

import pytest

from live_service import ScriptedServer, echo_results, free_port, running_service
from reward_service.client import (
    AsyncRewardClient,
    AuthError,
    RequestTooLarge,
    RewardClient,
    RewardServiceError,
    ServiceUnavailable,
    ValidationFailed,
)
from reward_service.models import Item, Result, TaskInfo

KEY = "test-key"
MAX_ITEMS = 50
MAX_BODY_MB = 1


@pytest.fixture(scope="module")
def service_url():
    with running_service(api_key=KEY, REWARD_SERVICE_MAX_ITEMS=str(MAX_ITEMS),
                         REWARD_SERVICE_MAX_BODY_MB=str(MAX_BODY_MB)) as url:
        yield url


@pytest.fixture
def client(service_url):
    with RewardClient(service_url, KEY, chunk_size=3, max_concurrency=4) as c:
        yield c


def math_items(n: int) -> list[dict]:
    """Item i has answer i; even items answer right, odd ones answer i+1."""
    return [
        {"id": f"q{i}", "task": "math", "completion": f"so the answer is \\boxed{{{i if i % 2 == 0 else i + 1}}}",
         "ground_truth": str(i)}
        for i in range(n)
    ]


# -- against the live service -------------------------------------------------------


def test_score_returns_typed_results_in_request_order_across_chunks(client):
    results = client.score(math_items(11))  # 4 chunks of <=3 sent concurrently
    assert all(isinstance(r, Result) for r in results)
    assert [r.id for r in results] == [f"q{i}" for i in range(11)]
    assert [r.reward for r in results] == [1.0 if i % 2 == 0 else 0.0 for i in range(11)]


def test_score_accepts_item_models_and_dicts_mixed(client):
    items = [Item(task="mcq", completion="The answer is (B).", ground_truth="B"),
             {"task": "mcq", "completion": "The answer is (C).", "ground_truth": "B"}]
    assert [r.reward for r in client.score(items)] == [1.0, 0.0]


def test_score_of_no_items_is_no_results_without_a_request():
    with RewardClient(f"http://127.0.0.1:{free_port()}", retries=0) as c:
        assert c.score([]) == []


def test_score_one_scores_a_single_completion(client):
    result = client.score_one("math", "Thus \\boxed{\\frac{1}{2}}", "0.5")
    assert (result.task, result.status, result.reward) == ("math", "ok", 1.0)


def test_tasks_lists_math_and_mcq_as_task_infos(client):
    tasks = {t.name: t for t in client.tasks()}
    assert {"math", "mcq"} <= set(tasks)
    assert isinstance(tasks["math"], TaskInfo)


def test_chunks_never_split_a_group_so_advantages_cover_the_whole_group(client):
    # chunk_size 3, groups of 5 interleaved: sent as whole groups, results still in order
    items = [dict(it, group=f"g{i % 4}") for i, it in enumerate(math_items(20))]
    response = client.score_response(items, advantage="dr_grpo")
    assert [r.id for r in response.results] == [f"q{i}" for i in range(20)]
    assert {name: g.count for name, g in response.groups.items()} == {f"g{k}": 5 for k in range(4)}
    for name, g in response.groups.items():
        mine = [r for r, it in zip(response.results, items) if it["group"] == name]
        assert g.mean == pytest.approx(sum(r.reward for r in mine) / 5)
        assert [r.advantage for r in mine] == pytest.approx([r.reward - g.mean for r in mine])
    assert response.summary.count == 20


def test_score_passes_shaping_and_cache_options(client):
    item = {"task": "math", "completion": "\\boxed{12}", "ground_truth": "12", "length": {"tokens": 100}}
    first = client.score([item], shaping={"overlong": {"max_tokens": 100, "buffer": 50, "penalty": 1.0}})[0]
    assert (first.raw_reward, first.reward) == (1.0, 0.0)
    assert client.score([item])[0].cached is True
    assert client.score([item], cache=False)[0].cached is False


def test_bad_shaping_fails_before_sending():
    with RewardClient(f"http://127.0.0.1:{free_port()}", retries=0) as c, pytest.raises(ValidationFailed):
        c.score(math_items(1), shaping={"overlong": {"buffer": -1}})


def test_prompt_stats_returns_typed_pass_rates(client):
    client.score([dict(it, prompt_id="client-p") for it in math_items(4)])
    stats = client.prompt_stats(["client-p", "unknown"])
    assert set(stats) == {"client-p"} and (stats["client-p"].samples, stats["client-p"].solved) == (4, 0.5)


def test_healthz_answers(client):
    assert isinstance(client.healthz(), dict)


def test_missing_api_key_raises_auth_error(service_url):
    with RewardClient(service_url, api_key=None) as c, pytest.raises(AuthError) as e:
        c.score(math_items(1))
    assert e.value.status_code == 401


def test_wrong_api_key_raises_auth_error(service_url):
    with RewardClient(service_url, api_key="nope") as c, pytest.raises(AuthError):
        c.score(math_items(1))


def test_chunk_over_the_server_item_limit_raises_request_too_large(service_url):
    with RewardClient(service_url, KEY, chunk_size=MAX_ITEMS + 1) as c, pytest.raises(RequestTooLarge) as e:
        c.score(math_items(MAX_ITEMS + 1))
    assert e.value.status_code == 413


def test_body_over_the_server_size_limit_raises_request_too_large(client):
    with pytest.raises(RequestTooLarge) as e:
        client.score_one("math", "x" * (2 * MAX_BODY_MB << 20), "1")
    assert "MAX_BODY_MB" in str(e.value.detail)


def test_chunking_keeps_a_large_batch_under_the_server_item_limit(service_url):
    with RewardClient(service_url, KEY, chunk_size=MAX_ITEMS) as c:
        results = c.score(math_items(MAX_ITEMS * 2 + 1))
    assert [r.id for r in results] == [f"q{i}" for i in range(MAX_ITEMS * 2 + 1)]


def test_server_side_validation_error_raises_validation_failed_with_detail(client):
    with pytest.raises(ValidationFailed) as e:
        client.score(math_items(1), timeout_s=-1)
    assert e.value.status_code == 422
    assert "timeout_s" in str(e.value.detail)


def test_item_missing_required_field_fails_before_sending():
    with RewardClient(f"http://127.0.0.1:{free_port()}", retries=0) as c, pytest.raises(ValidationFailed) as e:
        c.score([{"task": "math", "ground_truth": "1"}])  # no completion
    assert e.value.status_code is None
    assert "completion" in str(e.value.detail)


@pytest.mark.asyncio
async def test_async_client_preserves_order_across_concurrent_chunks(service_url):
    async with AsyncRewardClient(service_url, KEY, chunk_size=2, max_concurrency=3) as c:
        results = await c.score(math_items(9))
    assert [r.id for r in results] == [f"q{i}" for i in range(9)]
    assert [r.reward for r in results] == [1.0 if i % 2 == 0 else 0.0 for i in range(9)]


def test_async_client_can_be_reused_under_a_new_event_loop(service_url):
    c = AsyncRewardClient(service_url, KEY)
    first = asyncio.run(c.score_one("math", "\\boxed{2}", "2"))
    second = asyncio.run(c.score_one("math", "\\boxed{2}", "2"))  # a second asyncio.run: a new loop
    assert first.reward == second.reward == 1.0


@pytest.mark.asyncio
async def test_async_client_raises_auth_error(service_url):
    async with AsyncRewardClient(service_url) as c:
        with pytest.raises(AuthError):
            await c.score_one("math", "\\boxed{1}", "1")


@pytest.mark.asyncio
async def test_sync_client_works_inside_a_running_event_loop(client):
    # Trainers and notebooks call reward functions from code already inside a loop.
    assert asyncio.get_running_loop().is_running()
    assert client.score_one("math", "\\boxed{3}", "3").reward == 1.0


def _score_in_child(client, queue):
    queue.put(client.score_one("math", "\\boxed{8}", "8").reward)


def test_sync_client_keeps_working_in_a_forked_child(client):
    # verl's reward workers and dataloaders fork after the client exists; the
    # parent's loop thread is not in the child, so the client must start its own.
    import multiprocessing

    client.score_one("math", "\\boxed{1}", "1")  # the parent's loop thread is running now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_score_in_child, args=(client, queue))
    child.start()
    try:
        assert queue.get(timeout=30) == 1.0
    finally:
        child.join(timeout=30)
    assert child.exitcode == 0


# -- retries, against a scripted server -----------------------------------------------


def fast(url: str, **kw) -> RewardClient:
    return RewardClient(url, backoff_s=0.01, max_backoff_s=0.05, **kw)


@pytest.mark.parametrize("status", [503, 502, 504])
def test_transient_status_is_retried_until_success(status):
    with ScriptedServer([(status, {"detail": "busy"}), (status, {"detail": "busy"}), (200, echo_results)]) as srv:
        with fast(srv.url, retries=3) as c:
            results = c.score(math_items(2))
    assert [r.id for r in results] == ["q0", "q1"]
    assert len(srv.requests) == 3
    assert srv.requests[0]["json"] == srv.requests[2]["json"]  # the same body is resent


def test_retries_exhausted_raise_service_unavailable_with_status():
    with ScriptedServer([(503, {"detail": "redis down"})]) as srv:
        with fast(srv.url, retries=2) as c, pytest.raises(ServiceUnavailable) as e:
            c.score(math_items(1))
    assert e.value.status_code == 503
    assert e.value.detail == "redis down"
    assert len(srv.requests) == 3


def test_connection_refused_is_retried_then_raises_service_unavailable():
    with fast(f"http://127.0.0.1:{free_port()}", retries=1) as c, pytest.raises(ServiceUnavailable) as e:
        c.score(math_items(1))
    assert e.value.status_code is None


def test_server_error_500_is_not_retried():
    with ScriptedServer([(500, {"detail": "bug"}), (200, echo_results)]) as srv:
        with fast(srv.url, retries=3) as c, pytest.raises(RewardServiceError) as e:
            c.score(math_items(1))
    assert not isinstance(e.value, ServiceUnavailable)
    assert e.value.status_code == 500
    assert len(srv.requests) == 1


@pytest.mark.asyncio
async def test_async_client_retries_503_then_succeeds():
    with ScriptedServer([(503, {"detail": "busy"}), (503, {"detail": "busy"}), (200, echo_results)]) as srv:
        async with AsyncRewardClient(srv.url, retries=2, backoff_s=0.01) as c:
            results = await c.score(math_items(3))
    assert [r.id for r in results] == ["q0", "q1", "q2"]
    assert len(srv.requests) == 3


def test_api_key_is_sent_as_bearer_token():
    with ScriptedServer([(200, echo_results)]) as srv, fast(srv.url, api_key="s3cret") as c:
        c.score(math_items(1))
    headers = {k.lower(): v for k, v in srv.requests[0]["headers"].items()}
    assert headers["authorization"] == "Bearer s3cret"


def test_answer_that_is_not_a_score_response_is_a_service_error():
    with ScriptedServer([(200, {"hello": "proxy"})]) as srv, fast(srv.url) as c:
        with pytest.raises(RewardServiceError, match="unexpected answer"):
            c.score(math_items(1))


def test_a_failing_chunk_stops_the_batch_with_that_error():
    with ScriptedServer([(200, echo_results), (401, {"detail": "no"})]) as srv:
        with RewardClient(srv.url, chunk_size=1, max_concurrency=1) as c, pytest.raises(AuthError):
            c.score(math_items(5))
    assert len(srv.requests) == 2  # chunks after the failure were not sent


def test_result_count_mismatch_is_an_error():
    def one_result_short(body):
        answer = echo_results(body)
        answer["results"].pop()
        return answer

    with ScriptedServer([(200, one_result_short)]) as srv, fast(srv.url) as c, pytest.raises(RewardServiceError):
        c.score(math_items(2))
