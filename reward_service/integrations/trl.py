"""TRL ``GRPOTrainer`` reward function backed by the reward service.

TRL calls each entry of ``reward_funcs`` as
``f(prompts=..., completions=..., completion_ids=..., trainer_state=..., log_metric=..., **dataset_columns)``
and expects one float (or None) per completion; it names the function in its logs by ``__name__``.
TRL (1.16) awaits a function whose ``__call__`` is a coroutine function on one event loop of its own,
in a daemon thread, all async reward functions of a step together under ``asyncio.gather``; it turns
``None`` into NaN, which its advantages leave out (a row that every function scored None gets advantage 0).

    from reward_service.integrations.trl import make_reward_func
    trainer = GRPOTrainer(model=..., train_dataset=ds,
                          reward_funcs=[make_reward_func(task="math", url="http://rewards:8000")])
"""
from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, overload

from reward_service.client import AsyncRewardClient, RewardClient
from reward_service.models import Item, Result

__all__ = ["AsyncServiceRewardFunc", "MASKABLE_STATUSES", "ServiceRewardFunc", "make_reward_func"]

# Every status but "ok": which of them a function returns None for is the user's choice (``none_for``).
MASKABLE_STATUSES = ("timeout", "error", "invalid")


def _statuses(none_for: Iterable[str]) -> frozenset[str]:
    if isinstance(none_for, bool):
        raise TypeError(f"none_for takes statuses, e.g. ('error', 'invalid'), not {none_for!r}")
    chosen = frozenset((none_for,) if isinstance(none_for, str) else none_for)
    unknown = chosen - set(MASKABLE_STATUSES)
    if unknown:
        raise ValueError(f"none_for: {sorted(unknown)} not among {MASKABLE_STATUSES} (an ok item is always scored)")
    return chosen


def _text(value: Any) -> str:
    """Text of a completion: a string, or conversational messages whose content may be typed parts."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        if "content" in value:  # a message
            return _text(value["content"])
        return str(value.get("text", "")) if value.get("type", "text") == "text" else ""  # a content part
    if isinstance(value, Sequence):
        # Only what the model said is scored; tool results in agentic rollouts are not its answer.
        said = [m for m in value if not (isinstance(m, Mapping) and m.get("role", "assistant") != "assistant")]
        return "\n".join(t for t in map(_text, said) if t)
    return str(value)


def _prompt_text(prompt: Any) -> str | None:
    if prompt is None or isinstance(prompt, str):
        return prompt
    # The last user turn is what instruction-following checks are about.
    users = [m for m in prompt if isinstance(m, Mapping) and m.get("role") == "user"]
    return _text(users[-1].get("content", "")) if users else None


class ServiceRewardFunc:
    """A picklable callable class: TRL accepts those as reward functions and names them by ``__name__``."""

    def __init__(
        self,
        *,
        task: str | None,
        url: str,
        api_key: str | None,
        ground_truth_column: str,
        task_column: str | None,
        options: dict[str, Any] | None,
        options_column: str | None,
        timeout_s: float | None,
        name: str,
        none_for: Iterable[str] = (),
    ) -> None:
        self.task = task
        self.url = url
        self.api_key = api_key
        self.ground_truth_column = ground_truth_column
        self.task_column = task_column
        self.options = options
        self.options_column = options_column
        self.timeout_s = timeout_s
        self.none_for = _statuses(none_for)
        self.__name__ = name
        self._client: RewardClient | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The HTTP client holds a thread and sockets; the copy makes its own.
        return {**self.__dict__, "_client": None}

    def __repr__(self) -> str:
        return f"<{self.__name__}: reward service {self.url} task={self.task or '@' + str(self.task_column)}>"

    def items(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[Item | None]:
        """One item per row; None for a row with no task (its task column empty and no default task):
        this function doesn't apply to it, and TRL takes a None as exactly that."""
        n = len(completions)
        truths = columns.get(self.ground_truth_column)
        if truths is None:
            raise KeyError(
                f"{self.__name__}: dataset column {self.ground_truth_column!r} not passed to the reward function; "
                f"columns seen: {sorted(k for k in columns if not k.startswith(('trainer_', 'log_')))}"
            )
        tasks = columns.get(self.task_column) if self.task_column else None
        per_row_options = columns.get(self.options_column) if self.options_column else None
        items = []
        for i in range(n):
            task = (tasks[i] if tasks is not None and tasks[i] else None) or self.task
            if not task:
                items.append(None)
                continue
            options = (per_row_options[i] if per_row_options is not None else None) or self.options
            items.append(
                Item(
                    task=task,
                    prompt=_prompt_text(prompts[i]) if prompts is not None else None,
                    completion=_text(completions[i]),
                    ground_truth=truths[i],
                    options=options,
                )
            )
        return items

    def rewards(self, results: Sequence[Result], log_metric: Any = None) -> list[float | None]:
        """TRL's rewards for the service's results: None for a status in ``none_for``, else the reward."""
        if callable(log_metric) and results:
            # Failed checks pay 0 like wrong answers (or None when asked); surface how many so a broken
            # ground-truth column or a sandbox outage doesn't pass for a bad policy.
            log_metric(f"{self.__name__}/not_ok_frac", sum(r.status != "ok" for r in results) / len(results))
        return [None if r.status in self.none_for else r.reward for r in results]

    def rows(self, items: Sequence[Item | None], results: Sequence[Result], log_metric: Any = None) -> list[float | None]:
        """The rewards of the scored rows (``results``, in order) in their rows; None where no item was sent."""
        scored = iter(self.rewards(results, log_metric))
        return [None if item is None else next(scored) for item in items]

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        items = self.items(prompts, completions, **kwargs)
        sent = [item for item in items if item is not None]
        if self._client is None:
            self._client = RewardClient(self.url, self.api_key)
        results = self._client.score(sent, timeout_s=self.timeout_s) if sent else []
        return self.rows(items, results, kwargs.get("log_metric"))


