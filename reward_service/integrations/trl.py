"""TRL ``GRPOTrainer`` reward function backed by the reward service.

TRL calls each entry of ``reward_funcs`` as
``f(prompts=..., completions=..., completion_ids=..., trainer_state=..., log_metric=..., **dataset_columns)``
and expects one float (or None) per completion; it names the function in its logs by ``__name__``.

    from reward_service.integrations.trl import make_reward_func
    trainer = GRPOTrainer(model=..., train_dataset=ds,
                          reward_funcs=[make_reward_func(task="math", url="http://rewards:8000")])
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from reward_service.client import RewardClient
from reward_service.models import Item

__all__ = ["ServiceRewardFunc", "make_reward_func"]


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
    ) -> None:
        self.task = task
        self.url = url
        self.api_key = api_key
        self.ground_truth_column = ground_truth_column
        self.task_column = task_column
        self.options = options
        self.options_column = options_column
        self.timeout_s = timeout_s
        self.__name__ = name
        self._client: RewardClient | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The HTTP client holds a thread and sockets; the copy makes its own.
        return {**self.__dict__, "_client": None}

    def __repr__(self) -> str:
        return f"<{self.__name__}: reward service {self.url} task={self.task or '@' + str(self.task_column)}>"

    def items(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[Item]:
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
                raise ValueError(f"{self.__name__}: row {i} has no task ({self.task_column!r} empty, no default)")
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

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        items = self.items(prompts, completions, **kwargs)
        if self._client is None:
            self._client = RewardClient(self.url, self.api_key)
        results = self._client.score(items, timeout_s=self.timeout_s)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and results:
            # Failed checks pay 0 like wrong answers; surface how many so a broken
            # ground-truth column or a sandbox outage doesn't pass for a bad policy.
            log_metric(f"{self.__name__}/not_ok_frac", sum(r.status != "ok" for r in results) / len(results))
        return [r.reward for r in results]


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
) -> ServiceRewardFunc:
    """A GRPOTrainer reward function scoring completions with the reward service.

    ``task`` is the default task; ``task_column`` (a dataset column) overrides it per row, so one
    function serves a mixed math/code/mcq dataset. ``ground_truth_column`` names the dataset column
    holding each row's reference answer; ``options``/``options_column`` give task options.
    ``url``/``api_key`` default to ``REWARD_SERVICE_URL``/``REWARD_SERVICE_API_KEY``.
    """
    if not task and not task_column:
        raise ValueError("give a task, a task_column, or both")
    return ServiceRewardFunc(
        task=task,
        url=url or os.environ.get("REWARD_SERVICE_URL", "http://127.0.0.1:8000"),
        api_key=api_key if api_key is not None else (os.environ.get("REWARD_SERVICE_API_KEY") or None),
        ground_truth_column=ground_truth_column,
        task_column=task_column,
        options=options,
        options_column=options_column,
        timeout_s=timeout_s,
        name=name or (f"reward_service_{task}" if task and not task_column else "reward_service"),
    )
