"""The 25 IFEval instruction checkers, with the semantics and kwargs names of
Google's reference (``instruction_following_eval/instructions.py``).

Deliberate differences from the reference, all documented in the task's
README section:

- A missing required kwarg is an error here; the reference would pick a
  random value (it also *generates* instructions), which makes no sense when
  scoring.
- Keywords, section splitters and postscript markers are matched as literal
  text; the reference pastes them into regexes unescaped.
- Patterns whose reference regex can backtrack quadratically on hostile text
  (bullets, placeholders, titles, postscripts) are rewritten as linear scans
  that count the same matches; JSON nested past Python's recursion limit is
  "not JSON" rather than a crash.
- Sentences are counted with a rule-based splitter instead of nltk's punkt
  model (see ``_ifeval_text``).
"""
from __future__ import annotations

import collections
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from verifiers.base import InvalidInput
from verifiers.tasks import _ifeval_text as text

Relation = Literal["less than", "at least"]


def _compare(count: int, relation: str, threshold: int) -> bool:
    return count < threshold if relation == "less than" else count >= threshold


@dataclass(frozen=True)
class Outcome:
    followed: bool
    observed: Any = None  # what was measured, so the detail explains the verdict


Check = Callable[[str], Outcome]


class _Args(BaseModel):
    # Datasets carry every kwarg name of every instruction (nulls dropped
    # before validation); the ones an instruction doesn't take are ignored.
    model_config = ConfigDict(extra="ignore", frozen=True)


Count = Annotated[int, Field(ge=0)]


def _nonblank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be blank")
    return v.strip()


# The reference strips these phrases before use.
Phrase = Annotated[str, AfterValidator(_nonblank)]


# --- keywords -----------------------------------------------------------------


class _Keywords(_Args):
    keywords: list[str] = Field(min_length=1)


def _existence(a: _Keywords) -> Check:
    pats = [(k, re.compile(re.escape(k), re.IGNORECASE)) for k in a.keywords]

    def check(r: str) -> Outcome:
        missing = [k for k, p in pats if not p.search(r)]
        return Outcome(not missing, {"missing": missing})

    return check


class _Frequency(_Args):
    keyword: Phrase
    frequency: Count
    relation: Relation


def _frequency(a: _Frequency) -> Check:
    pat = re.compile(re.escape(a.keyword), re.IGNORECASE)

    def check(r: str) -> Outcome:
        n = len(pat.findall(r))
        return Outcome(_compare(n, a.relation, a.frequency), {"count": n})

    return check


class _Forbidden(_Args):
    forbidden_words: list[str] = Field(min_length=1)


def _forbidden(a: _Forbidden) -> Check:
    pats = [(w, re.compile(r"\b" + re.escape(w) + r"\b", re.IGNORECASE)) for w in sorted(set(a.forbidden_words))]

    def check(r: str) -> Outcome:
        found = [w for w, p in pats if p.search(r)]
        return Outcome(not found, {"found": found})

    return check


class _Letter(_Args):
    letter: str = Field(min_length=1, max_length=1)
    let_frequency: Count
    let_relation: Relation


def _letter_frequency(a: _Letter) -> Check:
    letter = a.letter.lower()

    def check(r: str) -> Outcome:
        n = collections.Counter(r.lower())[letter]
        return Outcome(_compare(n, a.let_relation, a.let_frequency), {"count": n})

    return check


# --- language -----------------------------------------------------------------


class _Language(_Args):
    language: str

    @field_validator("language")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in text.LANGDETECT_CODES:
            raise ValueError(f"{v!r} is not a language code langdetect reports ({', '.join(sorted(text.LANGDETECT_CODES))})")
        return v


def _response_language(a: _Language) -> Check:
    def check(r: str) -> Outcome:
        lang = text.detect_language(r)
        # The reference counts text with no detectable language as followed.
        return Outcome(lang is None or lang == a.language, {"detected": lang})

    return check


# --- length constraints -------------------------------------------------------


class _Words(_Args):
    num_words: Count
    relation: Relation


def _number_words(a: _Words) -> Check:
    def check(r: str) -> Outcome:
        n = text.count_words(r)
        return Outcome(_compare(n, a.relation, a.num_words), {"words": n})

    return check


class _Sentences(_Args):
    num_sentences: Count
    relation: Relation


