"""Agreement with Google's reference IFEval checkers on IFEval's published GPT-4 responses.

``tests/data/ifeval_gpt4.jsonl.gz``: all 541 responses of
``instruction_following_eval/data/input_response_data_gpt4_20231107_145030.jsonl``
(google-research, Apache-2.0), joined by prompt with ``input_data.jsonl`` for the
instruction ids and kwargs, with the reference verdicts per instruction
(``reference_strict`` / ``reference_loose``), built by ``bench/ifeval_build_fixture.py``. Each response is scored through ``POST /score`` of the real app,
strict and loose, and each instruction's ``followed`` is compared with the reference's.
A reference verdict of null is one the reference leaves to chance (see
``bench/ifeval_reference_verdicts.py``): counted apart, neither agreeing nor not.
Run: ``python3 bench/ifeval_agreement.py [-v] [path.jsonl[.gz]]``.
"""
from __future__ import annotations

import gzip
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from reward_service.api import create_app
from reward_service.config import Settings

FULL = Path(__file__).resolve().parent.parent / "tests" / "data" / "ifeval_gpt4.jsonl.gz"
RESPONSES = 541  # in IFEval's published GPT-4 file


def load_rows(path: Path | None = None) -> list[dict]:
    path = path or FULL
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@dataclass
class Agreement:
    agree: int                               # instructions where our verdict is the reference's
    total: int                               # every instruction
    misses: list[tuple[int, str, bool]]      # (key, instruction id, reference verdict) we differ on
    undecided: list[tuple[int, str, bool]]   # (key, instruction id, our verdict) the reference leaves to chance


def agreement(rows: list[dict], mode: str) -> Agreement:
    items = [{"id": str(r["key"]), "task": "ifeval", "completion": r["response"], "prompt": r.get("prompt"),
              "ground_truth": {"instruction_id_list": r["instruction_id_list"], "kwargs": r["kwargs"]},
              "options": {"mode": mode}} for r in rows]
    with TestClient(create_app(Settings(workers=2, sandbox_required=False))) as client:
        resp = client.post("/score", json={"items": items})
        resp.raise_for_status()
        results = resp.json()["results"]
    out = Agreement(0, 0, [], [])
    for row, res in zip(rows, results):
        assert res["status"] == "ok", res
        ours = [i["followed"] for i in res["detail"]["instructions"]]
        for iid, mine, ref in zip(row["instruction_id_list"], ours, row[f"reference_{mode}"], strict=True):
            out.total += 1
            if ref is None:
                out.undecided.append((row["key"], iid, mine))
            elif mine == ref:
                out.agree += 1
            else:
                out.misses.append((row["key"], iid, ref))
    return out


def main() -> None:
    paths = [Path(a) for a in sys.argv[1:] if a != "-v"]
    rows = load_rows(paths[0] if paths else None)
    for mode in ("strict", "loose"):
        a = agreement(rows, mode)
        print(f"IFEval GPT-4 responses ({len(rows)} of {RESPONSES}), {mode}: {a.agree}/{a.total} instructions "
              f"agree with the reference, {len(a.misses)} disagree, {len(a.undecided)} left to chance by it")
        for key, iid, ref in a.misses if "-v" in sys.argv else []:
            print(f"  - disagree: key {key} {iid}: reference says followed={ref}")
        for key, iid, mine in a.undecided if "-v" in sys.argv else []:
            print(f"  - reference verdict left to chance: key {key} {iid} (ours: followed={mine})")


if __name__ == "__main__":
    main()
