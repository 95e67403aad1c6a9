"""Per-run cost of the process sandbox next to a bare, unsandboxed ``python3 -I -c``.

    python3 bench/bench_sandbox.py [--runs 50] [--threads 2]

Prints milliseconds per run (sequential), runs per second with N threads, and
the ratio to the bare interpreter. Not a test: numbers depend on the machine.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from sandbox.process import ProcessSandbox  # noqa: E402

PROGRAMS = {
    "empty": "pass",
    "humaneval-like": (
        "def add(a, b):\n    return a + b\n"
        "def check(f):\n    assert f(1, 2) == 3\n    assert f(-1, 1) == 0\n    assert f(10**20, 1) == 10**20 + 1\n"
        "check(add)\nprint('passed')\n"
    ),
}


def bare(python: str, src: str) -> None:
    subprocess.run([python, "-I", "-c", src], capture_output=True, check=True)


def boxed(sb: ProcessSandbox, src: str) -> None:
    r = sb.run("python", src)
    assert r.status.value == "ok", r


def per_run_ms(fn, runs: int) -> float:
    fn()  # warm caches
    t0 = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - t0) / runs * 1000


def throughput(fn, runs: int, threads: int) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: fn(), range(runs)))
    return runs / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    sb = ProcessSandbox()
    sb.check()
    python = sb.config.python
    print(f"process sandbox isolation: {sb.isolation()}")
    print(f"{'program':16s} {'bare ms':>8s} {'sandbox ms':>10s} {'ratio':>6s}   "
          f"{'bare/s x' + str(args.threads):>10s} {'sandbox/s':>10s} {'ratio':>6s}")
    for name, src in PROGRAMS.items():
        b = per_run_ms(lambda: bare(python, src), args.runs)
        s = per_run_ms(lambda: boxed(sb, src), args.runs)
        bt = throughput(lambda: bare(python, src), args.runs, args.threads)
        st = throughput(lambda: boxed(sb, src), args.runs, args.threads)
        print(f"{name:16s} {b:8.1f} {s:10.1f} {s / b:6.2f}   {bt:10.1f} {st:10.1f} {st / bt:6.2f}")
    sb.close()


if __name__ == "__main__":
    main()
