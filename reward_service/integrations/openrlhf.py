"""OpenRLHF's remote reward protocol, served at ``POST /openrlhf``.

OpenRLHF (``--reward.remote_url http://host:8000/openrlhf``) posts
``{"query": [prompt+response, ...], "prompts": [prompt, ...], "labels": [label, ...]}``
and reads ``rewards`` (the RL reward) back; newer versions also read ``scores``
(0-1, for dynamic filtering) and ``extra_logs`` (per-sample values logged to wandb).

A label is either a JSON object ``{"task": ..., "ground_truth": ..., "options": ...}``
(as a string or already decoded) or a plain ground truth scored with the route's
default task (``?task=math`` unless given). Items are scored exactly like ``/score``;
the response is cut out of the query and its special tokens removed as
``openrlhf_items`` says.

OpenRLHF sends no ``Authorization`` header of its own; with ``REWARD_SERVICE_API_KEY``
set it reaches this route only with the key in the URL's user-info
(``http://openrlhf:KEY@host:8000/openrlhf``), which aiohttp sends as HTTP Basic.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from reward_service.integrations.openrlhf_items import build_items, parse_label, split_completion
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
        "`prompt_found` (1 if the prompt was cut off the query), "
        "`text_after_end` (1 if text followed the response's end-of-turn token; it was not scored).",
    )


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
        items, logs = build_items(body.query, body.prompts, body.labels, task)
    except ValueError as e:
        raise HTTPException(422, str(e)) from e

    from reward_service.admission import admission

    async with admission(request).hold(len(items)):
        scored = await _score(request, items, timeout_s)
    rewards = [r.reward for r in scored.results]
    return OpenRLHFResponse(
        rewards=rewards,
        scores=rewards,
        extra_logs={"status_ok": [float(r.status == "ok") for r in scored.results], **logs},
    )
