"""Group statistics and advantages: the arithmetic every GRPO-style trainer does on our rewards.

Pure functions over lists of floats, one group at a time. Advantages use the
shaped reward; a group of one sample has no baseline and gets 0. Duplicates
are separate samples (the caller passes each reward as often as it occurs).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from reward_service.models import Advantage, GroupStats

EPS = 1e-6  # GRPO's guard against a zero std


def _mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def population_std(xs: Sequence[float]) -> float:
    m = _mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / len(xs))


def advantages(rewards: Sequence[float], method: Advantage) -> list[float] | None:
    """One advantage per reward, or None for ``none``.

    - ``grpo``: (r - mean) / (std + 1e-6), population std (DeepSeekMath's GRPO)
    - ``dr_grpo``: r - mean (Dr. GRPO: no std division, which over-weights easy and hard prompts)
    - ``rloo``: r - mean of the other n-1 samples (REINFORCE leave-one-out) = n/(n-1) * (r - mean)
    """
    if method == "none":
        return None
    n = len(rewards)
    if n <= 1:
        return [0.0] * n
    m = _mean(rewards)
    if max(rewards) == min(rewards):  # exactly equal rewards: no signal, not a rounding residue
        return [0.0] * n
    if method == "grpo":
        s = population_std(rewards)
        return [(r - m) / (s + EPS) for r in rewards]
    if method == "dr_grpo":
        return [r - m for r in rewards]
    if method == "rloo":
        total = math.fsum(rewards)
        return [r - (total - r) / (n - 1) for r in rewards]
    raise ValueError(f"unknown advantage estimator {method!r}")


def group_stats(rewards: Sequence[float], raw_rewards: Sequence[float]) -> GroupStats:
    """Statistics of one group: spread of the shaped reward, solved fraction of the raw one."""
    lo, hi = min(rewards), max(rewards)
    return GroupStats(count=len(rewards), mean=_mean(rewards), std=0.0 if lo == hi else population_std(rewards),
                      min=lo, max=hi, solved=sum(r == 1.0 for r in raw_rewards) / len(raw_rewards),
                      zero_variance=lo == hi)
