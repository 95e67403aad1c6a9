"""The result cache: the same 1,000 code items scored twice through POST /score.

Items are HumanEval programs (``bench/data/HumanEval.jsonl.gz``) run in the
real sandbox of an embedded service started here: each problem's canonical
solution and a wrong ``return None`` body, each in a few variants (a trailing
comment makes them distinct completions, so nothing is merged within a request),
1,000 unique items in all. The first pass scores every one; the second sends
the identical request again and is answered from the cache. Both passes must
give the same rewards, and every second-pass result must say ``cached``.

    python bench/bench_cache.py [--items 1000] [--workers 2] [--backend process]
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


def items(n: int) -> list[dict]:
    rows = load()
    out: list[dict] = []
    variant = 0
    while len(out) < n:
        for row in rows:
            if len(out) >= n:
                break
            body = row["canonical_solution"] if variant % 3 != 2 else "    return None\n"
            it = item(row, f"{body}\n# sample {variant}")
            it["id"] = f"{row['task_id']}#{variant}"
            it["expected"] = 1.0 if variant % 3 != 2 else 0.0
            out.append(it)
        variant += 1
    return out


def timed(url: str, batch: list[dict]) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/score", json={"items": batch}, timeout=1800)
    r.raise_for_status()
    return time.perf_counter() - t0, r.json()["results"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--backend", choices=["process", "docker", "unsafe"],
                    default=os.environ.get("REWARD_SERVICE_SANDBOX_BACKEND", "process"))
    args = ap.parse_args()
    batch = items(args.items)
    want = [it.pop("expected") for it in batch]
    assert len({(i["completion"], str(i["ground_truth"])) for i in batch}) == len(batch)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"backend {args.backend}, {args.workers} workers, {len(batch)} unique code items")
    with local_server(workers=args.workers, REWARD_SERVICE_SANDBOX_BACKEND=args.backend,
                      REWARD_SERVICE_CACHE_MAX_ITEMS=str(max(100_000, 2 * len(batch)))) as url:
        warm = [dict(it, completion=it["completion"] + "\n# warm-up") for it in batch[:4]]
        timed(url, warm)  # workers' imports and sandbox sessions, outside both passes
        first_s, first = timed(url, batch)
        second_s, second = timed(url, batch)
    bad = [r for r in first if r["status"] != "ok"]
    wrong = sum(r["reward"] != w for r, w in zip(first, want))
    mismatched = sum((a["reward"], a["status"]) != (b["reward"], b["status"]) for a, b in zip(first, second))
    cached = sum(r["cached"] for r in second)
    print(f"\n{'pass':<44}{'seconds':>9}{'items/s':>10}")
    print(f"{'first: every item scored in the sandbox':<44}{first_s:>9.2f}{len(batch) / first_s:>10.1f}")
    print(f"{'second: the same request again (cache)':<44}{second_s:>9.3f}{len(batch) / second_s:>10.1f}")
    print(f"ratio first/second: {first_s / second_s:.1f}x  (target >= 10x)")
    print(f"first pass: {len(batch) - len(bad)}/{len(batch)} ok, {len(batch) - wrong}/{len(batch)} rewards as expected; "
          f"second pass: {cached}/{len(batch)} cached, {mismatched} differing from the first")
    if bad or wrong or mismatched or cached != len(batch):
        print("FAIL")
        return 1
    return 0 if first_s / second_s >= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
