"""OpenRLHF's remote reward protocol, served at ``POST /openrlhf``.

OpenRLHF (``--remote_rm_url http://host:8000/openrlhf``) posts
``{"query": [prompt+response, ...], "prompts": [prompt, ...], "labels": [label, ...]}``
and reads ``rewards`` (the RL reward) back; newer versions also read ``scores``
(0-1, for dynamic filtering) and ``extra_logs`` (per-sample values logged to wandb).

A label is either a JSON object ``{"task": ..., "ground_truth": ..., "options": ...}``
(as a string or already decoded) or a plain ground truth scored with the route's
default task (``?task=math`` unless given). Items are scored exactly like ``/score``.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from reward_service.models import Item, ScoreResponse

__all__ = ["OpenRLHFRequest", "OpenRLHFResponse", "build_items", "parse_label", "router", "split_completion"]

router = APIRouter(tags=["integrations"])


class OpenRLHFRequest(BaseModel):
    # OpenRLHF forks add keys of their own (metadata, stop_reason, ...); ignore them.
    model_config = ConfigDict(extra="ignore")

    query: list[str] = Field(..., description="Prompt followed by the response, as OpenRLHF decoded it.")
    prompts: list[str] | None = Field(None, description="The prompts, to cut off the front of each query.")
    labels: list[Any] | None = Field(None, description="Per-sample ground truth or JSON {task, ground_truth, options}.")


class OpenRLHFResponse(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]] = Field(
        ...,
        description="Per sample: `status_ok` (1 if scored without error), "
        "`prompt_found` (1 if the prompt was cut off the query).",
    )


def split_completion(query: str, prompt: str | None) -> tuple[str, bool]:
    """The response part of ``query`` and whether the prompt was found in it.

    OpenRLHF decodes prompt and response together, so a BOS token or a
    detokenization difference can put text before the prompt: the response is
    then what follows the prompt's first occurrence. With no prompt found the
    whole query is scored, which answer extraction (last boxed answer etc.) tolerates.
    """
    if not prompt:
        return query, False
    if query.startswith(prompt):
        return query[len(prompt) :], True
    at = query.find(prompt)
    if at >= 0:
        return query[at + len(prompt) :], True
    return query, False


def parse_label(label: Any, default_task: str) -> tuple[str, Any, dict[str, Any] | None]:
    """(task, ground_truth, options) from one OpenRLHF label."""
    if isinstance(label, str) and label.lstrip().startswith("{"):
        try:
            decoded = json.loads(label)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            label = decoded
    if isinstance(label, dict) and ("ground_truth" in label or "task" in label):
        options = label.get("options") if isinstance(label.get("options"), dict) else None
        return str(label.get("task") or default_task), label.get("ground_truth"), options
    return default_task, label, None


def build_items(
    queries: Sequence[str], prompts: Sequence[str] | None, labels: Sequence[Any] | None, default_task: str
) -> tuple[list[Item], list[float]]:
    """Items to score for OpenRLHF's (queries, prompts, labels), and 1.0/0.0 per query for "prompt found"."""
    n = len(queries)
    for name, given in (("prompts", prompts), ("labels", labels)):
        if given is not None and len(given) != n:
            raise ValueError(f"{name} has {len(given)} entries for {n} queries")
    items: list[Item] = []
    found: list[float] = []
    for query, prompt, label in zip(queries, prompts or [None] * n, labels if labels is not None else [None] * n):
        completion, prompt_found = split_completion(query, prompt)
        task, ground_truth, options = parse_label(label, default_task)
        items.append(Item(task=task, prompt=prompt, completion=completion, ground_truth=ground_truth, options=options))
        found.append(float(prompt_found))
    return items, found


async def _score(request: Request, items: list[Item], timeout_s: float | None) -> ScoreResponse:
    scorer = getattr(request.app.state, "scorer", None)
    if scorer is None:
        raise HTTPException(503, "scoring backend not started")
    return await scorer.score(items, timeout_s)


@router.post("/openrlhf", response_model=OpenRLHFResponse, summary="OpenRLHF remote reward protocol",
             responses={413: {"description": "Too many queries."}, 429: {"description": "Too many items pending; retry after `Retry-After` seconds."}})
async def openrlhf(
    body: OpenRLHFRequest,
    request: Request,
    task: str = Query("math", description="Task for labels that are plain ground truths."),
    timeout_s: float | None = Query(None, gt=0, description="Deadline for the whole batch."),
) -> OpenRLHFResponse:
    n = len(body.query)
    settings = getattr(request.app.state, "settings", None)
    max_items = getattr(settings, "max_items", None)
    if max_items is not None and n > max_items:
        raise HTTPException(413, f"{n} queries; at most {max_items} per request (REWARD_SERVICE_MAX_ITEMS)")
    try:
        items, found = build_items(body.query, body.prompts, body.labels, task)
    except ValueError as e:
        raise HTTPException(422, str(e)) from e

    from reward_service.admission import admission

    async with admission(request).hold(len(items)):
        scored = await _score(request, items, timeout_s)
    rewards = [r.reward for r in scored.results]
    return OpenRLHFResponse(
        rewards=rewards,
        scores=rewards,
        extra_logs={"status_ok": [float(r.status == "ok") for r in scored.results], "prompt_found": found},
    )
