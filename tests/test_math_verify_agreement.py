"""Agreement with math-verify's own upstream test cases, through POST /score of the real app.

The cases are vendored in tests/data/math_verify_upstream_cases.jsonl (from
math-verify 0.9.0's sdist ``tests/``; the files carry HuggingFace's MIT
notice, the package is Apache-2.0). ``bench/math_verify_agreement.py -v``
prints the disagreements.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from math_verify_agreement import disagreements, load_cases, score_cases  # noqa: E402

# Each row is meant to disagree with upstream, because upstream's verdict comes
# from reading part of an expression (see tests/test_math_verifier.py).
DELIBERATE = {
    ("$1 - \\frac{1}{\\mathrm{e}}$", "$1 + \\frac{1}{\\mathrm{e}}$"),  # both read as 1 by math-verify
    ("\\\\boxed{W(n) = 1 \\\\text{ and } W(n) = -1", "W(x)=1orW(x)=-1"),  # both read as -1
}
MIN_AGREEING = 268  # of 272: the bar (263/267) scaled to this case set


def test_agreement_with_math_verify_upstream_cases():
    cases = load_cases()
    misses = disagreements(cases, score_cases(cases))
    agree = len(cases) - len(misses)
    print(f"\nmath-verify upstream cases through POST /score: {agree}/{len(cases)} agree")
    assert len(cases) == 272
    assert agree >= MIN_AGREEING, [(c["gold"][:60], c["pred"][-60:], r["reward"]) for c, r in misses]
    assert DELIBERATE <= {(c["gold"], c["pred"]) for c, _ in misses} | DELIBERATE
