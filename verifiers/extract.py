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


def all_boxed(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` / ``\\fbox{...}`` (braces balanced), in order.

    ``\\boxed 5`` (no braces) yields the following token, as LaTeX reads it.
    """
    out: list[str] = []
    pos = 0
    while True:
        m = _BOX_RE.search(text, pos)
        if not m:
            return out
        if m.group(1) is None:
            tok = re.match(r"[^\s$\\{}]+", text[m.end():])
            if tok:
                out.append(tok.group(0))
            pos = m.end()
            continue
        depth, i = 1, m.end()
        while i < len(text) and depth:
            c = text[i]
            if c == "\\":
                i += 2
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            i += 1
        if depth == 0:
            out.append(text[m.end(): i - 1])
        pos = i if depth == 0 else m.end()


def last_boxed(text: str) -> str | None:
    boxes = all_boxed(text)
    return boxes[-1] if boxes else None


_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)


def answer_tag(text: str) -> str | None:
    """Content of the last ``<answer>...</answer>``, stripped."""
    found = _ANSWER_TAG_RE.findall(text)
    return found[-1].strip() if found else None


_PHRASE_RE = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*:?\s*(.+)", re.IGNORECASE
)


def answer_phrase(text: str) -> str | None:
    """The answer stated in words: the last "the answer is X" / "Answer: X" / "Final answer: X"."""
    found = _PHRASE_RE.findall(text)
    if not found:
        return None
    ans = found[-1].strip().rstrip(".").strip()
    ans = re.sub(r"^\$+|\$+$", "", ans).strip()  # "$x$" -> "x"
    return ans or None


def final_line(text: str) -> str | None:
    for line in reversed(text.strip().splitlines()):
        if line.strip():
            return line.strip()
    return None


@dataclass(frozen=True)
class CodeBlock:
    language: str  # as written after the opening fence, lower-cased; "" when none
    code: str


_FENCE_RE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.DOTALL | re.MULTILINE)


def code_blocks(text: str) -> list[CodeBlock]:
    return [CodeBlock(lang.lower(), body) for _, lang, body in _FENCE_RE.findall(text)]


def last_code_block(text: str) -> CodeBlock | None:
    """The last fenced code block; an unterminated final fence counts too
    (completions are often cut at the length limit right after the code)."""
    blocks = code_blocks(text)
    last_closed_end = 0
    for m in _FENCE_RE.finditer(text):
        last_closed_end = m.end()
    tail = re.search(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*\n(.*)\Z", text[last_closed_end:], re.DOTALL | re.MULTILINE)
    if tail and tail.group(3).strip():
        return CodeBlock(tail.group(2).lower(), tail.group(3))
    return blocks[-1] if blocks else None
