"""Cost of the ``logic`` verifier: import, first use of each dataset, and per-item scoring.

For every Reasoning Gym dataset a few entries are generated, then each is
scored through ``verifiers.score`` with the right answer, a wrong one and
none, after a JSON round trip as over HTTP.  The first call per dataset
builds its cached scorer and is reported apart from the warm per-item cost.

    python3 bench/logic_bench.py [entries_per_dataset]
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def import_cost(module: str, runs: int = 3) -> float:
    """Median wall time of ``python -c 'import module'`` minus a bare interpreter start."""
    def run(code: str) -> float:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
        return time.perf_counter() - t
    bare = statistics.median(run("pass") for _ in range(runs))
    return statistics.median(run(f"import {module}") for _ in range(runs)) - bare


def main(per_dataset: int) -> None:
    print(f"import reasoning_gym: {import_cost('reasoning_gym') * 1000:.0f} ms over a bare interpreter")
    print(f"import verifiers + load_all (logic included): "
          f"{import_cost('verifiers; verifiers.load_all()') * 1000:.0f} ms")

    import verifiers

    verifiers.load_all()
    t = time.perf_counter()
    verifiers.score("logic", "", {"answer": "1", "metadata": {"source_dataset": "gcd"}})
    print(f"first logic item in a process (lazy import + first scorer): {(time.perf_counter() - t) * 1000:.0f} ms")

    import reasoning_gym
    from reasoning_gym.factory import DATASETS

    first: dict[str, float] = {}
    warm: dict[str, list[float]] = {}
    for name in sorted(n for n in DATASETS if n != "composite"):
        ds = reasoning_gym.create_dataset(name, size=per_dataset, seed=7)
        entries = [json.loads(json.dumps(e)) for e in ds]
        completions = [[f"<answer>{e['answer']}</answer>", "<answer>wrong</answer>", ""] for e in entries]
        t = time.perf_counter()
        verifiers.score("logic", completions[0][0], entries[0])
        first[name] = time.perf_counter() - t
        times = []
        for entry, cs in zip(entries, completions):
            for c in cs:
                t = time.perf_counter()
                v = verifiers.score("logic", c, entry)
                times.append(time.perf_counter() - t)
                assert v.status in ("ok", "error"), (name, v)
        warm[name] = times

    every = sorted(x for ts in warm.values() for x in ts)
    pct = lambda p: every[min(len(every) - 1, int(p * len(every)))] * 1000  # noqa: E731
    print(f"\n{len(warm)} datasets, {len(every)} warm items: median {pct(0.5):.3f} ms, "
          f"p95 {pct(0.95):.3f} ms, p99 {pct(0.99):.2f} ms, max {every[-1] * 1000:.2f} ms")
    print("slowest first use (scorer construction):")
    for name, s in sorted(first.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {name:28s} {s * 1000:8.1f} ms")
    print("slowest warm datasets (median per item):")
    for name, ts in sorted(warm.items(), key=lambda kv: -statistics.median(kv[1]))[:8]:
        print(f"  {name:28s} {statistics.median(ts) * 1000:8.2f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
