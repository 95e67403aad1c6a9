"""``math``: final-answer equivalence through math-verify, with a string check beside it.

Extraction, all on the text after the last ``</think>``, and only inside the last
``<answer>...</answer>`` when there is one and no box follows it (unless ``require_box``); a
tag's content that is math, with no box or answer phrase in it, is read whole, like a box:

1. the last ``\\boxed{}`` / ``\\fbox{}`` -- unless a stated answer ("The final answer
   is X") comes after it and reads as an answer (the Minerva/MATH format puts both);
2. unless ``require_box``: the last "final answer is X" / "the answer is X" / "Answer: X",
   X ending at the sentence end, a closing ``$`` or a justification (``verifiers.extract``);
   a phrase in words ("the largest $n$ is 34") is read by math-verify's search of it;
3. unless ``require_box``: math-verify's own search of the response (last LaTeX/plain
   expression), refusing a number that is only a term of an expression (``x^2 + 13``)
   or a fragment of LaTeX it couldn't parse.

An expression (answer or gold) counts only if it is read whole: when LaTeX is
present but latex2sympy can't read it, math-verify's plain search would return
some number inside it (``$1 - \\frac{1}{\\mathrm{e}}$`` -> ``1``); known unreadable
spellings are rewritten first, and a gold still unreadable is compared as a string
only (``detail.gold_problem`` says so).

The reward is binary: 1.0 when the extracted answer matches any acceptable
gold answer, either symbolically (math-verify) or as normalised strings.
"""
from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from typing import Any, Literal

import sympy
from latex2sympy2_extended.math_normalization import NormalizationConfig
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from verifiers.base import InvalidInput, TaskOptions, Verdict
from verifiers.extract import all_boxed, boxed_spans, find_answer_phrase, stated_in_tag, strip_thinking
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
_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
_LATEX_ONLY = (LatexExtractionConfig(boxed_match_priority=0),)
# math-verify's defaults, except that trailing letters are never taken for a unit (see _letters_kept).
_KEEP_LETTERS = NormalizationConfig(basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all",
                                    equations=False)
_CONFIG_KEEP = (LatexExtractionConfig(boxed_match_priority=0, normalization_config=_KEEP_LETTERS),
                ExprExtractionConfig())
_LATEX_ONLY_KEEP = _CONFIG_KEEP[:1]


class _ParseCache:
    """Parses per worker, keyed by text and configuration.

    GRPO samples many completions per prompt: they share the gold answer and
    often reach the same final answer. A failed parse is kept only when it
    failed fast: a parse that ran into its timeout (CPU contention can do that
    to a parse that normally takes milliseconds) is not a verdict on the text,
    and caching it would score every later identical answer 0.
    """

    def __init__(self, maxsize: int = 8192, clock=time.monotonic) -> None:
        self._items: OrderedDict[tuple, list] = OrderedDict()
        self._lock = threading.Lock()
        self.maxsize = maxsize
        self._clock = clock

    def parse(self, text: str, config: tuple, timeout: int | None) -> list:
        key = (text, config)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        t0 = self._clock()
        result = parse(text, extraction_config=list(config), parsing_timeout=timeout)
        slow = timeout is None or self._clock() - t0 >= timeout / 2
        if _has_value(result) or not slow:
            with self._lock:
                self._items[key] = result
                if len(self._items) > self.maxsize:
                    self._items.popitem(last=False)
        return result

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_CACHE = _ParseCache()


def _has_value(parsed: list) -> bool:
    """math-verify read an expression (its first item is then not the raw matched string)."""
    return bool(parsed) and not isinstance(parsed[0], str)


# Spellings latex2sympy can't read, rewritten to ones it can. Each is meaning-preserving.
_REWRITES = (
    (re.compile(r"\\(?:mathrm|rm|operatorname|textrm|mathit)\s*\{\s*([ei])\s*\}"), r"\1"),  # \mathrm{e} -> e
    (re.compile(r"(\d)\s*\{\s*,\s*\}\s*(?=\d{3}(?!\d))"), r"\1"),  # 14{,}916 -> 14916
    (re.compile(r"\\text\s*\{\s*(-?\d+(?:\.\d+)?)\s*\}"), r"\1"),  # \text{13} -> 13
)


