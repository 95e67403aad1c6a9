"""Client chunking: one big request vs chunks in flight at once, same items.

    python bench/bench_client.py [--url URL] [--items 4000] [--workers 2]

Math items with distinct completions (so the server's duplicate merging doesn't
help), scored with RewardClient at several (chunk_size, max_concurrency)
settings; prints wall time and items/s for each. Without --url a local service
is started (bench/server.py) with --workers scoring processes.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reward_service.client import RewardClient  # noqa: E402

SETTINGS = [(10_000, 1), (1000, 1), (1000, 4), (250, 4), (250, 8)]


def items(n: int, start: int) -> list[dict]:
    # Fresh numbers per setting, so no setting profits from caches warmed by the one before.
    return [{"task": "math", "completion": f"Adding up gives \\boxed{{{i + (i % 3 == 0)}}}", "ground_truth": str(i)}
            for i in range(start, start + n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--items", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--offset", type=int, default=0, help="first number used; change it to dodge server-side caches")
    args = ap.parse_args()

    if args.url:
        server = contextlib.nullcontext(args.url)
    else:
        from server import local_server

        server = local_server(workers=args.workers, REWARD_SERVICE_SANDBOX_REQUIRED="false")
    with server as url:
        with RewardClient(url) as warm:
            warm.score(items(50, 10**9))
        print(f"{args.items} distinct math items per setting")
        for k, (chunk_size, concurrency) in enumerate(SETTINGS):
            batch = items(args.items, args.offset + k * args.items)
            with RewardClient(url, chunk_size=chunk_size, max_concurrency=concurrency) as client:
                t0 = time.perf_counter()
                results = client.score(batch)
                elapsed = time.perf_counter() - t0
            assert len(results) == len(batch)
            print(f"chunk_size={chunk_size:6d} max_concurrency={concurrency}: {elapsed:6.2f} s  "
                  f"{len(batch) / elapsed:7.0f} items/s")


if __name__ == "__main__":
    main()
