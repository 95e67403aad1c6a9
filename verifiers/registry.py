"""Task name -> verifier, in the spirit of Reasoning Gym's dataset registry.

Adding a task type is one new module under ``verifiers/tasks/`` that calls
:func:`register`; modules there are discovered, so nothing else changes.
"""
from __future__ import annotations

import importlib
import pkgutil
import traceback
from typing import Any

from pydantic import ValidationError

from verifiers.base import InvalidInput, TaskOptions, TaskSpec, Verdict, VerifyFn

_TASKS: dict[str, TaskSpec] = {}
_loaded = False


def register(
    name: str,
    *,
    description: str,
    ground_truth: list[str],
    options: type[TaskOptions] = TaskOptions,
    timeout_s: float = 10.0,
    family: str = "",
    preload: tuple[str, ...] = (),
    version: str = "1",
    **extra: Any,
):
    """Decorator registering ``fn(completion, ground_truth, options, prompt) -> Verdict``.

    ``version`` keys the service's result cache: bump it whenever the verifier's behaviour
    changes (a fix, a new equivalence, a different partial score), or cached rewards of the
    old behaviour keep being served until they expire.
    """

    def decorate(fn: VerifyFn) -> VerifyFn:
        if name in _TASKS:
            raise ValueError(f"task {name!r} registered twice")
        _TASKS[name] = TaskSpec(name, description, ground_truth, options, fn, timeout_s, family, extra, preload, str(version))
        return fn

    return decorate


def load_all() -> dict[str, TaskSpec]:
    global _loaded
    if not _loaded:
        import verifiers.tasks as pkg

        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"verifiers.tasks.{mod.name}")
        _loaded = True
    return _TASKS


def preload() -> None:
    """Import every task's heavy lazy dependencies now (in a process that will fork workers)."""
    for spec in load_all().values():
        for module in spec.preload:
            importlib.import_module(module)


def get(name: str) -> TaskSpec | None:
    return load_all().get(name)


def task_names() -> list[str]:
    return sorted(load_all())


def score(task: str, completion: str, ground_truth: Any, options: dict[str, Any] | None = None,
          prompt: str | None = None) -> Verdict:
    """Score one item. Never raises: every failure becomes a Verdict."""
    spec = get(task)
    if spec is None:
        return Verdict(0.0, "invalid", {"error": f"unknown task {task!r}", "known_tasks": task_names()})
    try:
        opts = spec.options_model.model_validate(options or {})
    except ValidationError as e:
        return Verdict(0.0, "invalid", {"error": "bad options", "problems": _problems(e)})
    try:
        return spec.verify(completion, ground_truth, opts, prompt)
    except InvalidInput as e:
        return Verdict(0.0, "invalid", {"error": str(e)})
    except RecursionError:
        return Verdict(0.0, "error", {"error": "verifier recursion limit reached"})
    except Exception as e:  # a verifier bug or a library failure must not fail the batch
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        return Verdict(0.0, "error", {"error": tb[:500]})


def _problems(e: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in err['loc']) or '(options)'}: {err['msg']}" for err in e.errors()]
