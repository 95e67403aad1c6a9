"""Collect rollouts with NeMo Gym's own code, graded by the reward service as the resources server.

Runs in the nemo_gym trainer venv (Python 3.12, nemo-gym 0.4.0: the newest pip offers here;
0.7 is not installable on this machine). What runs is NeMo Gym's, unchanged:

* ``HeadServer`` serves the global config, as ``ng_run`` does;
* the ``simple_agent`` (``responses_api_agents/simple_agent``) is the agent: its ``/run`` calls the
  resources server's ``/seed_session``, the policy model's ``/v1/responses``, then the resources
  server's ``/verify`` with the row plus the response; its ``/aggregate_metrics`` proxies to ours;
* ``RolloutCollectionHelper.run_examples`` posts each row to the agent's ``/run`` (the lower-level
  entry point NeMo-RL's NeMo Gym environment uses), and its ``_call_aggregate_metrics`` asks the
  agent for the run's metrics as ``ng_collect_rollouts`` does;
* ``ServerClient`` makes every call, and ``BaseVerifyResponse`` / ``AggregateMetrics`` validate answers.

The config is the documented one, examples/nemo_gym/reward_service.yaml: its resources server
``reward_service`` (no entrypoint: run outside NeMo Gym) is the live service under test. The one stand-in
is the policy model (no GPU here): it answers each prompt with the text the test scripted in the
request's ``metadata`` (``answer``, and ``reasoning`` for a reasoning item before it).

argv[1] is JSON: {"service_url", "rows", "keyed_url", "api_key"}. The last stdout line is JSON.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse


AGENT = "reward_service_simple_agent"
EXAMPLE_CONFIG = Path(__file__).resolve().parents[3] / "examples" / "nemo_gym" / "reward_service.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_port(url: str) -> dict:
    u = urlparse(url)
    return {"host": u.hostname, "port": u.port}


def main() -> None:
    args = json.loads(sys.argv[1])
    head_port, agent_port, model_port = free_port(), free_port(), free_port()
    # The documented config (examples/nemo_gym/reward_service.yaml), as a user adds it to
    # config_paths: the service's address through its REWARD_HOST / REWARD_PORT variables.
    from omegaconf import OmegaConf

    os.environ |= {"REWARD_HOST": host_port(args["service_url"])["host"],
                   "REWARD_PORT": str(host_port(args["service_url"])["port"])}
    config = OmegaConf.to_container(OmegaConf.load(EXAMPLE_CONFIG))
    config["head_server"] = {"host": "127.0.0.1", "port": head_port}
    config[AGENT]["responses_api_agents"]["simple_agent"] |= {"host": "127.0.0.1", "port": agent_port}
    # What NeMo-RL's vllm_model_for_training.yaml would define; here the stand-in below.
    config["policy_model"] = {"responses_api_models": {"stand_in": {
        "host": "127.0.0.1", "port": model_port, "entrypoint": "app.py"}}}
    # How NeMo Gym hands its config to the processes it starts: read once, before anything asks.
    os.environ["NEMO_GYM_CONFIG_DICT"] = json.dumps(config)

    import uvicorn
    from fastapi import FastAPI

    import nemo_gym
    from nemo_gym.config_types import BaseServerConfig
    from nemo_gym.openai_utils import (NeMoGymResponse, NeMoGymResponseCreateParamsNonStreaming,
                                       NeMoGymResponseOutputMessage, NeMoGymResponseOutputText,
                                       NeMoGymResponseReasoningItem, NeMoGymSummary)
    from nemo_gym.server_utils import HeadServer

    def serve(app, port: int) -> None:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()

    HeadServer.run_webserver()

    model_app = FastAPI()

    @model_app.post("/v1/responses")
    async def responses(body: NeMoGymResponseCreateParamsNonStreaming) -> NeMoGymResponse:
        script = body.metadata or {}
        output = []
        if script.get("reasoning"):
            output.append(NeMoGymResponseReasoningItem(
                id="rs_1", summary=[NeMoGymSummary(type="summary_text", text=script["reasoning"])]))
        output.append(NeMoGymResponseOutputMessage(
            id="msg_1", content=[NeMoGymResponseOutputText(type="output_text", text=script.get("answer", ""),
                                                           annotations=[])]))
        return NeMoGymResponse(id="resp_1", created_at=time.time(), model="stand-in", object="response",
                               output=output, parallel_tool_calls=True, tool_choice="auto", tools=[])

    serve(model_app, model_port)

    head = BaseServerConfig(host="127.0.0.1", port=head_port)
    # The agent runs in a process of its own, as NeMo Gym runs every server: its aiohttp client
    # is a per-process global bound to one event loop.
    agent_proc = subprocess.Popen([sys.executable, __file__, "--agent"], stdout=sys.stderr,
                                  env=os.environ | {"NEMO_GYM_CONFIG_PATH": AGENT})
    try:
        wait_for(head_port, agent_port, model_port, proc=agent_proc)
        out = asyncio.run(asyncio.wait_for(collect(args, head), timeout=300))
    finally:
        agent_proc.kill()
        agent_proc.wait()
    out["nemo_gym_version"] = nemo_gym.__version__
    print(json.dumps(out))
    sys.stdout.flush()
    os._exit(0)  # the servers' threads are daemons; don't wait on NeMo Gym's atexit client teardown


async def collect(args: dict, head) -> dict:
    from omegaconf import OmegaConf

    from nemo_gym.base_resources_server import BaseVerifyResponse
    from nemo_gym.rollout_collection import RolloutCollectionHelper
    from nemo_gym.server_utils import ServerClient, get_response_json

    rows = args["rows"]
    helper = RolloutCollectionHelper()
    results = []
    for future in helper.run_examples(rows, head_server_config=head):
        row, result = await future
        results.append(result)
    # rows and results in the same order, as _call_aggregate_metrics pairs them
    by_key = {(r["_ng_task_index"], r["_ng_rollout_index"]): r for r in results}
    results = [by_key[(r["_ng_task_index"], r["_ng_rollout_index"])] for r in rows]

    validation_errors = []
    for result in results:
        try:
            BaseVerifyResponse.model_validate(result)
        except Exception as e:  # reported, asserted on by the test
            validation_errors.append(f"{result.get('uuid')}: {e}")

    with tempfile.TemporaryDirectory() as tmp:
        metrics_path = await helper._call_aggregate_metrics(results, rows, Path(tmp) / "rollouts.jsonl")
        aggregate = json.loads(Path(metrics_path).read_text())

    client = ServerClient.load_from_global_config(head)
    seed = await client.post(server_name="reward_service", url_path="/seed_session", json={})
    close = await client.post(server_name="reward_service", url_path="/close_session", json={})
    sessions = {"seed": [seed.status, await get_response_json(seed)],
                "close": [close.status, await get_response_json(close)]}

    # An API-key-protected service: NeMo Gym's agents send no credentials, a ServerClient
    # caller can (aiohttp's headers= passes through ServerClient.post).
    keyed = ServerClient(head_server_config=head, global_config_dict=OmegaConf.create(
        {"keyed": {"resources_servers": {"reward_service": host_port(args["keyed_url"])}}}))
    probe = {k: v for k, v in results[0].items()
             if k in ("responses_create_params", "response", "expected_answer")}
    without = await keyed.post(server_name="keyed", url_path="/verify", json=probe)
    with_key = await keyed.post(server_name="keyed", url_path="/verify", json=probe,
                                headers={"Authorization": f"Bearer {args['api_key']}"})
    keyed_result = {"without_key": without.status, "with_key": with_key.status,
                    "with_key_reward": (await get_response_json(with_key)).get("reward")}
    return {"results": results, "validation_errors": validation_errors, "aggregate": aggregate,
            "sessions": sessions, "keyed": keyed_result}


def wait_for(*ports: int, proc: subprocess.Popen) -> None:
    """Until something answers HTTP on each port (any status): a server that never comes up fails, never hangs."""
    import requests

    deadline = time.monotonic() + 90
    for port in ports:
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except requests.exceptions.ConnectionError:
                if proc.poll() is not None:
                    raise RuntimeError(f"the agent process exited with {proc.returncode}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nothing answered on port {port} within 90 s") from None
                time.sleep(0.1)


def run_agent() -> None:
    """The simple_agent server, started as SimpleServer.run_webserver starts it, without a Ray cluster
    (which only its tools would need, and a 2-core test machine can't spare)."""
    import uvicorn

    from nemo_gym.global_config import get_global_config_dict
    from nemo_gym.server_utils import ServerClient
    from responses_api_agents.simple_agent.app import SimpleAgent

    config = SimpleAgent.load_config_from_global_config()
    server = SimpleAgent(config=config, server_client=ServerClient(
        head_server_config=ServerClient.load_head_server_config(), global_config_dict=get_global_config_dict()))
    app = server.setup_webserver()
    server.setup_liveness(app)
    server.setup_exception_middleware(app)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")


if __name__ == "__main__":
    run_agent() if sys.argv[1:] == ["--agent"] else main()
