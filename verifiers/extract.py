"""Finding the answer in a completion, shared by every verifier.

Extraction is separate from judging (as in math-verify's parser/grader
split): these functions only locate text; each verifier decides what it is
worth. All of them are linear-time scans so a hostile completion can't make
extraction itself slow.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ThinkMode = Literal["auto", "require", "ignore"]

THINK_CLOSE = "</think>"


def strip_thinking(text: str, mode: ThinkMode = "auto") -> str | None:
    """The part of ``text`` that counts as the final response.

    - ``auto``: text after the last ``</think>`` if there is one, else all of it.
    - ``require``: text after the last ``</think>``; ``None`` when it is missing
      (an unfinished chain of thought earns nothing, as in ProRL's reward).
    - ``ignore``: the whole text.
    """
    if mode == "ignore":
        return text
    idx = text.rfind(THINK_CLOSE)
    if idx < 0:
        return None if mode == "require" else text
    return text[idx + len(THINK_CLOSE):]


_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*(\{)?")
_BARE_TOKEN_RE = re.compile(r"[^\s$\\{}]+")


@dataclass(frozen=True)
class Span:
    """Found text and where it sits in the searched string (``text[start:end]`` holds it)."""
    text: str
    start: int
    end: int


def boxed_spans(text: str) -> list[Span]:
    """Every ``\\boxed{...}`` / ``\\fbox{...}`` (braces balanced), in order; ``start``/``end``
    cover the whole command, ``text`` is the content.

    ``\\boxed 5`` (no braces) yields the following token, as LaTeX reads it.
    """
    out: list[Span] = []
    closing: dict[int, int] | None = None  # brace matches, found once (scanning per box is quadratic)
    pos = 0
    while True:
        m = _BOX_RE.search(text, pos)
        if not m:
            return out
        if m.group(1) is None:
            tok = _BARE_TOKEN_RE.match(text, m.end())
            if tok:
                out.append(Span(tok.group(0), m.start(), tok.end()))
            pos = m.end()
            continue
        if closing is None:
            closing = _matching_braces(text)
        end = closing.get(m.end() - 1)
        if end is not None:
            out.append(Span(text[m.end():end], m.start(), end + 1))
        pos = end + 1 if end is not None else m.end()  # a box never closed: look for boxes inside it


def _matching_braces(text: str) -> dict[int, int]:
    """Index of each ``{`` that is closed -> index of its ``}`` (``\\{`` and ``\\}`` are not braces)."""
    pairs: dict[int, int] = {}
    opened: list[int] = []
    for m in _BRACE_OR_ESCAPE_RE.finditer(text):
        c = m.group()
        if c == "{":
            opened.append(m.start())
        elif c == "}" and opened:
            pairs[opened.pop()] = m.start()
    return pairs


_BRACE_OR_ESCAPE_RE = re.compile(r"\\.|[{}]", re.DOTALL)


def all_boxed(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` / ``\\fbox{...}``, in order."""
    return [s.text for s in boxed_spans(text)]


def last_boxed(text: str) -> str | None:
    boxes = all_boxed(text)
    return boxes[-1] if boxes else None


_OPEN_TAG_RE = re.compile(r"<answer>", re.IGNORECASE)
_CLOSE_TAG_RE = re.compile(r"</answer>", re.IGNORECASE)


def answer_tag_span(text: str) -> Span | None:
    """The last ``<answer>...</answer>``: from the last opening tag before the last closing one;
    ``text`` is its content, stripped, ``start``/``end`` cover the tags. Two scans, not
    ``<answer>(.*?)</answer>``: tried at every opening tag, that regex is quadratic in a run of
    unclosed ones (16 s for 20,000)."""
    close = None
    for close in _CLOSE_TAG_RE.finditer(text):
        pass
    if close is None:
        return None
    opening = None
    for opening in _OPEN_TAG_RE.finditer(text, 0, close.start()):
        pass
    if opening is None:
        return None
    return Span(text[opening.end():close.start()].strip(), opening.start(), close.end())


def answer_tag(text: str) -> str | None:
    """Content of the last ``<answer>...</answer>``, stripped."""
    span = answer_tag_span(text)
    return span.text if span is not None else None


def stated_in_tag(text: str) -> str | None:
    """The last ``<answer>`` tag's content when it is the final statement: not empty, and no
    ``\\boxed{}`` after it (a model that echoes the requested format, then answers in a box)."""
    span = answer_tag_span(text)
    if span is None or not span.text or any(b.start >= span.end for b in boxed_spans(text)):
        return None
    return span.text


# "Final answer: the final answer is X" nests one phrase in another; the last
# marker in the text is the innermost, so it is the one read.
_PHRASE_RE = re.compile(r"\b(?:final\s+answer|answer)\s*(?:is\b|:|=)\s*:?", re.IGNORECASE)
MAX_PHRASE_CHARS = 1000  # an answer stated in words is short; scanning stops here
# Words that start a justification after the answer ("5, since 2+3=5").
_JUSTIFICATION = re.compile(
    r"[ \t]*,?[ \t]+(?:since|because|as|which|where|given|due|so|thus|hence|therefore|from|by|when|if|after|"
    r"for|with|using|i\.e\.|e\.g\.)\b", re.IGNORECASE)
_MATH_OPEN = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))


