"""deploy/kubernetes/: what can be checked without a cluster.

- every manifest passes the Kubernetes API schema (kubernetes-validate, strict: no unknown fields);
- the KEDA triggers watch the Redis lists RQ really uses for every task family's queue;
- the worker pod gets what the compose worker gets for the code sandbox;
- the worker container's command and environment, rendered from the manifests as the kubelet
  would ($(VAR) expansion, ConfigMap envFrom), start the real `reward-service worker` against a
  real redis-server, and an API scores a math item and a sandboxed code item through it.

Not run here (no cluster): scheduling, the seccomp Localhost profile on a node, the image's
entrypoint in a pod, KEDA itself, NetworkPolicy enforcement.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

try:  # tests/ as a package or as a plain directory on sys.path
    from tests.redis_fixtures import redis_server  # noqa: F401  (fixture)
except ImportError:
    from redis_fixtures import redis_server  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "deploy" / "kubernetes"


def docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def resources() -> dict[tuple[str, str], dict]:
    names = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    return {(d["kind"], d["metadata"]["name"]): d for n in names for d in docs(n)}


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def worker_container() -> dict:
    return resources()[("Deployment", "worker")]["spec"]["template"]["spec"]["containers"][0]


# -- schema ---------------------------------------------------------------------------------------------------
def test_every_manifest_passes_the_kubernetes_schema_strictly():
    import kubernetes_validate

    checked = 0
    for path in manifest_files():
        for d in yaml.safe_load_all(path.read_text()):
            if not d or d["apiVersion"].startswith("keda.sh/"):  # a CRD: not in the API schema
                continue
            kubernetes_validate.validate(d, kubernetes_validate.latest_version(), strict=True)
            checked += 1
    assert checked >= 9


def test_kustomization_lists_every_manifest_but_the_optional_ones():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    top = {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == top


# -- autoscaling --------------------------------------------------------------------------------------------------
def test_keda_triggers_watch_rqs_list_of_every_task_familys_queue():
    import redis
    from rq import Queue

    import verifiers
    from reward_service.executors.rq_job import queue_name

    families = sorted({spec.queue for spec in verifiers.load_all().values()})
    unused = redis.Redis()  # never contacted: Queue.key is a name
    expected = {Queue(queue_name(f), connection=unused).key for f in families}  # rq:queue:rs:<family>
    so = resources()[("ScaledObject", "worker")]
    assert so["spec"]["scaleTargetRef"]["name"] == "worker"
    assert so["spec"]["minReplicaCount"] >= 1  # zero workers -> API unready -> no traffic to wake them
    lists = {t["metadata"]["listName"] for t in so["spec"]["triggers"] if t["type"] == "redis"}
    assert lists == expected


def test_keda_reads_the_redis_the_service_uses():
    url = resources()[("ConfigMap", "reward-service")]["data"]["REDIS_URL"]
    host, port = re.match(r"redis://([^:/]+):(\d+)/", url).groups()
    service = resources()[("Service", host)]
    assert service["spec"]["ports"][0]["port"] == int(port)
    namespace = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
    for t in resources()[("ScaledObject", "worker")]["spec"]["triggers"]:
        assert t["metadata"]["address"] == f"{host}.{namespace}.svc:{port}"


def test_api_runs_several_replicas_gated_on_readyz():
    api = resources()[("Deployment", "api")]
    assert api["spec"]["replicas"] > 1
    c = api["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"


# -- the sandbox's security context ---------------------------------------------------------------------------------
def test_worker_pod_gets_what_the_compose_worker_gets_for_the_sandbox_and_no_more():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["x-reward-service"]
    pod = resources()[("Deployment", "worker")]["spec"]["template"]["spec"]
    sc = worker_container()["securityContext"]
    assert sc["capabilities"]["drop"] == ["ALL"] == compose["cap_drop"]
    assert sorted(sc["capabilities"]["add"]) == sorted(compose["cap_add"])
    assert not sc.get("privileged") and not pod.get("hostPID") and not pod.get("hostNetwork")
    assert sc["runAsUser"] == 0 and compose["user"] == "0:0"  # for the entrypoint, which drops to 10000
    seccomp = next(o.split(":", 1)[1] for o in compose["security_opt"] if o.startswith("seccomp:"))
    local = pod["securityContext"]["seccompProfile"]
    assert local["type"] == "Localhost" and Path(local["localhostProfile"]).name == Path(seccomp).name
    assert pod["securityContext"]["appArmorProfile"] == {"type": "Unconfined"}
    assert pod["automountServiceAccountToken"] is False
    assert not any(v.get("hostPath") for v in pod.get("volumes", []))  # never the host's Docker socket


def test_api_pod_runs_unprivileged():
    pod = resources()[("Deployment", "api")]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10000
    sc = pod["containers"][0]["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["allowPrivilegeEscalation"] is False


# -- the rendered worker, for real ---------------------------------------------------------------------------------
def rendered_worker(redis_url: str) -> tuple[list[str], dict[str, str]]:
    """argv and environment of the worker container as the kubelet builds them (envFrom, then env,
    then $(VAR) expansion in args). The image's entrypoint is replaced by what it execs,
    `reward-service` (its root-only /proc preparation is for the pod), and REDIS_URL points at the
    test's redis-server instead of the in-cluster Service."""
    c = worker_container()
    env: dict[str, str] = {}
    for src in c.get("envFrom", []):
        env.update(resources()[("ConfigMap", src["configMapRef"]["name"])]["data"])
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
    args = [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in c["args"]]
    env["REDIS_URL"] = redis_url
    return args, env


def test_rendered_worker_command_starts_a_real_worker_that_scores(redis_server, tmp_path):
    args, env = rendered_worker(redis_server.url)
    assert args[:3] == ["worker", "--count", "4"]
    exe = shutil.which("reward-service", path=str(Path(sys.executable).parent)) or "reward-service"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("REWARD_SERVICE_") and k != "REDIS_URL"}
    child_env.update(env, PYTHONPATH=str(REPO), PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([exe, *args], cwd=tmp_path, env=child_env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        from reward_service.api import create_app
        from reward_service.config import Settings

        with TestClient(create_app(Settings(REDIS_URL=redis_server.url, sandbox_required=False))) as c:
            deadline = time.monotonic() + 90
            while c.get("/readyz").status_code != 200:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"rendered worker not serving: {c.get('/readyz').json()}\n{log.read().decode()[-3000:]}")
                time.sleep(0.3)
            assert "rs:code=4" in c.get("/readyz").json()["detail"]  # --count $(WORKER_PROCESSES) = 4
            items = [{"task": "math", "completion": r"\boxed{42}", "ground_truth": "42"},
                     {"task": "code", "completion": "```python\nprint(sum(map(int, input().split())))\n```",
                      "ground_truth": {"inputs": ["2 3\n"], "outputs": ["5\n"]}}]
            body = c.post("/score", json={"items": items, "timeout_s": 60}).json()
        assert [r["reward"] for r in body["results"]] == [1.0, 1.0], body
        assert body["results"][1]["detail"]["sandbox"]["backend"] == env["REWARD_SERVICE_SANDBOX_BACKEND"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
