"""``math``: final-answer equivalence through math-verify, with a string check beside it.

Extraction order (first that finds something wins), all on the text after
the last ``</think>``:

1. the last ``\\boxed{}`` / ``\\fbox{}``;
2. unless ``require_box``: the last "final answer is X" / "the answer is X" / "Answer: X";
3. unless ``require_box``: math-verify's own search of the response (last
   LaTeX/plain expression, as its parser finds it).

The reward is binary: 1.0 when the extracted answer matches any acceptable
gold answer, either symbolically (math-verify) or as normalised strings.
"""
from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any, Literal

import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from verifiers.base import InvalidInput, TaskOptions, Verdict
from verifiers.extract import all_boxed, answer_phrase, last_boxed, strip_thinking
from verifiers.registry import register

MAX_ANSWER_CHARS = 1000  # a longer "answer" is not an answer; parsing it only costs time


class MathOptions(TaskOptions):
    think: Literal["auto", "require", "ignore"] = "auto"
    require_box: bool = False
    string_match: bool = True
    float_rounding: int = 6
    parse_timeout_s: int = 5
    verify_timeout_s: int = 5


def _gold_answers(ground_truth: Any) -> list[str]:
    gt = ground_truth
    if isinstance(gt, dict):
        if "answer" not in gt:
            raise InvalidInput('math ground truth object needs an "answer" key')
        gt = gt["answer"]
    if isinstance(gt, bool) or gt is None:
        raise InvalidInput("math ground truth must be an answer string, a number, a list of them, or {\"answer\": ...}")
    if isinstance(gt, (int, float)):
        return [repr(gt) if isinstance(gt, float) else str(gt)]
    if isinstance(gt, str):
        if not gt.strip():
            raise InvalidInput("math ground truth is an empty string")
        return [gt]
    if isinstance(gt, list) and gt and all(isinstance(g, (str, int, float)) and not isinstance(g, bool) for g in gt):
        return [str(g) for g in gt]
    raise InvalidInput("math ground truth must be an answer string, a number, a list of them, or {\"answer\": ...}")


def _timeouts(opts: MathOptions) -> tuple[int | None, int | None]:
    # math-verify times out with signal.alarm, which only works in a main thread;
    # elsewhere the executor's per-item limit is the only guard.
    if threading.current_thread() is threading.main_thread():
        return opts.parse_timeout_s, opts.verify_timeout_s
    return None, None


_LATEX_DELIMS = ("$", "\\[", "\\(", "\\boxed", "\\fbox")
_CONFIG = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


# GRPO samples many completions per prompt: they share the gold answer and
# often reach the same final answer, so parses are cached per worker.
@lru_cache(maxsize=8192)
def _parse_latex(text: str, timeout: int | None) -> list:
    return parse(text, extraction_config=_CONFIG, parsing_timeout=timeout)


def _parse_gold(gold: str, timeout: int | None) -> list:
    return _parse_latex(gold if any(d in gold for d in _LATEX_DELIMS) else "\\boxed{" + gold + "}", timeout)


def _lists_candidates(parsed: list) -> bool:
    """A top-level set of several values: "3, 5", "3 or 5", several boxes."""
    return bool(parsed) and isinstance(parsed[0], sympy.FiniteSet) and len(parsed[0].args) > 1


def _multi_valued(parsed: list) -> bool:
    """The gold answer itself is a set of values somewhere (``{1,2}``, ``x = 1, 2``)."""
    if not parsed or not isinstance(parsed[0], sympy.Basic):
        return False
    return any(isinstance(e, sympy.FiniteSet) and len(e.args) > 1 for e in sympy.preorder_traversal(parsed[0]))


_NORM_DROP = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\:|\\ |\\displaystyle|\$|\s+")


def normalize(ans: str) -> str:
    """A forgiving textual form: ``\\text{Monday}.`` and ``monday`` agree."""
    s = re.sub(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", r"\1", ans)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("^\\circ", "").replace("^{\\circ}", "")
    s = s.replace("\\%", "").replace("%", "")
    s = _NORM_DROP.sub("", s)
    return s.rstrip(".").lower()


def _extract(response: str, opts: MathOptions) -> tuple[str | None, str]:
    boxed = last_boxed(response)
    if boxed is not None:
        return boxed, "boxed"
    if opts.require_box:
        return None, "none"
    phrase = answer_phrase(response)
    if phrase is not None:
        return phrase, "answer_phrase"
    return None, "math_verify"


@register(
    "math",
    description="Final-answer equivalence (math-verify + normalised strings); binary reward.",
    ground_truth=['"<answer>"', '["<answer>", ...]', '{"answer": "<answer>"}', "<number>"],
    options=MathOptions,
    timeout_s=10.0,
)
def score_math(completion: str, ground_truth: Any, opts: MathOptions, prompt: str | None) -> Verdict:
    golds = _gold_answers(ground_truth)
    response = strip_thinking(completion, opts.think)
    if response is None:
        return Verdict(0.0, "ok", {"reason": "no </think> in completion and think=require", "extracted": None})
    parse_timeout, verify_timeout = _timeouts(opts)

    answer, source = _extract(response, opts)
    boxes = all_boxed(response) if source == "boxed" else []
    if source == "none":
        return Verdict(0.0, "ok", {"reason": "no \\boxed{} answer and require_box is set", "extracted": None})
    if answer is not None and len(answer) > MAX_ANSWER_CHARS:
        return Verdict(0.0, "ok", {"reason": f"answer longer than {MAX_ANSWER_CHARS} characters", "source": source})
    if answer is not None:
        pred = _parse_latex("\\boxed{" + answer + "}", parse_timeout)
    else:
        tail = response[-4 * MAX_ANSWER_CHARS:]
        pred = parse(tail, parsing_timeout=parse_timeout)
        answer = pred[1] if len(pred) > 1 else None
        if answer is None:
            return Verdict(0.0, "ok", {"reason": "no final answer found", "extracted": None})

    parsed_golds = []
    for gold in golds:
        gold_parsed = _parse_gold(gold, parse_timeout)
        parsed_golds.append(str(gold_parsed[0]) if gold_parsed else None)
        pred_for_gold = pred
        if source == "boxed" and len(boxes) > 1 and _multi_valued(gold_parsed):
            # A multi-valued gold answer may be given one box per value.
            answer = ", ".join(boxes)
            pred_for_gold = _parse_latex("\\boxed{" + answer + "}", parse_timeout)
        # Listing several candidates must not hit a single-valued gold answer.
        elif _lists_candidates(pred) and not _multi_valued(gold_parsed):
            continue
        if gold_parsed and pred_for_gold and verify(gold_parsed, pred_for_gold, float_rounding=opts.float_rounding,
                                           timeout_seconds=verify_timeout):
            return Verdict(1.0, "ok", {"extracted": answer, "source": source, "gold": parsed_golds[-1],
                                       "match": "math_verify"})
        if opts.string_match and normalize(answer) == normalize(gold) and normalize(answer):
            return Verdict(1.0, "ok", {"extracted": answer, "source": source, "gold": gold, "match": "string"})
    return Verdict(0.0, "ok", {"extracted": answer, "source": source, "parsed": str(pred[0]) if pred else None,
                               "gold": parsed_golds if len(parsed_golds) > 1 else parsed_golds[0], "match": None})
