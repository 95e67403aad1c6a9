"""HumanEval through the `code` task: correctness of the verifier and its speed.

Checks that all 164 canonical solutions score 1.0 and that the same programs
with the body replaced by ``return None`` score 0, then times the 164
canonical programs three ways:

(a) ``POST /score`` on a running service (``--url``, or one started here);
(b) in-process ``verifiers.score`` over a thread pool (one sandbox session each);
(c) the floor: each program + test + ``check(entry_point)`` run sequentially
    with a bare ``python3 -I -c`` and no isolation at all.

For reading the gap it also times the sandbox's own floor: 164 sequential
``run("python", "pass")`` sessions of the chosen backend. With
``--stdio-tests N`` it also times 164 stdin/stdout items of N tests each (one
sandbox session per item) against N bare interpreter runs per item, where
running all tests of a completion in one session pays off.

    python bench/bench_humaneval.py [--backend process|docker] [--url URL] [--workers 2]
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
DATA = HERE / "data" / "HumanEval.jsonl.gz"


def load() -> list[dict]:
    with gzip.open(DATA, "rt") as f:
        return [json.loads(line) for line in f]


def item(row: dict, body: str) -> dict:
    return {"id": row["task_id"], "task": "code",
            "completion": f"```python\n{row['prompt']}{body}\n```",
            "ground_truth": {"test": row["test"], "entry_point": row["entry_point"]}}


def via_service(items: list[dict], url: str) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/score", json={"items": items}, timeout=900)
    r.raise_for_status()
    return time.perf_counter() - t0, r.json()["results"]


def in_process(items: list[dict], threads: int) -> tuple[float, list[dict]]:
    import verifiers

    def one(it: dict) -> dict:
        v = verifiers.score("code", it["completion"], it["ground_truth"])
        return {"id": it["id"], "reward": v.reward, "status": v.status, "detail": v.detail}

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(one, items))
    return time.perf_counter() - t0, results


def bare_loop(rows: list[dict], python: str) -> tuple[float, int]:
    passed = 0
    t0 = time.perf_counter()
    for row in rows:
        program = f"{row['prompt']}{row['canonical_solution']}\n\n{row['test']}\n\ncheck({row['entry_point']})\n"
        p = subprocess.run([python, "-I", "-c", program], capture_output=True, timeout=60)
        passed += p.returncode == 0
    return time.perf_counter() - t0, passed


def sandbox_floor(n: int) -> float:
    import sandbox

    box = sandbox.get_sandbox()
    box.run("python", "pass")
    t0 = time.perf_counter()
    for _ in range(n):
        box.run("python", "pass")
    return time.perf_counter() - t0


STDIO_SOLUTION = "import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))\n"


def stdio_items(n_items: int, n_tests: int) -> list[dict]:
    import random

    rng = random.Random(7)
    items = []
    for i in range(n_items):
        cases = [[rng.randint(-10**6, 10**6) for _ in range(rng.randint(1, 50))] for _ in range(n_tests)]
        items.append({"id": f"sum-{i}", "task": "code", "completion": f"```python\n{STDIO_SOLUTION}```",
                      "ground_truth": {"inputs": [" ".join(map(str, c)) + "\n" for c in cases],
                                       "outputs": [f"{sum(c)}\n" for c in cases]}})
    return items


def bare_stdio(items: list[dict], python: str) -> tuple[float, int]:
    passed = 0
    t0 = time.perf_counter()
    for it in items:
        gt = it["ground_truth"]
        for inp, out in zip(gt["inputs"], gt["outputs"]):
            p = subprocess.run([python, "-I", "-c", STDIO_SOLUTION], input=inp.encode(), capture_output=True, timeout=60)
            passed += p.stdout.split() == out.encode().split()
    return time.perf_counter() - t0, passed


def report_wrong(label: str, results: list[dict], want: float) -> int:
    wrong = [r for r in results if r["reward"] != want]
    for r in wrong[:5]:
        print(f"  {label}: {r['id']} reward {r['reward']} status {r['status']}: "
              f"{json.dumps(r.get('detail'))[:400]}")
    return len(wrong)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["process", "docker", "unsafe"],
                    default=os.environ.get("REWARD_SERVICE_SANDBOX_BACKEND", "process"))
    ap.add_argument("--url", help="a running service (default: start one here)")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="service workers / in-process threads")
    ap.add_argument("--python", default="/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable,
                    help="interpreter of the bare loop (default: the one the sandbox runs)")
    ap.add_argument("--skip-service", action="store_true")
    ap.add_argument("--stdio-tests", type=int, default=0, help="also time stdin/stdout items with this many tests")
    args = ap.parse_args()
    os.environ["REWARD_SERVICE_SANDBOX_BACKEND"] = args.backend
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so a started server is stopped too

    rows = load()
    good = [item(r, r["canonical_solution"]) for r in rows]
    bad = [item(r, "    return None\n") for r in rows]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"backend {args.backend}, {len(rows)} problems")

    import verifiers

    probe = verifiers.score("code", good[0]["completion"], good[0]["ground_truth"])
    if probe.reward != 1.0:  # a broken backend would otherwise cost minutes per way
        print(f"sandbox check failed: {probe.status} {json.dumps(probe.detail)[:600]}")
        return 1
    failures = 0
    with contextlib.ExitStack() as stack:
        svc_s = None
        if not args.skip_service:
            if args.url:
                url = args.url
            else:
                from server import local_server

                url = stack.enter_context(local_server(workers=args.workers,
                                                       REWARD_SERVICE_SANDBOX_BACKEND=args.backend))
            via_service(good[:4], url)  # warm the workers: imports, sandbox setup
            svc_s, svc_results = via_service(good, url)
            failures += report_wrong("service canonical", svc_results, 1.0)
            if args.stdio_tests:
                multi = stdio_items(len(rows), args.stdio_tests)
                multi_s, multi_results = via_service(multi, url)
                failures += report_wrong("service stdin/stdout", multi_results, 1.0)

        in_process(good[:4], args.workers)
        proc_s, proc_results = in_process(good, args.workers)
        failures += report_wrong("in-process canonical", proc_results, 1.0)
        _, bad_results = in_process(bad, args.workers)
        failures += report_wrong("return None", bad_results, 0.0)

    bare_s, bare_passed = bare_loop(rows, args.python)
    n = len(rows)
    floor_s = sandbox_floor(n)
    print(f"canonical solutions scoring 1.0: {n - sum(r['reward'] != 1.0 for r in proc_results)}/{n}; "
          f"'return None' bodies scoring 0: {n - sum(r['reward'] != 0.0 for r in bad_results)}/{n}; "
          f"bare loop passing: {bare_passed}/{n}")
    print(f"\n{'way':<52}{'seconds':>9}{'items/s':>9}{'vs bare':>9}")
    lines = []
    if svc_s is not None:
        lines.append((f"(a) POST /score, {args.backend} sandbox, {args.workers} workers", svc_s))
    lines.append((f"(b) in-process verifiers.score, {args.workers} threads", proc_s))
    lines.append((f"(c) bare sequential {shutil.which(args.python) or args.python} -I -c", bare_s))
    lines.append((f"    (sandbox floor: sequential run('python', 'pass'))", floor_s))
    for label, s in lines:
        print(f"{label:<52}{s:>9.2f}{n / s:>9.1f}{bare_s / s:>8.2f}x")
    if args.stdio_tests and svc_s is not None:
        multi_bare_s, multi_passed = bare_stdio(multi, args.python)
        tests = len(multi) * args.stdio_tests
        print(f"\n{len(multi)} stdin/stdout items x {args.stdio_tests} tests (bare passing {multi_passed}/{tests})")
        print(f"{'(a) POST /score, one session per item':<52}{multi_s:>9.2f}{len(multi) / multi_s:>9.1f}"
              f"{multi_bare_s / multi_s:>8.2f}x")
        print(f"{'(c) bare: one interpreter per test':<52}{multi_bare_s:>9.2f}{len(multi) / multi_bare_s:>9.1f}{1:>8.2f}x")
    if failures:
        print(f"\nFAIL: {failures} items scored unexpectedly")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
