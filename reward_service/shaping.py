"""Reward shaping: length and format terms on top of the verifier's reward.

Pure: ``shape(raw_reward, completion, length, shaping)`` gives the shaped
reward and what was applied, or the reason the item can't be shaped (then it
is ``invalid``). Only ``ok`` results are shaped; a failed check keeps 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reward_service.models import FormatShaping, Length, OverlongShaping, Shaping

OPEN, CLOSE = "<think>", "</think>"


@dataclass
class Shaped:
    reward: float
    detail: dict[str, Any] = field(default_factory=dict)
    invalid: str | None = None  # why the item can't be shaped as asked


def overlong_penalty(tokens: int, max_tokens: int, buffer: int, penalty: float) -> float:
    """DAPO's soft overlong punishment (always <= 0)."""
    start = max_tokens - buffer
    if tokens <= start:
        return 0.0
    if tokens <= max_tokens:  # buffer > 0 here, since start < tokens <= max_tokens
        return -penalty * (tokens - start) / buffer
    return -penalty


def think_problem(completion: str, require_think: bool) -> str | None:
    """Why the reasoning block is malformed, or None when it is fine."""
    opens, closes = completion.count(OPEN), completion.count(CLOSE)
    if opens > 1 or closes > 1:
        return f"several reasoning blocks ({opens} {OPEN}, {closes} {CLOSE})"
    if opens == 1 and closes == 0:
        return f"{OPEN} is never closed"
    if opens == 1 and completion.index(CLOSE) < completion.index(OPEN):
        return f"{CLOSE} comes before {OPEN}"
    if require_think and closes == 0:
        return f"no {CLOSE} (require_think)"
    return None


def shape(raw_reward: float, completion: str, length: Length | None, shaping: Shaping) -> Shaped:
    reward, detail = raw_reward, {}
    if shaping.truncated is not None:
        truncated = bool(length and length.truncated)
        if truncated:
            reward = shaping.truncated.reward
        detail["truncated"] = {"truncated": truncated, "reward": reward if truncated else None}
    if shaping.overlong is not None:
        piece = _overlong(length, shaping.overlong)
        if isinstance(piece, str):
            return Shaped(0.0, detail, piece)
        reward += piece["penalty"]
        detail["overlong"] = piece
    if shaping.format is not None:
        detail["format"] = _format(completion, shaping.format)
        reward += detail["format"]["penalty"]
    detail["delta"] = reward - raw_reward
    return Shaped(reward, detail)


def _overlong(length: Length | None, o: OverlongShaping) -> dict[str, Any] | str:
    tokens = length.tokens if length else None
    if tokens is None:
        return "shaping.overlong needs the item's length.tokens"
    max_tokens = o.max_tokens if o.max_tokens is not None else (length.max_tokens if length else None)
    if max_tokens is None:
        return "shaping.overlong needs max_tokens, in the request or in the item's length.max_tokens"
    if o.buffer > max_tokens:
        return f"shaping.overlong.buffer ({o.buffer}) is larger than max_tokens ({max_tokens})"
    return {"tokens": tokens, "max_tokens": max_tokens, "buffer": o.buffer,
            "penalty": overlong_penalty(tokens, max_tokens, o.buffer, o.penalty)}


def _format(completion: str, f: FormatShaping) -> dict[str, Any]:
    problem = think_problem(completion, f.require_think)
    return {"malformed": problem is not None, "reason": problem, "penalty": -f.penalty if problem else 0.0}
