"""Every query of the Grafana dashboard returns data from a real Prometheus
scraping the real service.

Embedded mode: ``reward-service serve`` with its own worker pool. Distributed
mode (when ``reward_service.worker`` exists): a real redis-server, ``reward-service
worker --metrics-port`` and ``serve`` with ``REDIS_URL``. Queries about queues,
RQ workers and the like only have data in the distributed mode; every query
must have data in at least one of the two.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "reward-service.json"
RULES = REPO / "deploy" / "prometheus" / "rules"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
RATE_WINDOW = "15s"  # stands in for Grafana's $__rate_interval at a 1 s scrape interval
HAS_DISTRIBUTED = (REPO / "reward_service" / "worker.py").exists()

needs_prometheus = pytest.mark.skipif(not os.access(PROMETHEUS, os.X_OK),
                                      reason="Prometheus is not installed (apt-get install prometheus)")


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel."""
    out = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def concrete(expr: str) -> str:
    """The query as Grafana would send it with every task selected."""
    return expr.replace("$__rate_interval", RATE_WINDOW).replace("$task", ".*")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> Iterator[subprocess.Popen]:
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def wait_until(check, what: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not ready within {timeout} s")


def service_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARD_SERVICE_") and k != "REDIS_URL"}
    env.update({
        "PYTHONPATH": str(REPO),
        "REWARD_SERVICE_WORKERS": "2",
        # ifeval items get a limit no item can meet, so timeouts (and the worker
        # restarts they cause) show up; math and mcq keep their defaults.
        "REWARD_SERVICE_TASK_TIMEOUTS": json.dumps({"ifeval": 0.001}),
        # The only code run here is this file's own two snippets: no isolation needed,
        # and the test doesn't depend on whether a code sandbox works on this machine.
        "REWARD_SERVICE_SANDBOX_BACKEND": "unsafe",
        "REWARD_SERVICE_SANDBOX_REQUIRED": "false",
        "REWARD_SERVICE_LOG_LEVEL": "warning",
    })
    env.update(extra)
    return env


def traffic(round_no: int) -> list[dict]:
    """One batch with ok, wrong, invalid and timed-out items; unique per round so nothing is merged."""
    n = round_no
    return [
        {"task": "math", "completion": f"so \\boxed{{{n + 2}}}", "ground_truth": str(n + 2)},
        {"task": "math", "completion": f"\\boxed{{{n + 3}}}", "ground_truth": str(n + 4)},
        {"task": "mcq", "completion": f"Round {n}. The answer is (B).", "ground_truth": "B"},
        {"task": "mcq", "completion": f"Round {n}. The answer is (A).", "ground_truth": ["not", "a", "letter"]},
        # Code runs feed the sandbox-outcome panel: one passes, one crashes.
        {"task": "code", "completion": f"```python\n# {n}\nprint(sum(map(int, input().split())))\n```",
         "ground_truth": {"inputs": ["1 2\n"], "outputs": ["3\n"]}},
        {"task": "code", "completion": f"```python\nraise SystemExit({n + 1})\n```",
         "ground_truth": {"inputs": ["1 2\n"], "outputs": ["3\n"]}},
        # Language detection over a long response takes far longer than its 1 ms limit.
        {"task": "ifeval", "prompt": "Answer in English.", "completion": f"Round {n}. " + "The cat sat on the mat. " * 2000,
         "ground_truth": {"instruction_id_list": ["language:response_language"], "kwargs": [{"language": "en"}]}},
    ]


def prometheus_config(tmp: Path, api_port: int, worker_port: int | None) -> Path:
    jobs = [f"""  - job_name: reward-api
    static_configs: [{{targets: ["127.0.0.1:{api_port}"]}}]
"""]
    if worker_port is not None:
        jobs.append(f"""  - job_name: reward-worker
    static_configs: [{{targets: ["127.0.0.1:{worker_port}"]}}]
""")
    cfg = tmp / "prometheus.yml"
    cfg.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n" + "".join(jobs))
    return cfg


@contextlib.contextmanager
def prometheus(tmp: Path, api_port: int, worker_port: int | None = None) -> Iterator[str]:
    port = free_port()
    args = [PROMETHEUS, f"--config.file={prometheus_config(tmp, api_port, worker_port)}",
            f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn"]
    url = f"http://127.0.0.1:{port}"
    with process(args) as proc:
        wait_until(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, "prometheus", proc)
        yield url


def query(prom: str, expr: str) -> list[dict]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def has_data(result: list[dict]) -> bool:
    return any(math.isfinite(float(s["value"][1])) for s in result)


def drive(api: str, prom: str, jobs: list[str]) -> None:
    """Wait until every job is scraped, send traffic across several scrapes, let the last one land."""
    deadline = time.monotonic() + 30
    while not all(has_data(query(prom, f'up{{job="{j}"}} == 1')) for j in jobs):
        assert time.monotonic() < deadline, f"Prometheus never scraped {jobs}"
        time.sleep(0.5)
    def one_sample(i: int) -> int:  # as OpenRLHF sends them: many one-item requests at once, coalesced
        item = {"task": "math", "completion": f"\\boxed{{{i % 3}}}", "ground_truth": "1"}
        return client.post("/score", json={"items": [item]}).status_code

    with httpx.Client(base_url=api, timeout=60) as client, ThreadPoolExecutor(16) as pool:
        for n in range(6):
            r = client.post("/score", json={"items": traffic(n)})
            assert r.status_code == 200, r.text
            assert set(pool.map(one_sample, range(32))) == {200}
            time.sleep(0.7)
    time.sleep(2.5)


def unanswered(prom: str) -> list[str]:
    return [f"{title}: {concrete(expr)}" for title, expr in dashboard_queries()
            if not has_data(query(prom, concrete(expr)))]


def test_dashboard_has_the_required_panels():
    titles = {t for t, _ in dashboard_queries()}
    for wanted in ("Reward throughput by task", "Item latency p50 / p95 / p99", "Status breakdown",
                   "Mean reward by task", "Scoring processes alive", "Worker restarts by reason", "Queue depth",
                   "Sandbox outcomes"):
        assert wanted in titles


def test_dashboard_latency_panel_asks_for_p50_p95_p99():
    exprs = [e for t, e in dashboard_queries() if t == "Item latency p50 / p95 / p99"]
    assert [e.split(",")[0] for e in exprs] == [f"histogram_quantile({q}" for q in ("0.5", "0.95", "0.99")]


def test_dashboard_panels_use_the_provisioned_datasource():
    provisioned = (REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    uids = {p["datasource"]["uid"] for p in json.loads(DASHBOARD.read_text())["panels"] if "datasource" in p}
    assert uids and all(f"uid: {uid}" in provisioned for uid in uids)


@pytest.mark.skipif(not os.access(PROMTOOL, os.X_OK), reason="promtool is not installed (apt-get install prometheus)")
def test_prometheus_config_and_rules_are_valid():
    for args in (["check", "config", str(REPO / "deploy" / "prometheus" / "prometheus.yml")],
                 ["check", "rules", *map(str, sorted(RULES.glob("*.yml")))]):
        r = subprocess.run([PROMTOOL, *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


@needs_prometheus
@pytest.mark.slow
def test_every_dashboard_query_has_data_from_the_embedded_service(tmp_path):
    api_port = free_port()
    serve = [sys.executable, "-m", "reward_service.cli", "serve", "--host", "127.0.0.1", "--port", str(api_port)]
    api = f"http://127.0.0.1:{api_port}"
    with process(serve, service_env()) as svc:
        wait_until(lambda: httpx.get(f"{api}/readyz", timeout=2).status_code == 200, "service", svc)
        with prometheus(tmp_path, api_port) as prom:
            drive(api, prom, ["reward-api"])
            missing = unanswered(prom)
    distributed_only = [m for m in missing if any(k in m for k in DISTRIBUTED_ONLY)]
    assert sorted(set(missing) - set(distributed_only)) == []


# Substrings of the queries that only the distributed mode (Redis + RQ workers) can answer.
DISTRIBUTED_ONLY = ("reward_queue_", "reward_redis_up", "reward_worker_chunks",
                    'job="reward-worker"')


@needs_prometheus
@pytest.mark.slow
@pytest.mark.skipif(not HAS_DISTRIBUTED, reason="distributed mode (reward_service.worker) is not in this checkout yet")
@pytest.mark.skipif(not os.access(REDIS_SERVER, os.X_OK), reason="redis-server is not installed (apt-get install redis-server)")
def test_every_dashboard_query_has_data_from_the_distributed_service(tmp_path):
    redis_port, api_port, metrics_port = free_port(), free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = service_env(REDIS_URL=redis_url)
    api = f"http://127.0.0.1:{api_port}"
    redis_args = [REDIS_SERVER, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    worker = [sys.executable, "-m", "reward_service.cli", "worker", "--count", "2", "--metrics-port", str(metrics_port)]
    serve = [sys.executable, "-m", "reward_service.cli", "serve", "--host", "127.0.0.1", "--port", str(api_port)]
    with process(redis_args, cwd=tmp_path), process(worker, env) as wk, process(serve, env) as svc:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).status_code == 200,
                   "worker metrics", wk)
        wait_until(lambda: httpx.get(f"{api}/readyz", timeout=2).status_code == 200, "service", svc)
        with prometheus(tmp_path, api_port, metrics_port) as prom:
            drive(api, prom, ["reward-api", "reward-worker"])
            assert unanswered(prom) == []
