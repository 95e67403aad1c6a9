"""Many scoring processes, one machine: sandbox slots follow demand (issue 11).

With a fixed 32 slots and one idle warm session per scoring process holding a slot,
REWARD_SERVICE_WORKERS=40 made canonical HumanEval programs time out waiting for a slot.
Here 64 scoring processes of the real service (process sandbox, real bubblewrap) score
every canonical HumanEval solution twice in one batch: all must be 1.0, none a timeout.
Slow on 2 cores (64 processes and their warm sessions start up), so marked ``slow``.
"""
from __future__ import annotations

import gzip
import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.live_service import running_service

DATA = Path(__file__).resolve().parent.parent / "bench" / "data" / "HumanEval.jsonl.gz"
WORKERS = 64

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap is not installed (apt-get install bubblewrap)")]


def canonical_items(copies: int) -> list[dict]:
    with gzip.open(DATA, "rt") as f:
        rows = [json.loads(line) for line in f]
    return [{"id": f"{row['task_id']}#{k}", "task": "code",
             "completion": f"```python\n{row['prompt']}{row['canonical_solution']}\n```",
             "ground_truth": {"test": row["test"], "entry_point": row["entry_point"]}}
            for k in range(copies) for row in rows]


def wait_ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        r = httpx.get(f"{url}/readyz", timeout=5)
        if r.status_code == 200:
            return
        assert time.monotonic() < deadline, f"not ready: {r.text[:500]}"
        time.sleep(1)


def test_64_scoring_processes_score_every_canonical_humaneval_program_with_no_timeout():
    items = canonical_items(2)  # 328 items, as in the report
    with running_service(workers=WORKERS, REWARD_SERVICE_SANDBOX_BACKEND="process",
                         REWARD_SERVICE_SANDBOX_REQUIRED="true") as url:
        wait_ready(url, 300)
        ready = httpx.get(f"{url}/readyz", timeout=5).text
        assert f"{WORKERS}/{WORKERS} scoring workers alive" in ready, ready
        r = httpx.post(f"{url}/score", json={"items": items}, timeout=900)
        r.raise_for_status()
        results = r.json()["results"]
    assert [x["id"] for x in results] == [it["id"] for it in items]
    timeouts = [x["id"] for x in results if x["status"] == "timeout"]
    wrong = [(x["id"], x["reward"], x["status"], json.dumps(x.get("detail"))[:300])
             for x in results if x["reward"] != 1.0]
    assert timeouts == []
    assert wrong == []
    assert {x["detail"]["sandbox"]["backend"] for x in results} == {"process"}