def _rewrite(text: str) -> str:
    for pattern, repl in _REWRITES:
        text = pattern.sub(repl, text)
    return text


def _read_whole(text: str, timeout: int | None, units: bool = True) -> tuple[list, str | None]:
    parsed, problem, _ = _read_whole_from(text, timeout, units)
    return parsed, problem


def _read_whole_from(text: str, timeout: int | None, units: bool = True) -> tuple[list, str | None, bool]:
    """math-verify's parse of ``text``, refusing a fragment of it.

    When LaTeX is there but latex2sympy can't read it, math-verify's plain-expression
    search still finds some number in it (``$1 - \\frac{1}{\\mathrm{e}}$`` gives ``1``):
    that is a different, easier answer, not the one written. So: the LaTeX-only parse
    must succeed, or find no LaTeX at all; a rewrite of known unreadable spellings is
    tried before giving up. Returns (parsed, problem, whether the value came from the
    plain-expression search because there was no LaTeX), ``problem`` saying why nothing
    was accepted. ``units=False`` keeps trailing letters as symbols (see ``_letters_kept``).
    """
    problem = None
    latex_only, config = (_LATEX_ONLY, _CONFIG) if units else (_LATEX_ONLY_KEEP, _CONFIG_KEEP)
    for candidate in dict.fromkeys((text, _rewrite(text))):
        latex = _CACHE.parse(candidate, latex_only, timeout)
        if _has_value(latex) and candidate.startswith("\\boxed{"):
            return latex, None, False  # a box outranks everything else in the full search anyway
        if _has_value(latex) or not latex:
            full = _CACHE.parse(candidate, config, timeout)
            if _has_value(full):
                return full, None, not latex
            problem = "no expression math-verify can parse"
        else:
            problem = f"LaTeX {latex[0][:80]!r} could not be parsed whole"
    return [], problem, False


# A gold answer that is words ("Paris", "NO", "New York"): math-verify would read it as a
# product of one-letter symbols, equal to any anagram ("Sirap") or reordering ("BDAC" for
# "ABCD"), so it is compared as text only.
_WORD_GOLD = re.compile(r"[A-Za-z][A-Za-z .,'\-]*")
_LETTER_RUN = re.compile(r"[A-Za-z]{2,}")


def _is_word_gold(gold: str) -> bool:
    return bool(_WORD_GOLD.fullmatch(gold.strip())) and bool(_LETTER_RUN.search(gold))


def _read_gold(gold: str, timeout: int | None, units: bool = True) -> tuple[list, str | None]:
    return _read_whole(gold if any(d in gold for d in _LATEX_DELIMS) else "\\boxed{" + gold + "}", timeout, units)


# Letters written right after a number or a closing brace, ending the gold ("2ab", "x = 3t",
# "\frac{1}{2}m"). math-verify strips a trailing word it knows as a unit (ab, bc, by, m, s, t,
# d, ...), so gold "2ab" reads as 2 and a bare "2" would earn the reward. Written attached, in
# LaTeX, such letters are a product; a unit is set apart ("5 km", "3\text{ m}", "6\,\text{cm}").
_ATTACHED_LETTERS = re.compile(r"[\d}][A-Za-z]+[\s$}]*$")


def _letters_kept(gold: str, parsed: list, timeout: int | None) -> list | None:
    """The gold read with its attached trailing letters as symbols, when unit stripping had
    dropped them; None when the gold has none or math-verify kept them anyway."""
    if not parsed or not _ATTACHED_LETTERS.search(gold):
        return None
    kept, _ = _read_gold(gold, timeout, units=False)
    return kept if kept and str(kept[0]) != str(parsed[0]) else None


