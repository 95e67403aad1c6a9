"""``logic``: Reasoning Gym's procedural tasks, scored by each dataset's own validator.

Ground truth is a Reasoning Gym entry as its generators produce it,
``{"question", "answer", "metadata": {"source_dataset", ...}}``, as an object
or its JSON text.  The reward is ``score_answer`` of the dataset named in
``metadata.source_dataset`` — continuous in [0, 1], and for many datasets a
validity check against the metadata (any valid sudoku fill, any legal word
ladder) rather than a string match.

The answer is read from the response after ``</think>``: the last
``<answer>...</answer>``, else (unless ``require_tags``) the last
``\\boxed{...}``, else the final non-empty line.  With no answer found the
dataset still scores ``None``, as Reasoning Gym's own loop does (a few pay a
token 0.01 for it; ``binary`` removes that).
"""
from __future__ import annotations

from typing import Any, Literal

from verifiers.base import TaskOptions, Verdict
from verifiers.extract import answer_tag, final_line, last_boxed, strip_thinking
from verifiers.registry import register
from verifiers.tasks import _reasoning_gym as rg

Source = Literal["tag", "boxed", "final_line", "none"]

_CLIP = 500
_FULL_SCORE = 1.0 - 1e-9  # scorers that compute partial credit may land a hair below 1


class LogicOptions(TaskOptions):
    think: Literal["auto", "require", "ignore"] = "auto"
    require_tags: bool = False  # only <answer>...</answer> counts; no boxed / final-line fallback
    binary: bool = False  # 1.0 for a full score, else 0.0


def extract(response: str, require_tags: bool) -> tuple[str | None, Source]:
    tagged = answer_tag(response)
    if tagged is not None:
        return tagged, "tag"
    if require_tags:
        return None, "none"
    boxed = last_boxed(response)
    if boxed is not None:
        return boxed.strip(), "boxed"
    line = final_line(response)
    return (line, "final_line") if line is not None else (None, "none")


@register(
    "logic",
    family="logic",
    description="Reasoning Gym procedural tasks (logic puzzles, games, algorithms, arithmetic...), scored by the "
                "dataset's own score_answer in [0, 1]; answer from the last <answer> tag, else boxed, else last line.",
    ground_truth=['{"question": "...", "answer": "...", "metadata": {"source_dataset": "zebra_puzzles", ...}}',
                  "the same entry as a JSON string"],
    options=LogicOptions,
    timeout_s=10.0,
    version="2",  # 2: the last <answer> tag is the innermost one before the last </answer>
    preload=("reasoning_gym", "reasoning_gym.factory"),
    datasets=list(rg.KNOWN_DATASETS),
)
def score_logic(completion: str, ground_truth: Any, opts: LogicOptions, prompt: str | None) -> Verdict:
    entry = rg.parse_entry(ground_truth)
    dataset = entry["metadata"]["source_dataset"]
    scorer = rg.scorer_for(entry)
    rg.check_ground_truth(entry)
    detail: dict[str, Any] = {"dataset": dataset, "expected": _clip(entry["answer"])}

    response = strip_thinking(completion, opts.think)
    if response is None:
        answer, source = None, "none"
        detail["reason"] = "no </think> in completion and think=require"
    else:
        answer, source = extract(response, opts.require_tags)
    detail.update(extracted=_clip(answer), source=source)

    refusal = rg.answer_refusal(dataset, answer)
    if refusal:
        detail.update(score=None, reason=refusal)
        return Verdict(0.0, "ok", detail)

    raw = rg.run_scorer(scorer, answer, entry)
    detail["score"] = raw
    score = rg.clamp(raw)
    if score != raw:
        detail["reason"] = f"scorer returned {raw}, clamped to [0, 1]"
    if opts.binary:
        score = 1.0 if score >= _FULL_SCORE else 0.0
    return Verdict(score, "ok", detail)


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= _CLIP:
        return text
    return f"{text[:_CLIP]}... ({len(text)} chars)"
