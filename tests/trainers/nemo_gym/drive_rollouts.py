"""Collect rollouts with NeMo Gym's own code, graded by the reward service.

Runs in the nemo_gym trainer venv (Python 3.12, nemo-gym 0.4.0: the newest pip offers here;
0.7 is not installable on this machine). What runs is NeMo Gym's, unchanged:

* its config parser checks the documented config
  (examples/nemo_gym/resources_servers/reward_service/configs/reward_service.yaml), as ``ng_run`` would;
* ``HeadServer`` serves that config to the other servers, as ``ng_run`` does;
* the ``simple_agent`` is the agent, in a process of its own: its ``/run`` calls the resources
  server's ``/seed_session``, the policy model's ``/v1/responses``, then the resources server's
  ``/verify`` with the row plus the response; its ``/aggregate_metrics`` proxies to the resources server;
* the resources server is examples/nemo_gym/resources_servers/reward_service/app.py (a NeMo Gym
  ``SimpleResourcesServer`` forwarding to the live service with its API key), in a process of its own;
* ``RolloutCollectionHelper.run_examples`` posts each row to the agent's ``/run`` (the entry point
  NeMo-RL's NeMo Gym environment uses), and its ``_call_aggregate_metrics`` asks the agent for the
  run's metrics as ``ng_collect_rollouts`` does;
* ``ServerClient`` also calls the live service's ``/verify``, ``/seed_session`` and ``/close_session``
  directly; ``BaseVerifyResponse`` / ``AggregateMetrics`` validate answers.

The one stand-in is the policy model (no GPU here): it answers each prompt with the text the test
scripted in the request's ``metadata`` (``answer``, and ``reasoning`` for a reasoning item before it).
Each server is started as ``SimpleServer.run_webserver`` starts it, without the Ray cluster it
would also start (only tools need it; a 2-core test machine can't spare one).

argv[1] is JSON: {"service_url", "api_key", "rows"}. The last stdout line is JSON.
"""

import asyncio
import importlib.util
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
RESOURCES = "reward_service"
EXTRA_ROOT = Path(__file__).resolve().parents[3] / "examples" / "nemo_gym"
SERVER_DIR = EXTRA_ROOT / "resources_servers" / "reward_service"
CONFIG = SERVER_DIR / "configs" / "reward_service.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_port(url: str) -> dict:
    u = urlparse(url)
    return {"host": u.hostname, "port": u.port}


def check_config() -> str | None:
    """NeMo Gym's own check of the documented config (server refs, datasets, licence); None if it passes."""
    from omegaconf import OmegaConf

    from nemo_gym.global_config import GlobalConfigDictParser, GlobalConfigDictParserConfig

    config = OmegaConf.merge(OmegaConf.load(CONFIG), GlobalConfigDictParserConfig.NO_MODEL_GLOBAL_CONFIG_DICT)
    try:
        GlobalConfigDictParser().parse(GlobalConfigDictParserConfig(
            initial_global_config_dict=config, skip_load_from_cli=True, skip_load_from_dotenv=True))
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


