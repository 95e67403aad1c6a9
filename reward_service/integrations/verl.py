"""verl ``custom_reward_function`` backed by the reward service.

verl >= 0.9 (its reward loop, ``verl.experimental.reward_loop``) awaits one
``compute_score(data_source=, solution_str=, ground_truth=, extra_info=, **reward_kwargs)``
per response, a whole chunk of them at once. :func:`compute_score` is ``async``: the
calls made together in a reward-loop worker are coalesced into one ``/score`` request
(:mod:`reward_service.integrations.coalesce`), so a training step costs about one request
per reward worker instead of one per response, and a GRPO group's repeated answers are
sent once. Point verl at it with

    reward.custom_reward_function.path=pkg://reward_service.integrations.verl

(``name`` defaults to ``compute_score``). For callers that can't await:

- :func:`compute_score_sync`: same arguments, one request per call; for verl 0.9's
  ``remote`` reward manager (it refuses async functions) and verl < 0.9's per-sample
  ``naive``/``prime`` managers.
- :func:`compute_score_batch`: verl < 0.9's ``reward_model.reward_manager=batch``
  (``compute_score(data_sources=, solution_strs=, ground_truths=, extra_infos=)`` once per
  step). verl 0.9 has no batch manager in its reward loop.

Configuration (environment, read in every process verl starts):

- ``REWARD_SERVICE_URL`` (default ``http://127.0.0.1:8000``), ``REWARD_SERVICE_API_KEY``
- ``REWARD_SERVICE_TASK_MAP``: JSON object ``{"data_source or glob": "task"}``, consulted before
  :data:`DEFAULT_TASK_MAP`
- ``REWARD_SERVICE_DEFAULT_TASK``: task for a data_source nothing maps (otherwise that is an error)
- ``REWARD_SERVICE_RETURN_DICT=1``: return verl's dict form instead of a float
- ``REWARD_SERVICE_TIMEOUT_S``: per-batch deadline sent to the service
- ``REWARD_SERVICE_CLIENT_COALESCE_MS`` (default 5): a coalesced batch is sent once no call
  joined it for this long (0: every call on its own); ``REWARD_SERVICE_CLIENT_COALESCE_MAX_DELAY_MS``
  (default 100): at the latest this long after its first call;
  ``REWARD_SERVICE_CLIENT_COALESCE_MAX_ITEMS`` (default 512): at once when this big;
  ``REWARD_SERVICE_CLIENT_DEADLINE_S``: hard bound on one call (default: the HTTP timeout + 60 s)

``custom_reward_function.reward_kwargs`` may set ``task``, ``task_map``, ``default_task``,
``return_dict``, ``timeout_s``, ``options``, ``coalesce_ms``, ``coalesce_max_delay_ms``,
``coalesce_max_items`` and ``deadline_s`` with the same meaning (they win over the
environment). Per row, ``extra_info["task"]`` picks the task, ``extra_info["reward_options"]``
the task options, and ``extra_info["prompt"]`` (or ``"question"``) the prompt for tasks that
read it (ifeval).

Loaded by file path (``custom_reward_function.path: /path/to/verl.py``) this module is
pickled by value when verl ships the function to a Ray actor (the ``remote`` manager):
it holds no module-level state for that reason; the coalescers live in the importable
:mod:`reward_service.integrations.coalesce`.
"""
from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from reward_service.client import _env_url_and_key, shared_client
from reward_service.integrations.coalesce import CoalesceConfig, coalescer_for
from reward_service.models import Item, Result

__all__ = ["DEFAULT_TASK_MAP", "compute_score", "compute_score_batch", "compute_score_sync", "resolve_task"]

