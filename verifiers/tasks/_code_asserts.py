"""Preparing assert-based test code (HumanEval, MBPP) before it enters the sandbox.

Done here, in the trusted service, once per distinct test (GRPO groups share
theirs): the comparisons are rewritten and the result compiled, so the judge
in the sandbox loads a code object instead of parsing and compiling source.
"""
from __future__ import annotations

import ast
import marshal

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
                name = ast.copy_location(ast.Name(PLAIN, ast.Load()), operand)
                wrapped.append(ast.copy_location(ast.Call(name, [operand], []), operand))
        node.left, node.comparators = wrapped[0], wrapped[1:]
        return node


def rewrite(source: str, what: str) -> ast.Module:
    """The test's syntax tree with every comparison's operands passed through ``__rs_plain__``."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise InvalidInput(f"{what} is not valid Python: {e}") from None
    # Every node the transformer adds carries its operand's location: no fix_missing_locations pass.
    return _PlainCompare().visit(tree)


def prepare(source: str, what: str) -> bytes:
    """The rewritten test, compiled and marshalled for the judge (``test`` names its frames)."""
    return marshal.dumps(compile(rewrite(source, what), "test", "exec", dont_inherit=True))


def prepared_source(source: str, what: str) -> str:
    """The rewritten test as source, for a sandbox whose Python can't load our bytecode."""
    return ast.unparse(ast.fix_missing_locations(rewrite(source, what)))
