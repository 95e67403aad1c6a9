"""Latency of the ifeval verifier on long and adversarial responses.

Every one of the 25 instructions is checked against each input, strict and
loose, so a pattern that backtracks or recurses on hostile text shows up as
a slow (or non-ok) row. Run: ``python3 bench/ifeval_bench.py [chars]``.
"""
from __future__ import annotations

import sys
import time

from verifiers import score
from verifiers.tasks._ifeval_instructions import INSTRUCTIONS

KWARGS = {
    "keywords": ["zz"], "keyword": "zz", "frequency": 1, "relation": "at least", "forbidden_words": ["zz"],
    "letter": "z", "let_frequency": 1, "let_relation": "at least", "language": "en", "num_words": 1,
    "num_sentences": 1, "num_paragraphs": 1, "nth_paragraph": 1, "first_word": "zz", "postscript_marker": "P.S.",
    "num_placeholders": 1, "num_bullets": 1, "num_highlights": 1, "section_spliter": "Section", "num_sections": 1,
    "prompt_to_repeat": "zz", "capital_frequency": 1, "capital_relation": "at least", "end_phrase": "zz",
}
GROUND_TRUTH = {"instruction_id_list": list(INSTRUCTIONS), "kwargs": [KWARGS] * len(INSTRUCTIONS)}


def inputs(n: int) -> dict[str, str]:
    return {
        "prose": "The quick brown fox jumps over the lazy dog. " * (n // 45),
        "newlines": "\n" * n + "x",
        "spaces": " " * n + "x",
        "open_brackets": "[" * n,
        "open_angles": "<<" * (n // 2),
        "asterisks": "*" * n,
        "dots": "." * n,
        "dash_lines": "-\n" * (n // 2),
        "abbreviations": "A. B. C. Mr. Dr. 1.2 e.g. ?! " * (n // 30),
        "quotes": '"' * n,
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    score("ifeval", "warm up the language profiles", GROUND_TRUTH)
    print(f"{len(INSTRUCTIONS)} instructions per item, inputs of ~{n} chars")
    for name, text in inputs(n).items():
        for mode in ("strict", "loose"):
            t0 = time.perf_counter()
            v = score("ifeval", text, GROUND_TRUTH, {"mode": mode})
            ms = (time.perf_counter() - t0) * 1000
            print(f"{name:14s} {mode:6s} {ms:8.0f} ms  status={v.status} reward={v.reward:.2f}")


if __name__ == "__main__":
    main()
