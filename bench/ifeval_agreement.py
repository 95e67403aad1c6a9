"""Agreement with Google's reference IFEval checkers on IFEval's published GPT-4 responses.

``tests/data/ifeval_gpt4_subset.jsonl``: a subset of
``instruction_following_eval/data/input_response_data_gpt4_20231107_145030.jsonl``
(google-research, Apache-2.0), joined by prompt with ``input_data.jsonl`` for the
instruction ids and kwargs, with the reference verdicts per instruction
(``reference_strict`` / ``reference_loose``, from ``bench/ifeval_reference_verdicts.py``).
Each response is scored through ``POST /score`` of the real app, strict and loose,
and each instruction's ``followed`` is compared with the reference's.
Run: ``python3 bench/ifeval_agreement.py [-v]``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from reward_service.api import create_app
from reward_service.config import Settings

SUBSET = Path(__file__).resolve().parent.parent / "tests" / "data" / "ifeval_gpt4_subset.jsonl"


def load_rows() -> list[dict]:
    return [json.loads(line) for line in SUBSET.open(encoding="utf-8")]


def agreement(rows: list[dict], mode: str) -> tuple[int, int, list[tuple[int, str, bool]]]:
    """(agreeing instructions, instructions, [(key, instruction id, reference verdict) that differ])."""
    items = [{"id": str(r["key"]), "task": "ifeval", "completion": r["response"], "prompt": r.get("prompt"),
              "ground_truth": {"instruction_id_list": r["instruction_id_list"], "kwargs": r["kwargs"]},
              "options": {"mode": mode}} for r in rows]
    with TestClient(create_app(Settings(workers=2, sandbox_required=False))) as client:
        resp = client.post("/score", json={"items": items})
        resp.raise_for_status()
        results = resp.json()["results"]
    agree, total, misses = 0, 0, []
    for row, res in zip(rows, results):
        assert res["status"] == "ok", res
        ours = [i["followed"] for i in res["detail"]["instructions"]]
        for iid, mine, ref in zip(row["instruction_id_list"], ours, row[f"reference_{mode}"]):
            total += 1
            if mine == ref:
                agree += 1
            else:
                misses.append((row["key"], iid, ref))
    return agree, total, misses


def main() -> None:
    rows = load_rows()
    for mode in ("strict", "loose"):
        agree, total, misses = agreement(rows, mode)
        print(f"IFEval GPT-4 responses ({len(rows)} of 541), {mode}: {agree}/{total} instructions agree with the reference")
        if "-v" in sys.argv:
            for key, iid, ref in misses:
                print(f"  - key {key} {iid}: reference says followed={ref}")


if __name__ == "__main__":
    main()
