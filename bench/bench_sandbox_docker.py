"""Per-run latency of a trivial Python program: warm docker pool vs ``docker run --rm`` vs a bare subprocess.

Also times a bare ``docker exec`` of the program into a warm container (no
files, no cleanup): the floor of any exec-per-run design, which the backend
avoids by talking to a resident supervisor (PID 1) over the attached stdio.
The bare subprocess runs the host's own Python, whose start-up (site-packages)
may be slower than the container's minimal one; /usr/bin/python3, when
present, is timed too as the fairer comparison.

    python3 bench/bench_sandbox_docker.py [--runs N]

Needs a Docker engine and the sandbox image (deploy/start-dockerd.sh,
deploy/sandbox/build-image.sh).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.docker import SANDBOX_USER, DockerConfig, DockerSandbox  # noqa: E402

PROGRAM = "print(sum(range(10)))"
SYSTEM_PYTHON = Path("/usr/bin/python3")


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm-up: first-use costs are not per-run costs
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def bare_subprocess(python: str) -> Callable[[], None]:
    def go() -> None:
        subprocess.run([python, "-I", "-c", PROGRAM], check=True, capture_output=True)
    return go


def docker_run_rm(image: str) -> Callable[[], None]:
    def go() -> None:
        subprocess.run(["docker", "run", "--rm", "--network", "none", "--user", SANDBOX_USER, image,
                        "python3", "-I", "-c", PROGRAM], check=True, capture_output=True)
    return go


def warm_pool(sb: DockerSandbox) -> Callable[[], None]:
    def go() -> None:
        r = sb.run("python", PROGRAM)
        assert r.stdout == b"45\n", r
    return go


def bare_exec(sb: DockerSandbox) -> Callable[[], None]:
    """Floor for an exec-per-run design: one exec of the program itself, no files, no cleanup.

    (``put_archive`` is not an alternative: the engine refuses it on a
    read-only root even when the target is a tmpfs.)
    """
    api = sb._docker().api
    pool = sb._get_pool()

    def go() -> None:
        warm = pool.acquire()
        try:
            exec_id = api.exec_create(warm.id, ["python3", "-I", "-c", PROGRAM], user=SANDBOX_USER)["Id"]
            out = api.exec_start(exec_id)
        finally:
            pool.release(warm)
        assert out == b"45\n", out
    return go


def throughput(sb: DockerSandbox, runs: int) -> float:
    """Runs per second with one caller thread per pooled container."""
    go = warm_pool(sb)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(sb.config.pool_size) as ex:
        list(ex.map(lambda _: go(), range(runs)))
    return runs / (time.perf_counter() - t0)


def row(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    return f"{name:<36} {len(ms):>4} {statistics.median(ms):>9.1f} {p90:>9.1f} {statistics.mean(ms):>9.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()

    sb = DockerSandbox(DockerConfig(pool_size=2))
    sb.check()
    try:
        results = {
            "bare subprocess (no isolation)": timed(bare_subprocess(sys.executable), args.runs),
            "docker sandbox, warm pool": timed(warm_pool(sb), args.runs),
            "exec-per-run floor (bare exec)": timed(bare_exec(sb), args.runs),
            "docker run --rm": timed(docker_run_rm(sb.config.image), max(5, args.runs // 3)),
        }
        if SYSTEM_PYTHON.exists() and SYSTEM_PYTHON.resolve() != Path(sys.executable).resolve():
            # Closer to the container's interpreter: a distribution Python without a big site-packages.
            results["bare subprocess, system python3"] = timed(bare_subprocess(str(SYSTEM_PYTHON)), args.runs)
        rate = throughput(sb, args.runs)
    finally:
        sb.close()
    print(f"{'per-run latency, ms':<36} {'runs':>4} {'median':>9} {'p90':>9} {'mean':>9}")
    for name, ms in results.items():
        print(row(name, ms))
    print(f"warm pool throughput, {sb.config.pool_size} threads: {rate:.1f} runs/s")


if __name__ == "__main__":
    main()
