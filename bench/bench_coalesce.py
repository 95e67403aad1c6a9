"""One sample per request, as OpenRLHF sends them: the service with and without the coalescer.

    python bench/bench_coalesce.py [--items 1024] [--concurrency 64] [--repeats 3] [--distributed]

The same GRPO-shaped math items (bench/math_items.py; groups of 16, every
completion distinct) go to the real service over HTTP as one-item
``POST /score`` requests, ``--concurrency`` at a time, once with
``REWARD_SERVICE_COALESCE_WINDOW_MS=0`` (every request its own executor batch)
and once with the default window, in one run. ``--distributed`` measures the
same against RQ workers on a private redis-server, where a batch costs Redis
round trips and an RQ job. Also printed: the same items as one batch request.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from math_items import make_items  # noqa: E402
from server import free_port, local_server  # noqa: E402


async def _connection(host: str, port: int, bodies: list[bytes]) -> None:
    """One keep-alive connection sending its requests one after another.

    Raw HTTP/1.1 on asyncio streams, not httpx: at 64 requests in flight httpx's
    client costs ~8 ms of CPU per request here, more than the service does, and
    the benchmark would measure its own client on these 2 cores."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for body in bodies:
            writer.write(b"POST /score HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
    finally:
        writer.close()


async def one_per_request(url: str, items: list[dict], concurrency: int) -> float:
    host, port = url.removeprefix("http://").split(":")
    bodies = [json.dumps({"items": [it], "cache": False}).encode() for it in items]
    t0 = time.perf_counter()
    await asyncio.gather(*(_connection(host, int(port), bodies[k::concurrency]) for k in range(concurrency)))
    return time.perf_counter() - t0


async def one_batch(url: str, items: list[dict]) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        t0 = time.perf_counter()
        r = await client.post("/score", json={"items": items, "cache": False})
        r.raise_for_status()
        return time.perf_counter() - t0


def measure(env: dict[str, str], items_for, repeats: int, concurrency: int, workers: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"off": [], "on": [], "batch": []}
    servers = {"off": {**env, "REWARD_SERVICE_COALESCE_WINDOW_MS": "0"}, "on": env}
    for name, e in servers.items():
        with local_server(workers=workers, **e) as url:
            asyncio.run(one_per_request(url, items_for(-1)[:128], concurrency))  # warm the workers' verifiers
            for k in range(repeats):
                out[name].append(asyncio.run(one_per_request(url, items_for(k), concurrency)))
            if name == "on":
                out["batch"] = [asyncio.run(one_batch(url, items_for(100 + k))) for k in range(repeats)]
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=1024)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--distributed", action="store_true")
    args = p.parse_args()

    def items_for(k: int) -> list[dict]:
        # a fresh seed per run: workers cache parses, so a repeated batch would measure the cache
        return [{kk: v for kk, v in it.items() if kk in ("task", "completion", "ground_truth")}
                for it in make_items(args.items, seed=1000 + k)]

    env = {"REWARD_SERVICE_SANDBOX_REQUIRED": "false", "REWARD_SERVICE_CACHE_ENABLED": "false"}
    procs: list[subprocess.Popen] = []
    if args.distributed:
        port = free_port()
        procs.append(subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no"], stdout=subprocess.DEVNULL))
        time.sleep(0.5)
        env["REWARD_SERVICE_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        procs.append(subprocess.Popen([sys.executable, "-m", "reward_service.cli", "worker", "--count",
                                       str(args.workers)], cwd=REPO, env={**os.environ, **env,
                                       "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(3)
    try:
        got = measure(env, items_for, args.repeats, args.concurrency, args.workers)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(10)
    mode = "distributed (RQ)" if args.distributed else "embedded"
    n = args.items
    print(f"{mode}, {args.workers} workers: {n} math items as one-item requests, {args.concurrency} in flight; "
          f"median (best) of {args.repeats}")
    for name, label in (("off", "coalescer off"), ("on", "coalescer on (default window)"),
                        ("batch", "one batch request (reference)")):
        xs = got[name]
        print(f"  {label:32s} {statistics.median(xs):6.2f} s ({min(xs):.2f})  {n / statistics.median(xs):7.0f} items/s")
    print(f"  coalescer on / off: {statistics.median(got['off']) / statistics.median(got['on']):.2f}x")


if __name__ == "__main__":
    main()
