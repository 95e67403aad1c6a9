"""HumanEval throughput against the number of scoring processes (issue 11: slots that scale).

Starts the real service (process sandbox) with 2, 8, 32 and 64 scoring processes in
turn and posts the 164 canonical HumanEval programs twice (328 items) per batch: the
first batch right after start-up (every process starts its warm sandbox session), then
a second, steady one. Prints items/s of both and how many items did not score 1.0 or
timed out. On a machine with few cores throughput saturates at about the core count;
what must not happen is a collapse (slot starvation: timeouts, minutes per batch).

    python bench/bench_slots.py [--workers 2,8,32,64] [--copies 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_humaneval import item, load  # noqa: E402
from server import local_server  # noqa: E402


def post(url: str, items: list[dict]) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/score", json={"items": items}, timeout=1800)
    r.raise_for_status()
    return time.perf_counter() - t0, r.json()["results"]


def slots_in_force(url: str) -> str:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).text[:200]
    except httpx.HTTPError as e:
        return f"readyz failed: {e}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="2,8,32,64", help="comma-separated scoring process counts")
    ap.add_argument("--copies", type=int, default=2, help="copies of the 164 canonical programs per batch")
    args = ap.parse_args()
    rows = load()
    items = [{**item(r, r["canonical_solution"]), "id": f"{r['task_id']}#{k}"} for k in range(args.copies) for r in rows]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"process sandbox, {len(items)} canonical HumanEval items per batch")
    print(f"\n{'scoring processes':>18}{'start s':>9}{'1st batch s':>12}{'1st items/s':>12}"
          f"{'2nd batch s':>12}{'2nd items/s':>12}{'not 1.0':>9}{'timeouts':>9}")
    failed = 0
    for n in (int(x) for x in args.workers.split(",")):
        t0 = time.perf_counter()
        with local_server(workers=n, REWARD_SERVICE_SANDBOX_BACKEND="process") as url:
            start_s = time.perf_counter() - t0
            first_s, first = post(url, items)
            second_s, second = post(url, items)
        results = first + second
        wrong = sum(r["reward"] != 1.0 for r in results)
        timeouts = sum(r["status"] == "timeout" for r in results)
        failed += wrong
        print(f"{n:>18}{start_s:>9.1f}{first_s:>12.2f}{len(items) / first_s:>12.1f}"
              f"{second_s:>12.2f}{len(items) / second_s:>12.1f}{wrong:>9}{timeouts:>9}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
