"""MBPP as a regression fixture for the `code` task's assert-based tests (issue 9).

Every reference solution of MBPP's 974 problems, scored through the real verifier and sandbox
with its own ``test_list`` and ``test_setup_code``, must earn 1.0; the same programs with every
function body replaced by ``return None`` must not. Exceptions are listed below, each with the
reason, so a new false negative or a fixed one shows up as a change here.
"""
from __future__ import annotations

import ast
import gzip
import json
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import verifiers

# Two full passes over 974 sandboxed programs: about 40 s alone, over a minute on a shared machine.
pytestmark = pytest.mark.slow

ROWS = [json.loads(line) for line in gzip.open(Path(__file__).parent / "data" / "mbpp.jsonl.gz", "rt")]
BY_ID = {r["task_id"]: r for r in ROWS}

# The reference itself fails under a bare CPython 3.11 `exec(code); exec(tests)`.
DATASET_BROKEN = {
    596: "asserts sys.getsizeof(a 6-tuple) == 104: object sizes of the CPython MBPP was written on (3.11 gives 88)",
    642: "asserts one order of tuple(set(...)) of tuples, which follows CPython's tuple hash (changed in 3.8)",
}

# Shapes that once failed through the verifier although bare CPython passes them, now covered by
# test_every_reference_solution_scores_one: Counter/defaultdict returns (40, 88, 653, 902), a
# solution function named `check` (56, 349, 899, 967), one named `sum` (126), types passed as
# arguments (533).

# A slow reference (amicable_numbers_sum(9999) is quadratic: 2.5 s bare here): a larger per-test limit,
# so CPU contention from the pool beside it can't turn a correct program into a timeout.
OPTIONS = {123: {"test_timeout_s": 20}}

# Broken programs (every body `return None`) still pass the asserts that expect None.
NONE_EXPECTED = {395: 1 / 3, 431: 1 / 3, 452: 1 / 3, 546: 1 / 3, 746: 1 / 3, 755: 1 / 3, 761: 1 / 3, 954: 2 / 3}


def _ground_truth(row: dict) -> dict:
    return {"test_list": row["test_list"], "test_setup_code": row["test_setup_code"]}


def _returning_none(code: str) -> str:
    with warnings.catch_warnings():  # MBPP writes regexes like '\s' in plain strings
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.body = [ast.Return(ast.Constant(None))]
    return ast.unparse(tree)


def _score_all(program) -> dict[int, verifiers.Verdict]:
    def one(row: dict):  # one sandbox session per item, so a few run side by side
        return row["task_id"], verifiers.score("code", "```python\n" + program(row["code"]) + "\n```",
                                               _ground_truth(row), OPTIONS.get(row["task_id"], {}))
    with ThreadPoolExecutor(3) as pool:
        return dict(pool.map(one, ROWS))


@pytest.fixture(scope="module")
def reference_verdicts() -> dict[int, verifiers.Verdict]:
    return _score_all(lambda code: code)


@pytest.fixture(scope="module")
def broken_verdicts() -> dict[int, verifiers.Verdict]:
    return _score_all(_returning_none)


def test_fixture_is_all_of_mbpp():
    assert sorted(BY_ID) == list(range(1, 975))


def test_every_reference_solution_scores_one(reference_verdicts):
    wrong = {tid: (v.reward, v.status, v.detail.get("error") or v.detail.get("first_failure", v.detail))
             for tid, v in reference_verdicts.items()
             if tid not in DATASET_BROKEN and (v.reward != 1.0 or v.status != "ok")}
    assert not wrong, wrong


@pytest.mark.parametrize("task_id", sorted(DATASET_BROKEN))
def test_dataset_broken_reference_fails_under_bare_python_too(task_id, reference_verdicts):
    row = BY_ID[task_id]
    program = "\n".join([row["code"], row["test_setup_code"], *row["test_list"]])
    bare = subprocess.run([sys.executable, "-I", "-c", program], capture_output=True, text=True, timeout=60)
    assert bare.returncode != 0 and "AssertionError" in bare.stderr
    assert reference_verdicts[task_id].reward < 1.0


def test_no_function_returning_none_scores_one(broken_verdicts):
    assert all(v.status == "ok" for v in broken_verdicts.values())
    full = sorted(tid for tid, v in broken_verdicts.items() if v.reward >= 1.0)
    assert full == []


def test_returning_none_earns_only_the_asserts_that_expect_none(broken_verdicts):
    partial = {tid: v.reward for tid, v in broken_verdicts.items() if v.reward > 0}
    assert partial == pytest.approx(NONE_EXPECTED)
