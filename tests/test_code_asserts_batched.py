"""MBPP-style items (several asserts) judged in one judge/candidate pair, through the real sandbox.

Each assert is still a test of its own, in a namespace of its own with a deadline of its own; a
test that kills the candidate, and every test after a timeout, goes to a pair of its own, so the
verdicts are the ones a pair per assert gives.
"""
import pytest

import verifiers
from verifiers.tasks import _code_run

ASSERTS = {"test_list": ["assert double(1) == 2", "assert double(2) == 4", "assert double(3) == 6"]}


def py(code: str) -> str:
    return f"```python\n{code}```\n"


def score(completion, ground_truth, **options):
    return verifiers.score("code", completion, ground_truth, options)


@pytest.fixture
def own_pairs(monkeypatch):
    """Indices of the tests that needed a pair of their own."""
    seen: list[int] = []
    real = _code_run._assert

    def counting(session, spec, *args, **kwargs):
        seen.append(int(spec["name"]))
        return real(session, spec, *args, **kwargs)

    monkeypatch.setattr(_code_run, "_assert", counting)
    return seen


def test_an_items_asserts_share_one_pair(own_pairs):
    v = score(py("def double(x):\n    return 2 * x\n"), ASSERTS)
    assert (v.reward, v.detail["passed"]) == (1.0, 3)
    assert own_pairs == []


def test_a_failed_assert_is_judged_in_the_batch_and_the_rest_still_run(own_pairs):
    v = score(py("def double(x):\n    return 5 if x == 2 else 2 * x\n"), ASSERTS)
    assert v.reward == pytest.approx(2 / 3)
    assert v.detail["first_failure"]["test"] == 1 and "AssertionError" in v.detail["first_failure"]["error"]
    assert own_pairs == []


def test_each_assert_has_a_namespace_of_its_own():
    # the second assert can't see a name the first one's code bound
    gt = {"test_list": ["y = double(1)\nassert y == 2", "try:\n    y\n    assert False\nexcept NameError:\n    pass"]}
    assert score(py("def double(x):\n    return 2 * x\n"), gt).reward == 1.0


def test_a_timeout_costs_its_own_test_and_the_ones_after_get_a_fresh_candidate(own_pairs):
    code = "def double(x):\n    while x == 2:\n        pass\n    return 2 * x\n"
    v = score(py(code), ASSERTS, test_timeout_s=1)
    assert v.reward == pytest.approx(2 / 3)
    assert v.detail["statuses"] == {"passed": 2, "timeout": 1}
    assert own_pairs == [2]  # the candidate still spinning in test 1 can't answer test 2


def test_a_candidate_that_dies_gets_the_status_its_own_pair_gives(own_pairs):
    code = "import os\ndef double(x):\n    if x == 2:\n        os._exit(3)\n    return 2 * x\n"
    v = score(py(code), ASSERTS)
    assert v.reward == pytest.approx(2 / 3)
    assert v.detail["first_failure"]["test"] == 1 and v.detail["first_failure"]["status"] != "passed"
    assert own_pairs == [1, 2]


def test_running_out_of_memory_in_one_assert_costs_that_test_as_a_pair_of_its_own_does():
    code = "def double(x):\n    if x == 2:\n        b = bytearray(400 << 20)\n    return 2 * x\n"
    v = score(py(code), ASSERTS, memory_mb=128)
    alone = score(py(code), {"test_list": [ASSERTS["test_list"][1]]}, memory_mb=128)
    assert v.reward == pytest.approx(2 / 3)
    assert v.detail["first_failure"]["test"] == 1
    assert v.detail["first_failure"]["status"] == alone.detail["first_failure"]["status"]
    assert v.detail["first_failure"]["error"] == alone.detail["first_failure"]["error"]


def test_a_solution_that_does_not_load_fails_every_test(own_pairs):
    v = score(py("raise ValueError('no')\ndef double(x):\n    return 2 * x\n"), ASSERTS)
    assert (v.reward, v.detail["passed"]) == (0.0, 0)
    assert "failed to load" in v.detail["first_failure"]["error"]
    assert own_pairs == []


def test_a_solution_that_hangs_while_loading_times_out_like_a_pair_per_test(own_pairs):
    v = score(py("while True:\n    pass\n"), ASSERTS, test_timeout_s=1)
    assert v.reward == 0.0
    assert v.detail["statuses"].get("timeout", 0) >= 1


def test_stop_on_first_failure_still_credits_nothing_after_it():
    v = score(py("def double(x):\n    return 0 if x == 1 else 2 * x\n"), ASSERTS, stop_on_first_failure=True)
    assert v.reward == 0.0
    assert v.detail["statuses"] == {"failed": 1, "not_run": 2}


def test_the_items_budget_ends_the_batch_with_what_was_judged():
    code = "import time\ndef double(x):\n    time.sleep(0.8)\n    return 2 * x\n"
    v = score(py(code), ASSERTS, test_timeout_s=2, total_timeout_s=1.5)
    assert v.detail["passed"] >= 1 and v.detail["passed"] < 3