# First match wins; patterns are case-insensitive fnmatch globs over verl's data_source.
# Names follow verl's own default_compute_score and its data preprocessing scripts.
DEFAULT_TASK_MAP: tuple[tuple[str, str], ...] = (
    ("reasoning_gym*", "logic"),
    ("reasoning-gym*", "logic"),
    ("ifeval*", "ifeval"),
    ("google/ifeval*", "ifeval"),
    ("codecontests", "code"),
    ("deepmind/code_contests", "code"),
    ("apps", "code"),
    ("codeparrot/apps", "code"),
    ("taco", "code"),
    ("baai/taco", "code"),
    ("*codeforces*", "code"),
    ("primeintellect*", "code"),
    ("*livecodebench*", "code"),
    ("*gpqa*", "mcq"),
    ("*mmlu*", "mcq"),
    ("allenai/ai2_arc", "mcq"),
    ("*multiple_choice*", "mcq"),
    ("*mcq*", "mcq"),
    ("openai/gsm8k", "math"),
    ("*gsm8k*", "math"),
    ("lighteval/math", "math"),
    ("digitallearninggmbh/math-lighteval", "math"),
    ("huggingfaceh4/math-500", "math"),
    ("math_dapo", "math"),
    ("aime*", "math"),
    ("amc*", "math"),
    ("numina_*", "math"),
    ("hiyouga/geometry3k", "math"),
    ("*deepscaler*", "math"),
    ("*math*", "math"),
)


def _env_task_map() -> dict[str, str]:
    # Parsed per row on purpose: a cache here would be module state, which cloudpickle
    # can't ship when verl loads this file by path (and a small JSON object parses in µs).
    raw = os.environ.get("REWARD_SERVICE_TASK_MAP") or ""
    if not raw:
        return {}
    mapping = json.loads(raw)
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ValueError('REWARD_SERVICE_TASK_MAP must be a JSON object like {"my_source": "math"}')
    return mapping


def _match(data_source: str, mapping: Mapping[str, str] | Sequence[tuple[str, str]]) -> str | None:
    pairs = mapping.items() if isinstance(mapping, Mapping) else mapping
    source = data_source.lower()
    for pattern, task in pairs:
        if fnmatch.fnmatchcase(source, pattern.lower()):
            return task
    return None


def resolve_task(
    data_source: Any,
    extra_info: Mapping[str, Any] | None = None,
    *,
    task: str | None = None,
    task_map: Mapping[str, str] | None = None,
    default_task: str | None = None,
) -> str:
    """The service task for one row.

    Order: ``extra_info["task"]``, ``task``, ``task_map``, ``REWARD_SERVICE_TASK_MAP``,
    :data:`DEFAULT_TASK_MAP`, ``default_task`` / ``REWARD_SERVICE_DEFAULT_TASK``; else ValueError,
    because scoring a dataset with the wrong verifier silently would poison training.
    """
    if isinstance(extra_info, Mapping) and isinstance(extra_info.get("task"), str):
        return extra_info["task"]
    if task:
        return task
    source = str(data_source)
    for mapping in (task_map or {}, _env_task_map(), DEFAULT_TASK_MAP):
        found = _match(source, mapping)
        if found:
            return found
    fallback = default_task or os.environ.get("REWARD_SERVICE_DEFAULT_TASK")
    if fallback:
        return fallback
    raise ValueError(
        f"no reward-service task for data_source={source!r}; set extra_info['task'], "
        "reward_kwargs task/task_map, or REWARD_SERVICE_TASK_MAP / REWARD_SERVICE_DEFAULT_TASK"
    )


def _plain(value: Any) -> Any:
    # verl hands over numpy scalars/arrays from parquet; JSON needs plain Python.
    return value.tolist() if hasattr(value, "tolist") else value


def _item(data_source: Any, solution_str: str, ground_truth: Any, extra_info: Any, kw: Mapping[str, Any]) -> Item:
    info = extra_info if isinstance(extra_info, Mapping) else {}
    prompt = next((info[k] for k in ("prompt", "question") if isinstance(info.get(k), str)), None)
    options = info.get("reward_options") or kw.get("options")
    return Item(
        task=resolve_task(
            data_source, info, task=kw.get("task"), task_map=kw.get("task_map"), default_task=kw.get("default_task")
        ),
        prompt=prompt,
        completion=str(solution_str),
        ground_truth=_plain(ground_truth),
        options=dict(options) if options else None,
    )


