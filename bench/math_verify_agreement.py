"""Agreement with Math-Verify's own upstream test cases, scored through ``POST /score``.

``tests/data/math_verify_upstream_cases.jsonl`` holds every (gold, prediction,
expected) case of math-verify 0.9.0's ``tests/`` (its sdist ships them),
except the three that need verify options the service doesn't expose
(``strict=False``, ``allow_set_relation_comp=True``). A per-case
``precision`` becomes the ``float_rounding`` option. The gold is the item's
ground truth and the prediction its completion, exactly as a trainer would
send them. Run: ``python3 bench/math_verify_agreement.py [-v]``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from reward_service.api import create_app
from reward_service.config import Settings

CASES_PATH = Path(__file__).resolve().parent.parent / "tests" / "data" / "math_verify_upstream_cases.jsonl"


def load_cases() -> list[dict]:
    return [json.loads(line) for line in CASES_PATH.open(encoding="utf-8")]


def score_cases(cases: list[dict]) -> list[dict]:
    """One ``/score`` result per case, in order, from a real in-process service."""
    items = [{"id": str(i), "task": "math", "completion": c["pred"], "ground_truth": c["gold"],
              "options": c.get("options")} for i, c in enumerate(cases)]
    settings = Settings(workers=2, sandbox_required=False)
    with TestClient(create_app(settings)) as client:
        resp = client.post("/score", json={"items": items})
        resp.raise_for_status()
        return resp.json()["results"]


def disagreements(cases: list[dict], results: list[dict]) -> list[tuple[dict, dict]]:
    return [(c, r) for c, r in zip(cases, results) if (r["reward"] == 1.0) != bool(c["expected"])]


def main() -> None:
    cases = load_cases()
    results = score_cases(cases)
    misses = disagreements(cases, results)
    print(f"math-verify upstream cases through POST /score: {len(cases) - len(misses)}/{len(cases)} agree")
    if "-v" in sys.argv:
        for c, r in misses:
            print(f"- {c['source']}: expected {c['expected']}, got {r['reward']} ({r['status']})")
            print(f"  gold={c['gold'][:120]!r}\n  pred={c['pred'][-200:]!r}\n  detail={json.dumps(r.get('detail'))[:300]}")


if __name__ == "__main__":
    main()
