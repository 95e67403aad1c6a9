"""Scale-out: the same CPU-bound math batch with 1 and 2 worker processes, embedded vs distributed.

    python bench/bench_scaleout.py [--items 2000] [--repeats 3] [--workers 1,2]

Both paths are driven the same way (the service's Scorer, in this process),
so the difference is the executor: the embedded process pool, or RQ over a
local redis-server with `reward-service worker --count N` processes. Targets:
2 workers >= 1.8x of 1; distributed within 15% of embedded.
"""
from __future__ import annotations

import argparse
from typing import Callable
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from math_items import make_items  # noqa: E402
from server import free_port  # noqa: E402

from reward_service.config import Settings  # noqa: E402
from reward_service.models import Item  # noqa: E402


def tree_cpu_s(root: int) -> float:
    """User+system CPU seconds of ``root`` and all its live descendants (from /proc)."""
    parent, cpu = {}, {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(d)] = int(fields[1])
            cpu[int(d)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    total, stack = 0.0, [root]
    children: dict[int, list[int]] = {}
    for pid, pp in parent.items():
        children.setdefault(pp, []).append(pid)
    while stack:
        pid = stack.pop()
        total += cpu.get(pid, 0.0)
        stack += children.get(pid, [])
    return total


class Backends:
    """An embedded pool and RQ workers (on a private redis-server) of the same size, both kept warm."""

    def __init__(self, workers: int, chunk_size: int) -> None:
        self.workers, self.chunk_size = workers, chunk_size
        self.tmp = tempfile.mkdtemp(prefix="bench-redis-")
        port = free_port()
        self.redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", self.tmp], stdout=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{port}/0"
        env = {k: v for k, v in os.environ.items() if not k.startswith("REWARD_SERVICE_")}
        env.update(REDIS_URL=self.url, PYTHONPATH=str(REPO), REWARD_SERVICE_SANDBOX_REQUIRED="false",
                   REWARD_SERVICE_LOG_LEVEL="warning")
        self.wp = subprocess.Popen([sys.executable, "-m", "reward_service.cli", "worker", "--count", str(workers),
                                    "--queues", "math"], cwd=REPO, env=env, start_new_session=True)

    def wait_workers(self) -> None:
        from redis import Redis
        from rq import Worker

        r = Redis.from_url(self.url)
        deadline = time.monotonic() + 60
        while True:
            try:
                if sum(w.get_state() == "idle" for w in Worker.all(connection=r)) >= self.workers:
                    return
            except Exception:
                pass
            if time.monotonic() > deadline or self.wp.poll() is not None:
                raise SystemExit("workers did not start")
            time.sleep(0.1)

    async def scorers(self):
        from reward_service.executors.embedded import EmbeddedExecutor
        from reward_service.executors.rq import RQExecutor
        from reward_service.scoring import Scorer

        se = Settings(workers=self.workers, sandbox_required=False, chunk_size=self.chunk_size)
        sd = Settings(REDIS_URL=self.url, sandbox_required=False, chunk_size=self.chunk_size)
        self.executors = [EmbeddedExecutor(se), RQExecutor(sd)]
        for ex in self.executors:
            await ex.start()
        return {"embedded": Scorer(self.executors[0], se), "distributed": Scorer(self.executors[1], sd)}

    async def stop(self) -> None:
        for ex in self.executors:
            await ex.stop()

    def close(self) -> None:
        self.wp.send_signal(signal.SIGTERM)
        try:
            self.wp.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.wp.pid, signal.SIGKILL)
        self.redis.kill()
        self.redis.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


async def measure(batches: Callable[[int], list[Item]], workers: int, repeats: int,
                  chunk_size: int) -> dict[str, list[tuple[float, float]]]:
    """(wall s, CPU s of every process involved) per run; the two paths alternate so both see the same load.

    Every run scores a fresh batch (``batches(k)``): workers cache parses, so a
    repeated batch would measure the caches, not the scoring."""
    b = Backends(workers, chunk_size)
    try:
        b.wait_workers()
        scorers = await b.scorers()
        out: dict[str, list[tuple[float, float]]] = {m: [] for m in scorers}
        for sc in scorers.values():
            await sc.score(batches(-1)[:200])  # warm every worker's verifiers
        run = 0
        for _ in range(repeats):
            for mode, sc in scorers.items():
                items = batches(run)
                run += 1
                c0, t0 = tree_cpu_s(os.getpid()), time.perf_counter()
                resp = await sc.score(items)
                out[mode].append((time.perf_counter() - t0, tree_cpu_s(os.getpid()) - c0))
                assert resp.summary.by_status.get("ok", 0) >= 0.95 * len(items), resp.summary
        items = batches(run)
        for size in (1, 16):  # latency of small requests: what the round trip through Redis costs
            for mode, sc in scorers.items():
                lat = []
                for k in range(30):
                    t0 = time.perf_counter()
                    await sc.score(items[k * size:(k + 1) * size])
                    lat.append(time.perf_counter() - t0)
                out[f"{mode} {size}-item latency"] = [(statistics.median(lat), 0.0)]
        await b.stop()
        return out
    finally:
        b.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--chunk-size", type=int, default=0, help="0: each executor picks")
    p.add_argument("--group", type=int, default=1,
                   help="samples sharing a gold answer (1: every gold distinct, the most CPU-bound mix; "
                        "16: GRPO-shaped, where parse caches make items ~10x cheaper)")
    args = p.parse_args()
    def batches(k: int) -> list[Item]:
        return [Item.model_validate(i) for i in make_items(args.items, seed=1000 * args.group + k, group=args.group)]

    items = batches(0)
    counts = [int(c) for c in args.workers.split(",")]
    load = os.getloadavg()[0]
    res = {n: asyncio.run(measure(batches, n, args.repeats, args.chunk_size)) for n in counts}
    modes = ["embedded", "distributed"]

    def med(n, m, k):
        return statistics.median(r[k] for r in res[n][m])

    def best(n, m):
        return min(r[0] for r in res[n][m])

    print(f"\n{len(items)} math items (bench/math_items.py), {args.repeats} alternating runs per path; "
          f"{os.cpu_count()} cores; load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("wall time: best (median); CPU: median CPU-seconds of all processes involved (API, Redis, workers)")
    print(f"{'workers':>7} | {'embedded':>20} | {'distributed':>20} | {'dist/emb wall':>13} | {'emb CPU':>8} | "
          f"{'dist CPU':>8} | {'dist/emb CPU':>12}")
    for n in counts:
        cols = [f"{best(n, m):6.2f}s ({med(n, m, 0):5.2f}s) {len(items) / best(n, m):5.0f}/s" for m in modes]
        print(f"{n:>7} | {cols[0]:>20} | {cols[1]:>20} | {best(n, 'distributed') / best(n, 'embedded'):>12.3f}x | "
              f"{med(n, 'embedded', 1):>7.2f}s | {med(n, 'distributed', 1):>7.2f}s | "
              f"{med(n, 'distributed', 1) / med(n, 'embedded', 1):>11.3f}x")
    for n in counts:
        print(f"small requests, {n} worker(s), median of 30: " + ", ".join(
            f"{k.replace(' latency', '')} {v[0][0] * 1000:.1f} ms" for k, v in res[n].items() if "latency" in k))
    if len(counts) >= 2:
        a, z = counts[0], counts[-1]
        for m in modes:
            print(f"speed-up {m}: {z} vs {a} workers = {best(a, m) / best(z, m):.2f}x best, "
                  f"{med(a, m, 0) / med(z, m, 0):.2f}x median")


if __name__ == "__main__":
    main()