def _want_dict(kw: Mapping[str, Any]) -> bool:
    if "return_dict" in kw:
        return bool(kw["return_dict"])
    return os.environ.get("REWARD_SERVICE_RETURN_DICT", "").lower() in ("1", "true", "yes")


def _timeout(kw: Mapping[str, Any]) -> float | None:
    value = kw.get("timeout_s") or os.environ.get("REWARD_SERVICE_TIMEOUT_S")
    return float(value) if value else None


def _output(result: Result, as_dict: bool) -> float | dict[str, float]:
    if not as_dict:
        return result.reward
    # verl gathers every key into reward_extra_info lists and averages them for
    # metrics, so keys must be the same on every row and values numeric.
    return {"score": result.reward, "status_ok": float(result.status == "ok"), "elapsed_ms": result.elapsed_ms}


def _setting(kw: Mapping[str, Any], key: str, env: str, default: float) -> float:
    value = kw.get(key)
    if value is None:
        value = os.environ.get(env) or default
    return float(value)


def _coalesce_config(kw: Mapping[str, Any]) -> CoalesceConfig:
    deadline = kw.get("deadline_s") or os.environ.get("REWARD_SERVICE_CLIENT_DEADLINE_S")
    return CoalesceConfig(
        window_s=_setting(kw, "coalesce_ms", "REWARD_SERVICE_CLIENT_COALESCE_MS", 5) / 1000,
        max_delay_s=_setting(kw, "coalesce_max_delay_ms", "REWARD_SERVICE_CLIENT_COALESCE_MAX_DELAY_MS", 100) / 1000,
        max_items=int(_setting(kw, "coalesce_max_items", "REWARD_SERVICE_CLIENT_COALESCE_MAX_ITEMS", 512)),
        deadline_s=float(deadline) if deadline else None,
    )


async def compute_score(
    data_source: Any, solution_str: str, ground_truth: Any, extra_info: Any = None, **kwargs: Any
) -> float | dict[str, float]:
    """verl >= 0.9's per-response reward function; concurrent calls share one request.

    A row that can't be scored raises for that row alone (an unmapped data_source, an item
    the service refuses); the rows coalesced with it still get their rewards.
    """
    item = _item(data_source, solution_str, ground_truth, extra_info, kwargs)
    url, key = _env_url_and_key()
    result = await coalescer_for(url, key, _coalesce_config(kwargs)).score(item, timeout_s=_timeout(kwargs))
    return _output(result, _want_dict(kwargs))


def compute_score_sync(
    data_source: Any, solution_str: str, ground_truth: Any, extra_info: Any = None, **kwargs: Any
) -> float | dict[str, float]:
    """Blocking per-response form (verl 0.9's ``remote`` manager, verl < 0.9's ``naive``): one request per call."""
    item = _item(data_source, solution_str, ground_truth, extra_info, kwargs)
    return _output(shared_client().score([item], timeout_s=_timeout(kwargs))[0], _want_dict(kwargs))


def compute_score_batch(
    data_sources: Sequence[Any],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Any] | None = None,
    **kwargs: Any,
) -> list[float | dict[str, float]]:
    """verl < 0.9's batch reward function (``reward_model.reward_manager=batch``): the whole step in one request."""
    n = len(solution_strs)
    infos = list(extra_infos) if extra_infos is not None else [None] * n
    if not (len(data_sources) == len(ground_truths) == len(infos) == n):
        raise ValueError("data_sources, solution_strs, ground_truths and extra_infos must have equal lengths")
    items = [_item(*row, kwargs) for row in zip(data_sources, solution_strs, ground_truths, infos)]
    as_dict = _want_dict(kwargs)
    return [_output(r, as_dict) for r in shared_client().score(items, timeout_s=_timeout(kwargs))]