def _closing(text: str, start: int, close: str, limit: int) -> int:
    """Index of ``close`` after ``start`` outside braces and escapes, or -1 (within ``limit``)."""
    depth, i = 0, start
    while i < limit:
        c = text[i]
        if c == "\\" and not text.startswith(close, i):
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif depth <= 0 and text.startswith(close, i):
            return i
        elif c == "\n" and close == "$":
            return -1  # inline math never spans lines
        i += 1
    return -1


def _sentence_end(text: str, start: int, limit: int) -> int:
    """Where a plain-text answer starting at ``start`` ends: a newline, a ``.``/``!``/``?``/``;``
    followed by a space or the end (``7.78`` and ``3.5`` keep their decimal point), a
    justification (", since ..."), or a ``$`` that closes the math the phrase sat in."""
    depth, i = 0, start
    while i < limit:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in "{([":
            depth += 1
        elif c in "})]":
            depth = max(depth - 1, 0)
        elif c == "\n":
            return i
        elif depth == 0:
            if c in ".!?;" and (i + 1 >= len(text) or text[i + 1].isspace()):
                return i
            if c in " \t," and i > start and _JUSTIFICATION.match(text, i):
                return i
            if c == "$" and i > start:
                if i + 1 >= len(text) or text[i + 1] in " \t\n.,;:!?)":
                    return i  # closes the math the phrase was written in: "$\text{answer is } 5$"
                j = _closing(text, i + 1, "$", limit)  # math inside the answer: "the largest $n$ is 34"
                if j < 0:
                    return i
                i = j
        i += 1
    return limit


def _math_at(text: str, i: int, limit: int) -> tuple[str, int] | None:
    """Content and end of the math span opening at ``i`` (``$..$``, ``$$..$$``, ``\\(..\\)``, ``\\[..\\]``)."""
    for open_, close in _MATH_OPEN:
        if text.startswith(open_, i):
            j = _closing(text, i + len(open_), close, limit)
            return (text[i + len(open_): j].strip(), j + len(close)) if j >= 0 else None
    return None


_MATH_JOINER = re.compile(r"[ \t]*(?:,[ \t]*)?(?:and|or|,)[ \t]*(?=\$|\\\(|\\\[)", re.IGNORECASE)


