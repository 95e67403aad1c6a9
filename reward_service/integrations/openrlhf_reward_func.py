"""OpenRLHF reward-function file: ``--remote_rm_url /path/to/openrlhf_reward_func.py``.

OpenRLHF loads a ``.py`` given as ``--remote_rm_url`` and calls its
``reward_func(queries, prompts, labels)`` inside its Ray workers. This one forwards
the batch to the service's ``/score`` with the Python client, so, unlike the
``POST /openrlhf`` route, it can send ``REWARD_SERVICE_API_KEY`` and it retries
when the service is briefly unavailable. Queries and labels mean the same as for
the route; ``REWARD_SERVICE_TASK`` is the task of plain labels (default ``math``).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from reward_service.client import shared_client
from reward_service.integrations.openrlhf import build_items

__all__ = ["reward_func"]


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kwargs: Any) -> dict[str, Any]:
    """OpenRLHF's custom reward function: ``rewards``/``scores`` tensors and per-sample ``extra_logs``."""
    import torch  # OpenRLHF's own dependency; it concatenates these tensors across micro-batches

    items, found = build_items(queries, prompts, labels, os.environ.get("REWARD_SERVICE_TASK", "math"))
    results = shared_client().score(items)
    rewards = torch.tensor([r.reward for r in results], dtype=torch.float32)
    return {
        "rewards": rewards,
        "scores": rewards.clone(),
        "extra_logs": {
            "status_ok": torch.tensor([float(r.status == "ok") for r in results]),
            "prompt_found": torch.tensor(found),
        },
    }