def _number_sentences(a: _Sentences) -> Check:
    def check(r: str) -> Outcome:
        n = text.count_sentences(r)
        return Outcome(_compare(n, a.relation, a.num_sentences), {"sentences": n})

    return check


class _Paragraphs(_Args):
    num_paragraphs: Count


_DIVIDER_RE = re.compile(r"\s?\*\*\*\s?")


def _number_paragraphs(a: _Paragraphs) -> Check:
    def check(r: str) -> Outcome:
        parts = _DIVIDER_RE.split(r)
        n = len(parts)
        for i, p in enumerate(parts):
            if not p.strip():
                if i in (0, len(parts) - 1):
                    n -= 1
                else:
                    return Outcome(False, {"paragraphs": None, "problem": "empty paragraph between *** dividers"})
        return Outcome(n == a.num_paragraphs, {"paragraphs": n})

    return check


class _NthParagraph(_Args):
    num_paragraphs: int = Field(ge=1)
    nth_paragraph: int = Field(ge=1)
    first_word: Phrase


_FIRST_WORD_STOP = set(".,?!'\"")


def _nth_paragraph_first_word(a: _NthParagraph) -> Check:
    want = a.first_word.lower()

    def check(r: str) -> Outcome:
        parts = r.split("\n\n")
        n = sum(1 for p in parts if p.strip())
        # The reference indexes the raw split (blank pieces included) with n
        # counted without them; kept as is for identical verdicts.
        if a.nth_paragraph > n or not parts[a.nth_paragraph - 1].strip():
            return Outcome(False, {"paragraphs": n, "first_word": None})
        word = parts[a.nth_paragraph - 1].strip().split()[0].strip().lstrip("'").lstrip('"')
        first = ""
        for ch in word:
            if ch in _FIRST_WORD_STOP:
                break
            first += ch.lower()
        return Outcome(n == a.num_paragraphs and first == want, {"paragraphs": n, "first_word": first})

    return check


# --- detectable content -------------------------------------------------------


class _Postscript(_Args):
    postscript_marker: Phrase


def _postscript(a: _Postscript) -> Check:
    # The reference's leading \s* and trailing .*$ can't change whether a
    # match exists, so only the marker itself is searched for.
    if a.postscript_marker == "P.P.S":
        pat = re.compile(r"p\.\s?p\.\s?s")
    elif a.postscript_marker == "P.S.":
        pat = re.compile(r"p\.\s?s\.")
    else:
        pat = re.compile(re.escape(a.postscript_marker.lower()))

    def check(r: str) -> Outcome:
        return Outcome(bool(pat.search(r.lower())), {"marker": a.postscript_marker})

    return check


class _Placeholders(_Args):
    num_placeholders: Count


def count_placeholders(r: str) -> int:
    """Matches of the reference's ``\\[.*?\\]`` (brackets on one line), counted in linear time."""
    n = 0
    for line in r.split("\n"):
        pos = 0
        while (start := line.find("[", pos)) >= 0:
            end = line.find("]", start + 1)
            if end < 0:
                break  # no later "[" on this line can close either
            n += 1
            pos = end + 1
    return n


def _number_placeholders(a: _Placeholders) -> Check:
    def check(r: str) -> Outcome:
        n = count_placeholders(r)
        return Outcome(n >= a.num_placeholders, {"placeholders": n})

    return check


# --- detectable format --------------------------------------------------------


class _Bullets(_Args):
    num_bullets: Count


# The reference's ^\s* may run across blank lines; limiting it to the line's
# own indentation finds the same bullets without quadratic backtracking.
_STAR_BULLET_RE = re.compile(r"^[^\S\n]*\*[^*].*$", re.MULTILINE)
_DASH_BULLET_RE = re.compile(r"^[^\S\n]*-.*$", re.MULTILINE)


def _number_bullet_lists(a: _Bullets) -> Check:
    def check(r: str) -> Outcome:
        n = len(_STAR_BULLET_RE.findall(r)) + len(_DASH_BULLET_RE.findall(r))
        return Outcome(n == a.num_bullets, {"bullets": n})

    return check


CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def _constrained_response(a: _Args) -> Check:
    def check(r: str) -> Outcome:
        found = next((o for o in CONSTRAINED_OPTIONS if o in r.strip()), None)
        return Outcome(found is not None, {"option": found})

    return check


