"""Math scoring throughput: the service against the floor anyone could write.

(a) one process calling math-verify directly: verify(parse(gold), parse(completion));
(b) POST /score on a local server (embedded pool, default workers).
Both score the same unique items; printed side by side with the ratio.

    python bench/bench_math.py [--n 3000] [--url URL]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from math_items import make_items  # noqa: E402
from server import local_server  # noqa: E402


def floor_loop(items: list[dict]) -> tuple[float, float]:
    from math_verify import parse, verify

    t0 = time.perf_counter()
    total = 0.0
    for it in items:
        gold = it["ground_truth"]
        gold = gold if "$" in gold or "\\boxed" in gold else "$" + gold + "$"
        total += float(verify(parse(gold), parse(it["completion"])))
    return time.perf_counter() - t0, total / len(items)


def service(items: list[dict], url: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/score", json={"items": items}, timeout=600)
    r.raise_for_status()
    body = r.json()
    return time.perf_counter() - t0, body["summary"]["mean_reward"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--url")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(local_server(workers=args.workers))
        for group, label in ((16, "GRPO groups: 16 samples share each gold"), (1, "every gold distinct")):
            # fresh seeds per mix so no cache of an earlier run helps either side
            items = make_items(args.n, seed=group, group=group)
            service(make_items(64, seed=99)[:64], url)  # warm the workers' imports
            floor_s, floor_mean = floor_loop(items)
            svc_s, svc_mean = service(items, url)
            a, b = len(items) / floor_s, len(items) / svc_s
            print(f"\n{len(items)} unique math items; {label}")
            print(f"{'path':38} {'seconds':>8} {'items/s':>8} {'mean reward':>12}")
            print(f"{'(a) one process, math-verify directly':38} {floor_s:8.2f} {a:8.1f} {floor_mean:12.3f}")
            print(f"{'(b) POST /score, embedded pool':38} {svc_s:8.2f} {b:8.1f} {svc_mean:12.3f}")
            print(f"ratio (b)/(a): {b / a:.2f}x  (target >= 1.5x on 2 cores)")


if __name__ == "__main__":
    main()
