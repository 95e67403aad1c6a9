"""Refuse text that some Reasoning Gym scorers would run as code.

A few scorers pass the model's answer (or a ground-truth field) to Python's
``eval`` or to sympy's ``parse_expr`` (which also ends in ``eval``), so
``__import__('os').system(...)`` inside ``<answer>`` would run in the worker.
Before such a scorer sees a text, the text must parse as a plain expression:
literals, names, arithmetic and (for sympy) calls of elementary functions —
no attributes, subscripts, dunder or builtin names, lambdas or comprehensions.
Integer powers and shifts are bounded so a literal like ``9**9**9`` can't pin
a worker; other slow-but-harmless inputs are the executor's timeout's job.

Legitimate answers for these datasets (grids, lists, integers, polynomials,
antiderivatives) all pass; the tests run every dataset's reference answers
and ground truths through this guard.
"""
from __future__ import annotations

import ast
import builtins
import io
import keyword
import tokenize
from typing import Literal

Evaluator = Literal["python", "sympy"]

# Which texts each scorer evaluates, found by reading reasoning_gym 0.1.x's
# score_answer code (tests/test_logic_verifier.py re-checks this list against
# the installed sources, so a new eval-ing scorer fails the suite).
ANSWER_EVALUATED: dict[str, Evaluator] = {
    "binary_matrix": "python",
    "n_queens": "python",
    "spiral_matrix": "python",
    "string_insertion": "python",
    "countdown": "sympy",
    "puzzle24": "sympy",
    "polynomial_multiplication": "sympy",
    "simple_integration": "sympy",
    "intermediate_integration": "sympy",
}
# (path into the entry, evaluator): ground truth reaches us over HTTP too.
GROUND_TRUTH_EVALUATED: dict[str, tuple[tuple[str, ...], Evaluator]] = {
    "bitwise_arithmetic": (("metadata", "problem"), "python"),
    "number_sorting": (("answer",), "python"),
    "polynomial_multiplication": (("answer",), "sympy"),
    "simple_integration": (("metadata", "integrand"), "sympy"),
    "intermediate_integration": (("metadata", "integrand"), "sympy"),
}

_SYMPY_CALLS = frozenset(
    "sin cos tan cot sec csc asin acos atan acot asec acsc sinh cosh tanh coth "
    "asinh acosh atanh exp log ln sqrt cbrt Abs abs sign Integral".split()
)
_BUILTINS = frozenset(dir(builtins))
_MAX_EXPONENT = 1000
_MAX_LEN = 20_000
_TOKEN_OPS = frozenset("+ - * / // % ** ^ & | ~ << >> ( ) [ ] ,".split())
_ARITH_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow,
              ast.BitXor, ast.BitAnd, ast.BitOr, ast.LShift, ast.RShift)
_UNARY_OPS = (ast.UAdd, ast.USub, ast.Invert)


def unsafe_reason(text: str, evaluator: Evaluator) -> str | None:
    """Why ``text`` must not reach the evaluator, or ``None`` when it may.

    For ``python`` (builtin ``eval``) a text that isn't Python syntax is let
    through: ``eval`` rejects it with the same parser before running anything,
    and the scorer then treats it as the plain string it is.  For ``sympy``,
    whose tokenizer rewrites the text before ``eval``, it must parse as-is.
    """
    if len(text) > _MAX_LEN:
        return f"longer than {_MAX_LEN} characters"
    calls = _SYMPY_CALLS if evaluator == "sympy" else frozenset()
    parsed = False
    # eval() itself skips leading blanks; some scorers strip() the answer first.
    for source in dict.fromkeys((text.lstrip(" \t"), text.strip())):
        try:
            tree = ast.parse(source, mode="eval")
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            continue
        parsed = True
        try:
            reason = _check(tree.body, "top", calls, strings=evaluator == "python")
        except RecursionError:
            reason = "nested too deeply"
        if reason:
            return reason
    if parsed or evaluator == "python":
        return None
    return _token_reason(text.strip(), calls)


def _check(node: ast.AST, ctx: str, calls: frozenset[str], strings: bool) -> str | None:
    """``ctx``: ``top`` / ``container`` (inside a list literal) / ``arith`` (an operand)."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (str, bytes)) and (not strings or ctx == "arith"):
            return "string literal where code would be evaluated"
        return None
    if isinstance(node, (ast.List, ast.Tuple)):
        if ctx == "arith":
            return "container used as an operand"
        return _first(_check(e, "container", calls, strings) for e in node.elts)
    if isinstance(node, ast.Name):
        if node.id.startswith("_") or (node.id in _BUILTINS and node.id not in calls):
            return f"name {node.id!r} is not allowed"
        return None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, _UNARY_OPS):
        return _check(node.operand, "arith", calls, strings)
    if isinstance(node, ast.BinOp) and isinstance(node.op, _ARITH_OPS):
        if isinstance(node.op, (ast.Pow, ast.LShift)):
            problem = _bounded_exponent(node.right)
            if problem:
                return problem
        return _check(node.left, "arith", calls, strings) or _check(node.right, "arith", calls, strings)
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id in calls) or node.keywords:
            return "function call is not allowed"
        return _first(_check(a, "arith", calls, strings) for a in node.args)
    return f"{type(node).__name__} is not allowed"


def _token_reason(source: str, calls: frozenset[str]) -> str | None:
    """For text sympy would rewrite before ``eval`` (``x!``, ``0.[3]``): no
    strings, attribute access, keywords, private or builtin names, and no
    call but of an allowed function.  Text the tokenizer rejects is let
    through: sympy runs the same tokenizer and fails before ``eval``."""
    if any(c in source for c in "'\"\\`"):
        return "quote or backslash where code would be evaluated"
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return None
    prev = None
    for tok in tokens:
        if tok.type == tokenize.NAME:
            if tok.string.startswith("_") or (tok.string in _BUILTINS and tok.string not in calls) \
                    or (keyword.iskeyword(tok.string) and tok.string not in ("True", "False", "None")):
                return f"name {tok.string!r} is not allowed"
        elif tok.type == tokenize.OP:
            if tok.string not in _TOKEN_OPS:
                return f"operator {tok.string!r} is not allowed"
            if tok.string == "(" and prev is not None and (
                    (prev.type == tokenize.NAME and prev.string not in calls)
                    or (prev.type == tokenize.OP and prev.string in ")]}")):
                return "function call is not allowed"
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
            prev = tok
    return None


def _bounded_exponent(node: ast.AST) -> str | None:
    for sub in ast.walk(node):
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, (ast.Pow, ast.LShift)):
            return "nested power"
        if isinstance(sub, ast.Constant) and isinstance(sub.value, (int, float, complex)) \
                and abs(sub.value) > _MAX_EXPONENT:
            return f"exponent larger than {_MAX_EXPONENT}"
    return None


def _first(reasons) -> str | None:
    return next((r for r in reasons if r), None)