class _Highlights(_Args):
    num_highlights: Count


_SINGLE_HL_RE = re.compile(r"\*[^\n*]*\*")
_DOUBLE_HL_RE = re.compile(r"\*\*[^\n*]*\*\*")


def _number_highlighted_sections(a: _Highlights) -> Check:
    def check(r: str) -> Outcome:
        n = sum(1 for h in _SINGLE_HL_RE.findall(r) if h.strip("*").strip())
        n += sum(1 for h in _DOUBLE_HL_RE.findall(r) if h[2:-2].strip())
        return Outcome(n >= a.num_highlights, {"highlights": n})

    return check


class _Sections(_Args):
    section_spliter: Phrase
    num_sections: Count


def _multiple_sections(a: _Sections) -> Check:
    pat = re.compile(r"\s?" + re.escape(a.section_spliter) + r"\s?\d+\s?")

    def check(r: str) -> Outcome:
        n = len(pat.split(r)) - 1
        return Outcome(n >= a.num_sections, {"sections": n})

    return check


def _json_format(a: _Args) -> Check:
    def check(r: str) -> Outcome:
        body = r.strip()
        for fence in ("```json", "```Json", "```JSON", "```"):  # in turn, as the reference does
            body = body.removeprefix(fence)
        body = body.removesuffix("```").strip()
        try:
            json.loads(body)
        except ValueError as e:
            return Outcome(False, {"json_error": str(e)[:200]})
        except RecursionError:  # "[[[[..." nested past Python's stack: not JSON we can accept
            return Outcome(False, {"json_error": "nested too deeply"})
        return Outcome(True, {"json_error": None})

    return check


def find_title(r: str) -> str | None:
    """The first non-empty ``<<title>>``, as the reference's greedy
    ``<<[^\\n]+>>`` finds it (at most one match a line), in linear time."""
    for line in r.split("\n"):
        start = line.find("<<")
        if start < 0:
            continue
        end = line.rfind(">>")
        if end >= start + 3:
            title = line[start:end + 2]
            if title.lstrip("<").rstrip(">").strip():
                return title
    return None


def _title(a: _Args) -> Check:
    def check(r: str) -> Outcome:
        t = find_title(r)
        return Outcome(t is not None, {"title": t})

    return check


# --- combination --------------------------------------------------------------


class _RepeatPrompt(_Args):
    prompt_to_repeat: str | None = None


def _repeat_prompt(a: _RepeatPrompt) -> Check:
    want = (a.prompt_to_repeat or "").strip().lower()

    def check(r: str) -> Outcome:
        return Outcome(r.strip().lower().startswith(want), {"response_start": r.strip()[:min(len(want), 200)]})

    return check


def _two_responses(a: _Args) -> Check:
    def check(r: str) -> Outcome:
        parts = r.split("******")
        valid = []
        for i, p in enumerate(parts):
            if p.strip():
                valid.append(p)
            elif i not in (0, len(parts) - 1):
                return Outcome(False, {"responses": None, "problem": "empty response between ****** separators"})
        ok = len(valid) == 2 and valid[0].strip() != valid[1].strip()
        return Outcome(ok, {"responses": len(valid), "identical": len(valid) == 2 and not ok})

    return check


# --- change case --------------------------------------------------------------


def _english_case(upper: bool) -> Callable[[_Args], Check]:
    def build(a: _Args) -> Check:
        def check(r: str) -> Outcome:
            cased = r.isupper() if upper else r.islower()
            if not cased:
                return Outcome(False, {"all_upper" if upper else "all_lower": False})
            lang = text.detect_language(r)
            return Outcome(lang is None or lang == "en", {"all_upper" if upper else "all_lower": True, "detected": lang})

        return check

    return build


class _CapitalWords(_Args):
    capital_frequency: Count
    capital_relation: Relation


def _capital_word_frequency(a: _CapitalWords) -> Check:
    def check(r: str) -> Outcome:
        n = sum(1 for w in text.word_tokens(r) if w.isupper())
        return Outcome(_compare(n, a.capital_relation, a.capital_frequency), {"capital_words": n})

    return check


# --- start / end, punctuation -------------------------------------------------


class _End(_Args):
    end_phrase: Phrase


