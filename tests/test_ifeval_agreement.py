"""Agreement with Google's reference IFEval checkers on IFEval's published GPT-4 responses,
through POST /score of the real app (see bench/ifeval_agreement.py for the data's provenance)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from ifeval_agreement import FULL, RESPONSES, agreement, load_rows  # noqa: E402

# IFEval's 541 prompts carry 834 instructions; the issue allows one disagreement.
INSTRUCTIONS = 834
MOST_MISSES = 1
# The reference counts a random ASCII letter when asked for "#" or "!" (its checker takes
# only letters), so it has no verdict of its own there; ours counts the character asked for.
LEFT_TO_CHANCE = {(1122, "keywords:letter_frequency"), (1129, "keywords:letter_frequency")}


@pytest.fixture(scope="module")
def rows():
    return load_rows(FULL)


def test_the_full_set_holds_every_published_response(rows):
    assert len(rows) == RESPONSES
    assert len({r["key"] for r in rows}) == RESPONSES
    assert sum(len(r["instruction_id_list"]) for r in rows) == INSTRUCTIONS


@pytest.mark.parametrize("mode", ["strict", "loose"])
def test_every_instruction_the_reference_decides_agrees_but_at_most_one(rows, mode):
    a = agreement(rows, mode)
    print(f"\nIFEval GPT-4 responses ({len(rows)} of {RESPONSES}), {mode}: {a.agree}/{a.total} agree with the "
          f"reference, {len(a.misses)} disagree, {len(a.undecided)} left to chance by it")
    assert a.total == INSTRUCTIONS
    assert len(a.misses) <= MOST_MISSES, a.misses
    assert {(key, iid) for key, iid, _ in a.undecided} == LEFT_TO_CHANCE


@pytest.mark.parametrize("mode", ["strict", "loose"])
def test_a_non_letter_letter_frequency_counts_the_character_asked_for(rows, mode):
    # Both GPT-4 responses hold enough of the character ("#" 4 times, "!" 10 times).
    a = agreement([r for r in rows if r["key"] in {key for key, _ in LEFT_TO_CHANCE}], mode)
    assert [(key, iid, mine) for key, iid, mine in a.undecided] == [(key, iid, True) for key, iid in sorted(LEFT_TO_CHANCE)]