def main() -> None:
    args = json.loads(sys.argv[1])
    os.environ |= {"NEMO_GYM_EXTRA_ROOTS": str(EXTRA_ROOT), "REWARD_SERVICE_URL": args["service_url"],
                   "REWARD_SERVICE_API_KEY": args["api_key"]}
    config_error = check_config()

    from omegaconf import OmegaConf

    head_port, agent_port, resources_port, model_port = (free_port() for _ in range(4))
    config = OmegaConf.to_container(OmegaConf.load(CONFIG))  # interpolations resolved in each server
    config["head_server"] = {"host": "127.0.0.1", "port": head_port}
    # The ports ng_run would have picked.
    config[AGENT]["responses_api_agents"]["simple_agent"] |= {"host": "127.0.0.1", "port": agent_port}
    config[RESOURCES]["resources_servers"]["reward_service"] |= {"host": "127.0.0.1", "port": resources_port}
    # What NeMo-RL's vllm_model_for_training.yaml would define; here the stand-in below.
    config["policy_model"] = {"responses_api_models": {"stand_in": {
        "host": "127.0.0.1", "port": model_port, "entrypoint": "app.py"}}}
    # The live service itself, for direct ServerClient calls.
    config["reward_service_direct"] = {"resources_servers": {"reward_service": host_port(args["service_url"])}}
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

    model_server = uvicorn.Server(uvicorn.Config(model_app, host="127.0.0.1", port=model_port, log_level="warning"))
    threading.Thread(target=model_server.run, daemon=True).start()

    head = BaseServerConfig(host="127.0.0.1", port=head_port)
    # The agent and the resources server in processes of their own, as NeMo Gym runs every server:
    # NeMo Gym's aiohttp client is a per-process global bound to one event loop.
    procs = [subprocess.Popen([sys.executable, __file__, "--serve", name], stdout=sys.stderr,
                              env=os.environ | {"NEMO_GYM_CONFIG_PATH": name}) for name in (AGENT, RESOURCES)]
    try:
        wait_for([head_port, agent_port, resources_port, model_port], procs)
        out = asyncio.run(asyncio.wait_for(collect(args, head), timeout=300))
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    out["config_error"] = config_error
    out["nemo_gym_version"] = nemo_gym.__version__
    print(json.dumps(out))
    sys.stdout.flush()
    os._exit(0)  # the servers' threads are daemons; don't wait on NeMo Gym's atexit client teardown


async def collect(args: dict, head) -> dict:
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

    # The live service called directly by NeMo Gym's client. NeMo Gym's agents send no
    # credentials; a ServerClient caller can (aiohttp's headers= passes through ServerClient.post).
    client = ServerClient.load_from_global_config(head)
    auth = {"Authorization": f"Bearer {args['api_key']}"}
    probe = {k: v for k, v in results[0].items() if k in ("responses_create_params", "response", "expected_answer")}
    direct = {}
    for name, path, body, headers in [("verify_without_key", "/verify", probe, {}),
                                      ("verify", "/verify", probe, auth),
                                      ("seed_session", "/seed_session", rows[0], auth),
                                      ("close_session", "/close_session", {}, auth)]:
        response = await client.post(server_name="reward_service_direct", url_path=path, json=body, headers=headers)
        direct[name] = [response.status, await get_response_json(response)]
    try:
        BaseVerifyResponse.model_validate(direct["verify"][1])
    except Exception as e:
        validation_errors.append(f"direct /verify: {e}")
    return {"results": results, "validation_errors": validation_errors, "aggregate": aggregate, "direct": direct}


def wait_for(ports: list[int], procs: list[subprocess.Popen]) -> None:
    """Until something answers HTTP on each port (any status): a server that never comes up fails, never hangs."""
    import requests

    deadline = time.monotonic() + 90
    for port in ports:
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except requests.exceptions.ConnectionError:
                for proc in procs:
                    if proc.poll() is not None:
                        raise RuntimeError(f"{proc.args[-1]} exited with {proc.returncode}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nothing answered on port {port} within 90 s") from None
                time.sleep(0.1)


def serve(name: str) -> None:
    """Run server ``name`` of the config as SimpleServer.run_webserver does, minus its Ray cluster."""
    import uvicorn

    from nemo_gym.global_config import get_global_config_dict
    from nemo_gym.server_utils import ServerClient

    if name == AGENT:
        from responses_api_agents.simple_agent.app import SimpleAgent as server_cls
    else:
        spec = importlib.util.spec_from_file_location("reward_service_resources_app", SERVER_DIR / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        server_cls = module.RewardServiceResourcesServer
    config = server_cls.load_config_from_global_config()
    server = server_cls(config=config, server_client=ServerClient(
        head_server_config=ServerClient.load_head_server_config(), global_config_dict=get_global_config_dict()))
    app = server.setup_webserver()
    server.setup_liveness(app)
    server.setup_exception_middleware(app)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")


if __name__ == "__main__":
    serve(sys.argv[2]) if sys.argv[1:2] == ["--serve"] else main()
