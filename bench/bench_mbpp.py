"""MBPP through the `code` task: how many reference solutions pass, and how fast.

Scores all 974 MBPP reference solutions (``tests/data/mbpp.jsonl.gz``) with their
own ``test_list`` and ``test_setup_code`` through the in-process verifier
(``verifiers.score`` over a thread pool, one sandbox session per item), and, side
by side, runs the same programs sequentially with a bare ``python3 -I -c`` and
no isolation at all (what the original MBPP harness does). Items that don't
score 1.0 are listed with the verifier's detail; ``tests/test_mbpp.py`` says
which of them are known and why.

    python bench/bench_mbpp.py [--threads 2] [--backend process|docker] [--skip-bare]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "mbpp.jsonl.gz"
OPTIONS = {123: {"test_timeout_s": 20}}  # the one slow reference (quadratic, ~2.5 s bare)


def load() -> list[dict]:
    with gzip.open(DATA, "rt") as f:
        return [json.loads(line) for line in f]


def in_process(rows: list[dict], threads: int) -> tuple[float, list[tuple[int, object]]]:
    sys.path.insert(0, str(ROOT))
    import verifiers

    def one(row: dict):
        gt = {"test_list": row["test_list"], "test_setup_code": row["test_setup_code"]}
        return row["task_id"], verifiers.score("code", "```python\n" + row["code"] + "\n```", gt,
                                               OPTIONS.get(row["task_id"], {}))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(one, rows))
    return time.perf_counter() - t0, results


def bare_loop(rows: list[dict], python: str) -> tuple[float, int]:
    passed = 0
    t0 = time.perf_counter()
    for row in rows:
        program = "\n".join([row["code"], row["test_setup_code"], *row["test_list"]])
        p = subprocess.run([python, "-I", "-W", "ignore", "-c", program], capture_output=True, timeout=120)
        passed += p.returncode == 0
    return time.perf_counter() - t0, passed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="in-process threads")
    ap.add_argument("--backend", choices=["process", "docker", "unsafe"],
                    default=os.environ.get("REWARD_SERVICE_SANDBOX_BACKEND", "process"))
    ap.add_argument("--python", default="/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable,
                    help="interpreter of the bare loop (default: the one the sandbox runs)")
    ap.add_argument("--skip-bare", action="store_true")
    args = ap.parse_args()
    os.environ["REWARD_SERVICE_SANDBOX_BACKEND"] = args.backend

    rows = load()
    n = len(rows)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"backend {args.backend}, {n} MBPP problems, load average {os.getloadavg()[0]:.1f}")
    in_process(rows[:4], args.threads)  # warm up: imports, sandbox setup
    proc_s, results = in_process(rows, args.threads)
    wrong = [(tid, v) for tid, v in results if v.reward != 1.0 or v.status != "ok"]
    bare_s, bare_passed = (None, None) if args.skip_bare else bare_loop(rows, args.python)

    print(f"reference solutions scoring 1.0: {n - len(wrong)}/{n}"
          + ("" if bare_passed is None else f"; bare loop passing: {bare_passed}/{n}"))
    print(f"\n{'way':<48}{'seconds':>9}{'items/s':>9}{'vs bare':>9}")
    ratio = f"{bare_s / proc_s:>8.2f}x" if bare_s else f"{'':>9}"
    print(f"{f'in-process verifiers.score, {args.threads} threads':<48}{proc_s:>9.2f}{n / proc_s:>9.1f}{ratio}")
    if bare_s:
        print(f"{'bare sequential ' + args.python + ' -I -c':<48}{bare_s:>9.2f}{n / bare_s:>9.1f}{1:>8.2f}x")
    if wrong:
        print("\nnot 1.0:")
        for tid, v in wrong:
            first = v.detail.get("first_failure") or {}
            error = (first.get("error") or json.dumps(v.detail)[:200]).strip().splitlines()[-1]
            print(f"  {tid:>4}  reward {v.reward:.3f}  {v.status}  {error[:150]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
