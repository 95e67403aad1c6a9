"""``mcq``: STEM multiple choice (GPQA-style), binary.

The final choice is read from the text after ``</think>``, and only inside the last
``<answer>...</answer>`` when there is one and no box follows it (a lone letter there is the choice), last
occurrence first: a boxed letter (``\\boxed{C}``, ``\\boxed{\\text{(C)}}``), then
"Answer: C" / "the answer is (C)", then a lone "(C)", then a last line that is a
lone letter ("C", "C."), then the text of one of the ``choices`` when they are given.
A final answer naming several letters ("A or C", ``\\boxed{A, C}``) earns nothing.
"""
from __future__ import annotations

import re
from typing import Any, Literal

from verifiers.base import InvalidInput, TaskOptions, Verdict
from verifiers.extract import final_line, last_boxed, stated_in_tag, strip_thinking
from verifiers.registry import register

LETTERS = "ABCDEFGHIJ"


class McqOptions(TaskOptions):
    think: Literal["auto", "require", "ignore"] = "auto"


def _gold(ground_truth: Any) -> tuple[str, list[str]]:
    gt, choices = ground_truth, []
    if isinstance(gt, dict):
        choices = gt.get("choices") or []
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise InvalidInput('mcq "choices" must be a list of strings')
        gt = gt.get("answer")
    if not isinstance(gt, str) or gt.strip().strip("()").upper() not in LETTERS or not gt.strip():
        raise InvalidInput('mcq ground truth must be a letter A-J or {"answer": "C", "choices": [...]}')
    letter = gt.strip().strip("()").upper()
    if choices and LETTERS.index(letter) >= len(choices):
        raise InvalidInput(f"answer {letter} is beyond the {len(choices)} choices given")
    return letter, choices


_LETTER_RE = re.compile(r"^\(?\s*([A-J])\s*\)?[.:]?$")
_SEVERAL_RE = re.compile(r"\b([A-J])\b")


def _letters_in(text: str) -> list[str]:
    t = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}", r"\1", text).strip().strip("$").strip()
    m = _LETTER_RE.match(t)
    if m:
        return [m.group(1)]
    return sorted(set(_SEVERAL_RE.findall(t)))


_ANSWER_RE = re.compile(
    r"(?:final\s+answer|the\s+answer|correct\s+(?:answer|option|choice)|answer|option|choice)"
    r"\s*(?:is|:|=)?\s*:?\s*(?:\*\*)?\s*(?:option\s+)?"
    r"(\(?(?-i:[A-J])\)?(?:\s*(?:,|and|or|&|/)\s*\(?(?-i:[A-J])\)?)*)(?![A-Za-z])",
    re.IGNORECASE,
)
_PAREN_RE = re.compile(r"\(([A-J])\)")


def _extract(response: str, choices: list[str]) -> tuple[list[str], str]:
    tag = stated_in_tag(response)
    if tag:
        picked, source = _extract_from(tag, choices)
        # "<answer>C</answer>", "<answer>A, C</answer>": the letters it names
        return (_letters_in(tag), "answer_tag") if source in ("none", "final_line") else (picked, source)
    return _extract_from(response, choices)


def _extract_from(response: str, choices: list[str]) -> tuple[list[str], str]:
    boxed = last_boxed(response)
    if boxed is not None:
        return _letters_in(boxed), "boxed"
    phrases = _ANSWER_RE.findall(response)
    if phrases:
        return sorted(set(re.findall(r"[A-J]", phrases[-1].upper()))), "answer_phrase"
    parens = _PAREN_RE.findall(response)
    if parens:
        return [parens[-1]], "parenthesised"
    line = final_line(response)
    lone = _LETTER_RE.match(line.strip().strip("*").strip()) if line else None
    if lone:  # "Answer with the letter only": the reply is "C"
        return [lone.group(1)], "final_line"
    if choices:
        norm = lambda s: re.sub(r"\W+", " ", s).strip().lower()
        tail = norm(response.strip().splitlines()[-1]) if response.strip() else ""
        hits = [LETTERS[i] for i, c in enumerate(choices) if norm(c) and f" {norm(c)} " in f" {tail} "]
        if hits:
            return hits, "choice_text"
    return [], "none"


@register(
    "mcq",
    description="Multiple choice (A-J), read from an <answer> tag, a boxed letter, 'Answer: C', '(C)', a lone letter "
                "or the choice text; binary.",
    ground_truth=['"C"', '{"answer": "C", "choices": ["...", ...]}'],
    options=McqOptions,
    timeout_s=5.0,
    version="2",  # 2: <answer> tags and a lone letter on the last line are read
)
def score_mcq(completion: str, ground_truth: Any, opts: McqOptions, prompt: str | None) -> Verdict:
    letter, choices = _gold(ground_truth)
    response = strip_thinking(completion, opts.think)
    if response is None:
        return Verdict(0.0, "ok", {"reason": "no </think> in completion and think=require", "extracted": None})
    picked, source = _extract(response, choices)
    detail: dict[str, Any] = {"extracted": picked[0] if len(picked) == 1 else picked or None,
                              "source": source, "gold": letter}
    if len(picked) > 1:
        detail["reason"] = "several choices given"
        return Verdict(0.0, "ok", detail)
    return Verdict(1.0 if picked == [letter] else 0.0, "ok", detail)
