"""Judging a test's output outside the sandbox, like competitive-programming checkers."""
from __future__ import annotations

import math
import re
from typing import Any

_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")


def _numbers_close(a: float, b: float, tol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return False
    diff = abs(a - b)
    return diff <= tol or diff <= tol * max(abs(a), abs(b))


def _int_key(token: str) -> tuple[bool, str]:
    digits = token.lstrip("+-").lstrip("0") or "0"
    return token.startswith("-") and digits != "0", digits


def _tokens_equal(got: str, want: str, tol: float) -> bool:
    if got == want:
        return True
    if _INT.match(got) and _INT.match(want):
        # Integers are exact (10**9 vs 10**9+1 differ), compared as digit strings: int() refuses
        # more than 4300 digits, and a program printing a gigantic number must score 0, not error.
        return _int_key(got) == _int_key(want)
    if _FLOAT.match(got) and _FLOAT.match(want):
        return _numbers_close(float(got), float(want), tol)
    return False


def _exact_lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def stdout_matches(got: str, want: str, *, exact: bool, tolerance: float) -> bool:
    """Whitespace-insensitive token match with numeric tolerance, or exact lines."""
    if exact:
        return _exact_lines(got) == _exact_lines(want)
    g, w = got.split(), want.split()
    return len(g) == len(w) and all(_tokens_equal(a, b, tolerance) for a, b in zip(g, w))


def _json_equal(got: Any, want: Any, exact: bool, tol: float) -> bool:
    if isinstance(got, bool) or isinstance(want, bool):
        return type(got) is type(want) and got == want
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        if exact or (isinstance(got, int) and isinstance(want, int)):
            return got == want
        return _numbers_close(float(got), float(want), tol)
    if isinstance(got, (list, tuple)) and isinstance(want, (list, tuple)):
        return len(got) == len(want) and all(_json_equal(a, b, exact, tol) for a, b in zip(got, want))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(_json_equal(got[k], want[k], exact, tol) for k in got)
    return type(got) is type(want) and got == want


def value_matches(got: Any, want: Any, *, exact: bool, tolerance: float) -> bool:
    """JSON-value equality (tuples as lists, floats within tolerance unless exact).

    APPS stores many call-based outputs wrapped in a one-element list, so a
    return value equal to that single element also matches.
    """
    if _json_equal(got, want, exact, tolerance):
        return True
    return isinstance(want, list) and len(want) == 1 and _json_equal(got, want[0], exact, tolerance)
