"""Preparing assert-based test code (HumanEval, MBPP) before it enters the sandbox.

Done here, in the trusted service, so the in-sandbox harness needn't import
``ast`` on every run.
"""
from __future__ import annotations

import ast

from verifiers.base import InvalidInput

PLAIN = "__rs_plain__"  # the harness binds this name in the test's namespace


class _PlainCompare(ast.NodeTransformer):
    """Route every value compared by ``==``, ``<``, ``in``... through the harness's sanitizer,
    so a candidate's object with a lying ``__eq__`` can't decide a comparison.
    ``is`` / ``is not`` compare identity, which no object can fake, and stay as they are."""

    def visit_Compare(self, node: ast.Compare) -> ast.Compare:
        self.generic_visit(node)
        operands = [node.left, *node.comparators]
        identity = [isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops]
        wrapped = []
        for i, operand in enumerate(operands):
            if all(identity[max(i - 1, 0): i + 1]):
                wrapped.append(operand)
            else:
                wrapped.append(ast.copy_location(ast.Call(ast.Name(PLAIN, ast.Load()), [operand], []), operand))
        node.left, node.comparators = wrapped[0], wrapped[1:]
        return node


def prepare(source: str, what: str) -> tuple[str, set[str]]:
    """Test source with comparisons sanitized, and the top-level modules it imports."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise InvalidInput(f"{what} is not valid Python: {e}") from None
    imports: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.update(a.name for a in node.names if "." not in a.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and "." not in node.module:
            imports.add(node.module)
    tree = ast.fix_missing_locations(_PlainCompare().visit(tree))
    return ast.unparse(tree), imports