def _lists_candidates(parsed: list) -> bool:
    """A top-level set of several values: "3, 5", "3 or 5", several boxes."""
    return bool(parsed) and isinstance(parsed[0], sympy.FiniteSet) and len(parsed[0].args) > 1


def _multi_valued(parsed: list) -> bool:
    """The gold answer has several parts: a set of values somewhere (``{1,2}``, ``x = 1, 2``),
    an interval, a tuple or a matrix (math-verify may match ``{1,3}`` to ``(1,3)``)."""
    if not parsed or not isinstance(parsed[0], sympy.Basic):
        return False
    if isinstance(parsed[0], (sympy.Interval, sympy.Tuple, sympy.MatrixBase)):
        return True
    return any(isinstance(e, sympy.FiniteSet) and len(e.args) > 1 for e in sympy.preorder_traversal(parsed[0]))


_NORM_DROP = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\:|\\ |\\displaystyle|\$|\s+")


def normalize(ans: str) -> str:
    """A forgiving textual form: ``\\text{Monday}.`` and ``monday`` agree."""
    s = re.sub(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", r"\1", ans)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("^\\circ", "").replace("^{\\circ}", "")
    s = s.replace("\\%", "").replace("%", "")
    s = _NORM_DROP.sub("", s)
    return s.rstrip(".").lower()


# Prose in a stated answer: a run of two or more letters that is not a LaTeX command
# ("The largest $n$ is 34", "3.5 km"). "or"/"and" between values are list words.
_LATEX_WORDS = re.compile(r"\\[A-Za-z]+(?:\s*\{[^{}]*\})?")
_PROSE = re.compile(r"(?<![A-Za-z])(?!(?:or|and)(?![A-Za-z]))[A-Za-z]{2,}")
_LIST_WORD = re.compile(r"\s+(?:or|and)\s+", re.IGNORECASE)


_ATTACHED_RUN = re.compile(r"(?<=[\d}])[A-Za-z]+")


def _reads_as_math(answer: str, units: bool = True) -> bool:
    """No prose in it. With ``units=False`` letters attached to a number are symbols ("2ba")."""
    text = _LATEX_WORDS.sub(" ", answer)
    return not _PROSE.search(text if units else _ATTACHED_RUN.sub("x", text))


def _read_answer(answer: str, timeout: int | None, units: bool = True) -> tuple[list, str | None]:
    """A boxed answer, or a stated one that reads as math: the whole of it."""
    return _read_whole("\\boxed{" + _LIST_WORD.sub(" \\\\text{ or } ", answer) + "}", timeout, units)


# A number right after an operator is a term of an expression, not an answer:
# "The area is x^2 + 13" does not answer 13.
_OPERATOR_BEFORE = re.compile(r"(?:[+\-*/^×·÷]|\\cdot|\\times|\\div|\\pm)\s*$")


_DOLLAR = re.compile(r"(?<!\\)\$")


def _inside_math(text: str, at: int) -> bool:
    """``text[at]`` sits between math delimiters (``$ \n 9 \n $``): math the LaTeX reader
    rejected, so a number found there by the plain search is a fragment of it. A lone
    ``$`` before a number is a currency sign ("$1,000.99"), not math."""
    before, after = text[:at], text[at:]
    if len(_DOLLAR.findall(before)) % 2 == 1 and _DOLLAR.search(after):
        return True
    return before.rfind("\\(") > before.rfind("\\)") and "\\)" in after or \
        before.rfind("\\[") > before.rfind("\\]") and "\\]" in after


def _search(text: str, timeout: int | None, units: bool = True) -> tuple[list, str | None]:
    """math-verify's own search of ``text`` (its last LaTeX or plain expression)."""
    parsed, problem, plain = _read_whole_from(text, timeout, units)
    if not _has_value(parsed):
        return [], problem
    found = parsed[1] if len(parsed) > 1 and isinstance(parsed[1], str) else None
    at = text.rfind(found) if found else -1
    if plain and at >= 0:
        if at > 0 and _OPERATOR_BEFORE.search(text[max(0, at - 16):at]):
            return [], f"the last expression found ({found!r}) is a term of a larger expression"
        if _inside_math(text, at):
            return [], f"the last expression found ({found!r}) is part of LaTeX that could not be parsed"
    return parsed, None


def _extract(response: str, opts: MathOptions, timeout: int | None, units: bool = True,
             tagged: bool = False) -> tuple[str | None, str, list, str | None]:
    """(answer text, source, parsed answer, why nothing parsed). ``tagged``: ``response`` is the
    content of an ``<answer>`` tag, read whole when it is math and holds no box or phrase."""
    boxes = boxed_spans(response)
    phrase = None if opts.require_box else find_answer_phrase(response)
    if phrase is not None and len(phrase.text) > MAX_ANSWER_CHARS:
        phrase = None
    stated: tuple[list, str | None] = ([], None)
    if phrase is not None:
        if _reads_as_math(phrase.text, units):
            stated = _read_answer(phrase.text, timeout, units)
        if not _has_value(stated[0]):
            stated = _search(phrase.text, timeout, units)
    if boxes:
        box = boxes[-1]
        # "\boxed{255} ... Final Answer: The final answer is $10,455$." states its answer last.
        if phrase is not None and phrase.start >= box.end and _has_value(stated[0]):
            return _stated_text(phrase.text, stated[0]), "answer_phrase", stated[0], None
        if len(box.text) > MAX_ANSWER_CHARS:
            return box.text, "boxed", [], f"answer longer than {MAX_ANSWER_CHARS} characters"
        if not _reads_as_math(box.text, units):  # "\boxed{\frac{3}{4} cups}": read the math, not c*u*p*s
            parsed, problem = _search(box.text, timeout, units)
            if _has_value(parsed):
                return box.text, "boxed", parsed, None
        parsed, problem = _read_answer(box.text, timeout, units)
        return box.text, "boxed", parsed, problem
    if opts.require_box:
        return None, "none", [], None
    if phrase is not None and _has_value(stated[0]):
        return _stated_text(phrase.text, stated[0]), "answer_phrase", stated[0], None
    if tagged and phrase is None and len(response) <= MAX_ANSWER_CHARS and _reads_as_math(response, units):
        # Whole, as a box is: the search would take the last of "12 or 13".
        parsed, problem = _read_answer(response, timeout, units)
        return response, "answer_tag", parsed, problem
    parsed, problem = _search(response[-4 * MAX_ANSWER_CHARS:], timeout, units)
    if _has_value(parsed):
        return ((parsed[1] if len(parsed) > 1 else str(parsed[0])), "answer_tag" if tagged else "math_verify",
                parsed, None)
    if phrase is not None:  # nothing parses: the phrase is still the answer given, for the string check
        return phrase.text, "answer_phrase", [], stated[1]
    if tagged:  # and so is the tag's content
        return response, "answer_tag", [], problem
    return None, "math_verify", [], problem


def _stated_text(phrase: str, parsed: list) -> str:
    """The phrase, or the part of it math-verify's search read ("34" of "the largest $n$ is 34")."""
    if _reads_as_math(phrase) or len(parsed) < 2 or not isinstance(parsed[1], str):
        return phrase
    return parsed[1]


@register(
    "math",
    description="Final-answer equivalence (math-verify + normalised strings); binary reward.",
    ground_truth=['"<answer>"', '["<answer>", ...]', '{"answer": "<answer>"}', "<number>"],
    options=MathOptions,
    timeout_s=10.0,
    # 2: answer phrases end where the answer does, partial golds read whole or as strings, no
    # fallback on a term of an expression, no memoised timeouts. 3: word golds compared as text.
    # 4: letters attached to a gold's number are a product, not a unit; the last <answer> tag is read.
    version="4",
)
def score_math(completion: str, ground_truth: Any, opts: MathOptions, prompt: str | None) -> Verdict:
    golds = _gold_answers(ground_truth)
    response = strip_thinking(completion, opts.think)
    if response is None:
        return Verdict(0.0, "ok", {"reason": "no </think> in completion and think=require", "extracted": None})
    parse_timeout, verify_timeout = _timeouts(opts)
    # Asked for <answer>...</answer> (R1-Zero-style prompts), the answer is judged inside the last
    # tag only: a number after it ("<answer>12</answer> in 7 steps") is not the answer. A box
    # after the tag is the later statement ("format: <answer>...</answer>" echoed, then \boxed{}).
    tag = None if opts.require_box else stated_in_tag(response)
    if tag:
        response = tag

    answer, source, pred, problem = _extract(response, opts, parse_timeout, tagged=bool(tag))
    if source == "none":
        return Verdict(0.0, "ok", {"reason": "no \\boxed{} answer and require_box is set", "extracted": None})
    if answer is None:
        detail = {"reason": "no final answer found", "extracted": None}
        if problem:
            detail["parse_problem"] = problem
        return Verdict(0.0, "ok", detail)
    if len(answer) > MAX_ANSWER_CHARS:
        return Verdict(0.0, "ok", {"reason": f"answer longer than {MAX_ANSWER_CHARS} characters", "source": source})
    boxes = all_boxed(response) if source == "boxed" else []

    parsed_golds: list[str | None] = []
    gold_problems: list[str] = []
    shown = pred  # the answer as last read: golds with attached letters read it with them kept
    for gold in golds:
        if _is_word_gold(gold):
            parsed_golds.append(gold)
            if opts.string_match and normalize(answer) == normalize(gold):
                return Verdict(1.0, "ok", {"extracted": answer, "source": source, "gold": gold, "match": "string"})
            continue
        gold_parsed, gold_problem = _read_gold(gold, parse_timeout)
        pred_for_gold, answer_for_gold, units = pred, answer, True
        kept = _letters_kept(gold, gold_parsed, parse_timeout)
        if kept is not None:  # gold "2ab" is 2*a*b, and the answer is found and read the same way
            gold_parsed, units = kept, False
            answer_for_gold, _, pred_for_gold, _ = _extract(response, opts, parse_timeout, False, bool(tag))
            answer_for_gold, shown = answer_for_gold or "", pred_for_gold
        parsed_golds.append(str(gold_parsed[0]) if gold_parsed else None)
        if gold_problem:
            gold_problems.append(gold_problem)
        if source == "boxed" and len(boxes) > 1 and _multi_valued(gold_parsed):
            # A multi-valued gold answer may be given one box per value.
            answer_for_gold = ", ".join(boxes)
            pred_for_gold, _ = _read_answer(answer_for_gold, parse_timeout, units)
        # Listing several candidates must not hit a single-valued gold answer.
        elif _lists_candidates(pred) and not _multi_valued(gold_parsed):
            continue
        if gold_parsed and pred_for_gold and verify(gold_parsed, pred_for_gold, float_rounding=opts.float_rounding,
                                                    timeout_seconds=verify_timeout):
            return Verdict(1.0, "ok", {"extracted": answer_for_gold, "source": source, "gold": parsed_golds[-1],
                                       "match": "math_verify"})
        if opts.string_match and normalize(answer_for_gold) == normalize(gold) and normalize(answer_for_gold):
            detail = {"extracted": answer_for_gold, "source": source, "gold": gold, "match": "string"}
            if gold_problem:
                detail["gold_problem"] = gold_problem + "; compared as a string only"
            return Verdict(1.0, "ok", detail)
    detail = {"extracted": answer, "source": source, "parsed": str(shown[0]) if shown else None,
              "gold": parsed_golds if len(parsed_golds) > 1 else parsed_golds[0], "match": None}
    if problem:
        detail["parse_problem"] = problem
    if gold_problems:
        # The gold can't be read whole: only an answer written the same way can match it.
        detail["gold_problem"] = "; ".join(gold_problems) + "; compared as a string only"
    return Verdict(0.0, "ok", detail)
