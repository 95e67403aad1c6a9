"""OpenRLHF reward-function file: ``--reward.remote_url /path/to/openrlhf_reward_func.py``.

OpenRLHF (0.11) loads a ``--reward.remote_url`` ending in ``.py`` with
``spec_from_file_location`` and calls its ``reward_func(queries, prompts, labels)``
in its rollout (vLLM) Ray actors, one sample per call. This one forwards the
batch to the service's ``/score`` with the Python client, so, unlike OpenRLHF's
own HTTP call to ``POST /openrlhf``, it sends ``REWARD_SERVICE_API_KEY`` from the
environment and retries while the service is briefly unavailable: a deployment
with an API key needs this file (or the key in the route's URL). Queries and
labels mean the same as for the route; ``REWARD_SERVICE_TASK`` is the task of
plain labels (default ``math``).

It imports only what OpenRLHF's workers have or the client needs (httpx,
pydantic; torch is OpenRLHF's own), never the service's server stack.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from reward_service.client import AuthError, RewardServiceError, shared_client
from reward_service.integrations.openrlhf_items import build_items

__all__ = ["reward_func"]

log = logging.getLogger("reward_service.openrlhf")


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kwargs: Any) -> dict[str, Any]:
    """OpenRLHF's custom reward function: ``rewards``/``scores`` tensors and per-sample ``extra_logs``."""
    import torch  # OpenRLHF's own dependency; it concatenates these tensors across micro-batches

    items, logs = build_items(queries, prompts, labels, os.environ.get("REWARD_SERVICE_TASK", "math"))
    try:
        results = shared_client().score(items)
    except RewardServiceError as e:
        # OpenRLHF catches whatever this raises and logs it at INFO, leaving the sample
        # without a reward: say it where a Ray worker's log shows it, then raise (a
        # made-up reward would train the policy on nothing).
        hint = (" (REWARD_SERVICE_API_KEY in the Ray workers' environment is missing or wrong: pass it with "
                "ray job submit --runtime-env-json '{\"env_vars\": {...}}')" if isinstance(e, AuthError) else "")
        log.error("reward service at %s failed: %s%s", os.environ.get("REWARD_SERVICE_URL", "http://127.0.0.1:8000"),
                  e, hint)
        raise
    rewards = torch.tensor([r.reward for r in results], dtype=torch.float32)
    return {
        "rewards": rewards,
        "scores": rewards.clone(),
        "extra_logs": {
            "status_ok": torch.tensor([float(r.status == "ok") for r in results]),
            **{name: torch.tensor(values) for name, values in logs.items()},
        },
    }
