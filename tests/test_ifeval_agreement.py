"""Agreement with Google's reference IFEval checkers on IFEval's published GPT-4 responses,
through POST /score of the real app (see bench/ifeval_agreement.py for the data's provenance)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from ifeval_agreement import agreement, load_rows  # noqa: E402


@pytest.mark.parametrize("mode", ["strict", "loose"])
def test_every_instruction_agrees_with_the_reference(mode):
    rows = load_rows()
    agree, total, misses = agreement(rows, mode)
    print(f"\nIFEval GPT-4 responses ({len(rows)} of 541), {mode}: {agree}/{total} agree with the reference")
    assert total == 53 and misses == []