class AsyncServiceRewardFunc(ServiceRewardFunc):
    """The same reward function with an async ``__call__``: TRL awaits it on its event loop, alongside
    the step's other async reward functions, instead of blocking the step on it alone.

    One :class:`AsyncRewardClient` per event loop, made on the loop's first call and reused by
    every later call there (TRL keeps one loop for the whole run): httpx connections belong to
    the loop that opened them, so a call from another loop never touches this one's.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_clients()

    def _init_clients(self) -> None:
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncRewardClient] = (
            weakref.WeakKeyDictionary())
        self._clients_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for transient in ("_clients", "_clients_lock"):
            state.pop(transient, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_clients()

    def client(self) -> AsyncRewardClient:
        """The client of the running event loop."""
        loop = asyncio.get_running_loop()
        with self._clients_lock:  # loops in several threads may call at once
            client = self._clients.get(loop)
            if client is None:
                client = self._clients[loop] = AsyncRewardClient(self.url, self.api_key)
            return client

    async def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                       **kwargs: Any) -> list[float | None]:
        items = self.items(prompts, completions, **kwargs)
        sent = [item for item in items if item is not None]
        results = await self.client().score(sent, timeout_s=self.timeout_s) if sent else []
        return self.rows(items, results, kwargs.get("log_metric"))

    async def aclose(self) -> None:
        """Close the running loop's client (the next call opens another)."""
        with self._clients_lock:
            client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


@overload
def make_reward_func(
    task: str | None = ..., url: str | None = ..., api_key: str | None = ..., ground_truth_column: str = ...,
    task_column: str | None = ..., options: dict[str, Any] | None = ..., *, options_column: str | None = ...,
    timeout_s: float | None = ..., name: str | None = ..., none_for: Iterable[str] = ...,
    asynchronous: Literal[False] = ...,
) -> ServiceRewardFunc: ...


@overload
def make_reward_func(
    task: str | None = ..., url: str | None = ..., api_key: str | None = ..., ground_truth_column: str = ...,
    task_column: str | None = ..., options: dict[str, Any] | None = ..., *, options_column: str | None = ...,
    timeout_s: float | None = ..., name: str | None = ..., none_for: Iterable[str] = ...,
    asynchronous: Literal[True],
) -> AsyncServiceRewardFunc: ...


def make_reward_func(
    task: str | None = "math",
    url: str | None = None,
    api_key: str | None = None,
    ground_truth_column: str = "ground_truth",
    task_column: str | None = None,
    options: dict[str, Any] | None = None,
    *,
    options_column: str | None = None,
    timeout_s: float | None = None,
    name: str | None = None,
    none_for: Iterable[str] = (),
    asynchronous: bool = False,
) -> ServiceRewardFunc:
    """A GRPOTrainer reward function scoring completions with the reward service.

    ``task`` is the default task; ``task_column`` (a dataset column) overrides it per row, so one
    function serves a mixed math/code/mcq dataset; a row whose task column is empty, with no default
    ``task``, gets ``None`` (not this function's row: another reward function of the trainer scores
    it) and is not sent. ``ground_truth_column`` names the dataset column
    holding each row's reference answer; ``options``/``options_column`` give task options.
    ``url``/``api_key`` default to ``REWARD_SERVICE_URL``/``REWARD_SERVICE_API_KEY``.

    ``asynchronous=True`` gives an :class:`AsyncServiceRewardFunc`: TRL awaits it on its own event
    loop, concurrently with the step's other async reward functions.

    ``none_for`` names statuses (of ``"timeout"``, ``"error"``, ``"invalid"``) whose items get
    ``None`` instead of 0.0; TRL leaves them out of the group baseline and gives a row that every
    reward function left out advantage 0. The default, ``()``, scores every failed check 0.0: a None
    is an escape from a negative advantage, and a policy pushed off its wrong answers drifts toward
    any failure it can cause that costs it nothing. So name only statuses your completions can't
    cause. ``"invalid"`` is the dataset's fault (unknown task, bad options, unusable ground truth;
    a code answer in a language its tests can't run is a wrong answer, ``ok`` with 0).
    ``"error"`` is mostly the service's (sandbox or worker failure, a missing toolchain), but an
    answer that crashes a verifier gets it too, as does code in a language whose toolchain the host
    lacks. ``"timeout"`` a completion can cause by being slow. ``("invalid",)`` suits math/mcq/ifeval
    data; add ``"error"`` to keep an outage's zeros out of the advantages, and watch
    ``not_ok_frac``.
    ``<name>/not_ok_frac`` is logged either way.
    """
    if not task and not task_column:
        raise ValueError("give a task, a task_column, or both")
    cls = AsyncServiceRewardFunc if asynchronous else ServiceRewardFunc
    return cls(
        task=task,
        url=url or os.environ.get("REWARD_SERVICE_URL", "http://127.0.0.1:8000"),
        api_key=api_key if api_key is not None else (os.environ.get("REWARD_SERVICE_API_KEY") or None),
        ground_truth_column=ground_truth_column,
        task_column=task_column,
        options=options,
        options_column=options_column,
        timeout_s=timeout_s,
        name=name or (f"reward_service_{task}" if task and not task_column else "reward_service"),
        none_for=none_for,
    )
