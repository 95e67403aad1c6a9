"""The forwarding resources server (examples/nemo_gym/resources_servers/reward_service/app.py) against a
scripted upstream: it waits out 429s as Retry-After says, sends the API key, and gives up (an error, not
a hang) after ``max_retries`` refusals. The upstream is scripted because the live service can't be made
to answer 429 twice and then 200 on demand.

argv[1] is JSON: {"api_key"}. The last stdout line is JSON.
"""

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from drive_rollouts import RESOURCES, free_port, wait_for

SCRIPT = {"/verify": [(429, "0.2"), (429, "0.2"), (200, None)], "/aggregate_metrics": [(503, "0.1")] * 10}


def main() -> None:
    args = json.loads(sys.argv[1])
    seen: list[dict] = []

    class Upstream(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"null")
            seen.append({"path": self.path, "t": time.monotonic(), "auth": self.headers.get("authorization")})
            script = SCRIPT[self.path]
            status, retry_after = script.pop(0) if len(script) > 1 else script[0]
            payload = body | {"reward": 1.0, "mask_sample": False} if status == 200 else {"detail": "busy"}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            if retry_after:
                self.send_header("retry-after", retry_after)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()

    head_port, resources_port = free_port(), free_port()
    config = {
        "head_server": {"host": "127.0.0.1", "port": head_port},
        RESOURCES: {"resources_servers": {"reward_service": {
            "host": "127.0.0.1", "port": resources_port, "entrypoint": "app.py", "domain": "math",
            "reward_service_url": f"http://127.0.0.1:{upstream.server_address[1]}",
            "reward_service_api_key": args["api_key"], "max_retries": 3, "timeout_s": 10}}},
    }
    os.environ["NEMO_GYM_CONFIG_DICT"] = json.dumps(config)

    from nemo_gym.config_types import BaseServerConfig
    from nemo_gym.server_utils import HeadServer, ServerClient, get_response_json

    HeadServer.run_webserver()
    proc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "drive_rollouts.py"),
                             "--serve", RESOURCES], stdout=sys.stderr, env=os.environ | {"NEMO_GYM_CONFIG_PATH": RESOURCES})

    async def calls() -> dict:
        client = ServerClient.load_from_global_config(BaseServerConfig(host="127.0.0.1", port=head_port))
        verify_body = {"responses_create_params": {"input": "What is 2+2?"},
                       "response": {"id": "r", "created_at": 0.0, "model": "m", "object": "response", "output": [],
                                    "parallel_tool_calls": True, "tool_choice": "auto", "tools": []},
                       "expected_answer": "4"}
        t0 = time.monotonic()
        verify = await client.post(server_name=RESOURCES, url_path="/verify", json=verify_body)
        verify_s = time.monotonic() - t0
        t0 = time.monotonic()
        agg = await client.post(server_name=RESOURCES, url_path="/aggregate_metrics", json={"verify_responses": []})
        agg_s = time.monotonic() - t0
        return {"verify": [verify.status, await get_response_json(verify)], "verify_s": verify_s,
                "aggregate_status": agg.status, "aggregate_s": agg_s}

    try:
        wait_for([head_port, resources_port], [proc])
        out = asyncio.run(asyncio.wait_for(calls(), timeout=120))
    finally:
        proc.kill()
        proc.wait()
    out["upstream"] = [{"path": s["path"], "auth": s["auth"]} for s in seen]
    print(json.dumps(out))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