def _math_list(text: str, i: int, limit: int) -> Span | None:
    """``$3$`` -> "3"; ``$3$ or $5$`` / ``$3$, $5$ and $7$`` -> "3, 5, 7": several answers
    stay several (so they can't match a single gold answer one at a time)."""
    first = _math_at(text, i, limit)
    if first is None or not first[0]:
        return None
    parts, end = [first[0]], first[1]
    while len(parts) < 16:
        j = _MATH_JOINER.match(text, end)
        nxt = _math_at(text, j.end(), limit) if j else None
        if nxt is None or not nxt[0]:
            break
        parts.append(nxt[0])
        end = nxt[1]
    return Span(", ".join(parts), i, end)


def find_answer_phrase(text: str) -> Span | None:
    """The answer stated in words: the last "the answer is X" / "Answer: X" / "Final answer: X".

    ``X`` is the math right after the phrase when it opens one (``$\\frac34$ cups`` -> the
    fraction; ``$3$ or $5$`` -> "3, 5"), else the text up to the end of the sentence or a trailing justification.
    Linear in ``len(text)``: one regex scan for markers, then one bounded scan after the last.
    """
    last = None
    for last in _PHRASE_RE.finditer(text):
        pass
    if last is None:
        return None
    i, n = last.end(), len(text)
    while i < n and (text[i] in " \t\"'*}" or text.startswith('\\"', i)):
        i += 2 if text[i] == "\\" else 1  # bold, quotes, the end of "\text{the answer is}"
    limit = min(n, i + MAX_PHRASE_CHARS)
    math = _math_list(text, i, limit)
    if math is not None:
        return math
    end = _sentence_end(text, i, limit)
    ans = text[i:end].strip().rstrip(".").strip().strip("*\"'").strip()
    ans = re.sub(r"^\$+|\$+$", "", ans).strip()  # "$x$" -> "x"
    return Span(ans, i, end) if ans else None


def answer_phrase(text: str) -> str | None:
    """Text of :func:`find_answer_phrase`, or ``None``."""
    found = find_answer_phrase(text)
    return found.text if found else None


def final_line(text: str) -> str | None:
    for line in reversed(text.strip().splitlines()):
        if line.strip():
            return line.strip()
    return None


@dataclass(frozen=True)
class CodeBlock:
    language: str  # as written after the opening fence, lower-cased; "" when none
    code: str


_OPENER_RE = re.compile(r"[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)")
_CLOSER_RE = re.compile(r"[ \t]*(`{3,}|~{3,})[ \t]*")


def _fenced(text: str) -> tuple[list[CodeBlock], CodeBlock | None]:
    """(closed blocks, the block still open at the end), one pass over the lines.

    As CommonMark reads fences: a line starting with ``` or ~~~ (then the language) opens a
    block, the next line holding only the same fence character, at least as many, closes it,
    and a block never closed runs to the end. Not the regex ``^(fence)...\\n(.*?)^\\1$``: tried
    at every opening fence, it scans to the end for each unclosed one, quadratic in a run of them.
    """
    lines = text.split("\n")
    blocks: list[CodeBlock] = []
    opened: tuple[str, int, str, int] | None = None  # fence char, fence length, language, body start
    offset = 0
    for i, line in enumerate(lines):
        start, offset = offset, offset + len(line) + 1
        if opened is None:
            m = _OPENER_RE.match(line) if i < len(lines) - 1 else None  # an opening fence ends its line
            if m:
                opened = (m.group(1)[0], len(m.group(1)), m.group(2).lower(), offset)
            continue
        m = _CLOSER_RE.fullmatch(line)
        if m and m.group(1)[0] == opened[0] and len(m.group(1)) >= opened[1]:
            blocks.append(CodeBlock(opened[2], text[opened[3]:start]))
            opened = None
    return blocks, (CodeBlock(opened[2], text[opened[3]:]) if opened else None)


def code_blocks(text: str) -> list[CodeBlock]:
    return _fenced(text)[0]


def last_code_block(text: str) -> CodeBlock | None:
    """The last fenced code block; an unterminated final fence counts too
    (completions are often cut at the length limit right after the code)."""
    blocks, unclosed = _fenced(text)
    if unclosed is not None and unclosed.code.strip():
        return unclosed
    return blocks[-1] if blocks else None
