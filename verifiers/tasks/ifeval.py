"""Instruction following, scored as IFEval does (Zhou et al., 2023).

The reward is the fraction of the item's verifiable instructions the final
response follows (instruction-level accuracy, ProRL's reward), or all or
nothing with ``binary``. ``loose`` mode is IFEval's loose accuracy: an
instruction also counts as followed when the response passes it after
dropping its first line, its last line, both, and/or every ``*``.
"""
from __future__ import annotations

from typing import Any, Literal

from verifiers.base import InvalidInput, TaskOptions, Verdict, json_object
from verifiers.extract import ThinkMode, strip_thinking
from verifiers.registry import register
from verifiers.tasks._ifeval_instructions import INSTRUCTIONS, Outcome, Prepared, prepare


class IfevalOptions(TaskOptions):
    mode: Literal["strict", "loose"] = "strict"
    binary: bool = False
    think: ThinkMode = "auto"


def parse_ground_truth(ground_truth: Any, prompt: str | None) -> list[Prepared]:
    ground_truth = json_object(ground_truth, '{"instruction_id_list": [...], "kwargs": [{...}, ...]} or a JSON string of it')
    ids = ground_truth.get("instruction_id_list")
    if not isinstance(ids, list) or not ids:
        raise InvalidInput("ground_truth.instruction_id_list must be a non-empty list of instruction ids")
    kwargs = ground_truth.get("kwargs")
    if kwargs is None:
        kwargs = [{}] * len(ids)
    if not isinstance(kwargs, list):
        raise InvalidInput("ground_truth.kwargs must be a list with one object per instruction")
    if len(kwargs) != len(ids):
        raise InvalidInput(
            f"ground_truth has {len(ids)} instruction ids but {len(kwargs)} kwargs objects; they pair up one to one"
        )
    return [prepare(i, iid, kw, prompt) for i, (iid, kw) in enumerate(zip(ids, kwargs))]


def loose_variants(response: str) -> list[tuple[str, str]]:
    """IFEval's eight loose readings of a response, the unchanged one first."""
    lines = response.split("\n")
    trimmed = [
        ("as_is", response),
        ("without_first_line", "\n".join(lines[1:]).strip()),
        ("without_last_line", "\n".join(lines[:-1]).strip()),
        ("without_first_and_last_line", "\n".join(lines[1:-1]).strip()),
    ]
    return trimmed + [(f"{name}_no_asterisks" if name != "as_is" else "no_asterisks", text.replace("*", ""))
                      for name, text in trimmed]


def judge(instr: Prepared, response: str, mode: str) -> dict[str, Any]:
    variants = loose_variants(response) if mode == "loose" else [("as_is", response)]
    first: Outcome | None = None
    for name, text in variants:
        # IFEval never credits an empty reading, whatever the instruction.
        outcome = instr.check(text) if text.strip() else Outcome(False, {"empty_response": True})
        first = first or outcome
        if outcome.followed:
            return _row(instr, outcome, name if mode == "loose" else None)
    return _row(instr, first, None)


def _row(instr: Prepared, outcome: Outcome, variant: str | None) -> dict[str, Any]:
    # In loose mode ``variant`` names the reading that passed.
    row = {"id": instr.instruction_id, "followed": outcome.followed, "kwargs": instr.kwargs, "observed": outcome.observed}
    if variant is not None:
        row["variant"] = variant
    return row


@register(
    "ifeval",
    description=(
        "Instruction following (IFEval / Llama-Nemotron format): reward = fraction of the listed verifiable "
        "instructions the response after </think> follows; loose mode and all-or-nothing available."
    ),
    ground_truth=[
        '{"instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"], '
        '"kwargs": [{}, {"num_words": 100, "relation": "at least"}]}',
        "the same object as a JSON string",
    ],
    options=IfevalOptions,
    timeout_s=10.0,
    # 2: sentences counted by nltk's Punkt, as the reference does.
    version="2",
    supported_instruction_ids=list(INSTRUCTIONS),
)
def verify_ifeval(completion: str, ground_truth: Any, options: IfevalOptions, prompt: str | None = None) -> Verdict:
    instructions = parse_ground_truth(ground_truth, prompt)
    response = strip_thinking(completion, options.think)
    if response is None:
        return Verdict(0.0, "ok", {"reason": "no </think> in completion and think=require", "mode": options.mode})
    rows = [judge(instr, response, options.mode) for instr in instructions]
    followed = sum(r["followed"] for r in rows)
    fraction = followed / len(rows)
    reward = float(followed == len(rows)) if options.binary else fraction
    return Verdict(reward, "ok", {
        "mode": options.mode,
        "binary": options.binary,
        "followed": followed,
        "total": len(rows),
        "fraction": fraction,
        "instructions": rows,
    })
