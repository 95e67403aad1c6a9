"""Pure scoring: one module per task family under ``verifiers.tasks``."""
from verifiers.base import InvalidInput, TaskOptions, TaskSpec, Verdict
from verifiers.registry import get, load_all, register, score, task_names

__all__ = ["InvalidInput", "TaskOptions", "TaskSpec", "Verdict", "get", "load_all", "register", "score", "task_names"]