def _end_checker(a: _End) -> Check:
    want = a.end_phrase.lower()

    def check(r: str) -> Outcome:
        body = r.strip().strip('"').lower()
        return Outcome(body.endswith(want), {"ending": body[-max(len(want), 1) - 20:]})

    return check


def _quotation(a: _Args) -> Check:
    def check(r: str) -> Outcome:
        body = r.strip()
        return Outcome(len(body) > 1 and body[0] == '"' and body[-1] == '"', {})

    return check


def _no_comma(a: _Args) -> Check:
    def check(r: str) -> Outcome:
        n = r.count(",")
        return Outcome(n == 0, {"commas": n})

    return check


# --- registry -----------------------------------------------------------------


@dataclass(frozen=True)
class _Instruction:
    args: type[_Args]
    build: Callable[[Any], Check]


INSTRUCTIONS: dict[str, _Instruction] = {
    "keywords:existence": _Instruction(_Keywords, _existence),
    "keywords:frequency": _Instruction(_Frequency, _frequency),
    "keywords:forbidden_words": _Instruction(_Forbidden, _forbidden),
    "keywords:letter_frequency": _Instruction(_Letter, _letter_frequency),
    "language:response_language": _Instruction(_Language, _response_language),
    "length_constraints:number_words": _Instruction(_Words, _number_words),
    "length_constraints:number_sentences": _Instruction(_Sentences, _number_sentences),
    "length_constraints:number_paragraphs": _Instruction(_Paragraphs, _number_paragraphs),
    "length_constraints:nth_paragraph_first_word": _Instruction(_NthParagraph, _nth_paragraph_first_word),
    "detectable_content:postscript": _Instruction(_Postscript, _postscript),
    "detectable_content:number_placeholders": _Instruction(_Placeholders, _number_placeholders),
    "detectable_format:number_bullet_lists": _Instruction(_Bullets, _number_bullet_lists),
    "detectable_format:constrained_response": _Instruction(_Args, _constrained_response),
    "detectable_format:number_highlighted_sections": _Instruction(_Highlights, _number_highlighted_sections),
    "detectable_format:multiple_sections": _Instruction(_Sections, _multiple_sections),
    "detectable_format:json_format": _Instruction(_Args, _json_format),
    "detectable_format:title": _Instruction(_Args, _title),
    "combination:repeat_prompt": _Instruction(_RepeatPrompt, _repeat_prompt),
    "combination:two_responses": _Instruction(_Args, _two_responses),
    "change_case:english_capital": _Instruction(_Args, _english_case(upper=True)),
    "change_case:english_lowercase": _Instruction(_Args, _english_case(upper=False)),
    "change_case:capital_word_frequency": _Instruction(_CapitalWords, _capital_word_frequency),
    "startend:end_checker": _Instruction(_End, _end_checker),
    "startend:quotation": _Instruction(_Args, _quotation),
    "punctuation:no_comma": _Instruction(_Args, _no_comma),
}


@dataclass(frozen=True)
class Prepared:
    instruction_id: str
    kwargs: dict[str, Any]  # the validated kwargs actually used
    check: Check


def prepare(position: int, instruction_id: Any, kwargs: Any, prompt: str | None) -> Prepared:
    """Validate one instruction and bind its checker; ``InvalidInput`` names the problem."""
    where = f"instruction {position} ({instruction_id!r})"
    spec = INSTRUCTIONS.get(instruction_id) if isinstance(instruction_id, str) else None
    if spec is None:
        raise InvalidInput(f"{where}: unknown instruction id; supported: {', '.join(INSTRUCTIONS)}")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise InvalidInput(f"{where}: kwargs must be an object, got {type(kwargs).__name__}")
    given = {k: v for k, v in kwargs.items() if v is not None}
    if instruction_id == "combination:repeat_prompt" and not given.get("prompt_to_repeat"):
        given["prompt_to_repeat"] = prompt
        if not (prompt or "").strip():
            raise InvalidInput(f"{where}: needs kwargs.prompt_to_repeat or the item's prompt")
    try:
        args = spec.args.model_validate(given)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'kwargs'}: {err['msg']}" for err in e.errors())
        raise InvalidInput(f"{where}: bad kwargs: {problems}") from None
    return Prepared(instruction_id, args.model_dump(), spec.build(args))
