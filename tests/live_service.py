"""Helpers for tests that need a real HTTP server on a loopback port.

``running_service`` starts the actual app (``create_app()`` under uvicorn)
in a subprocess; ``scripted_server`` is a tiny stdlib server answering from a
script of canned responses, for behaviour the real app can't be made to show
on demand (a 503 twice, then success).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVICE_KEY = "integration-key"  # what the `keyed_url` fixture (conftest.py) wants


@contextlib.contextmanager
def running_service(api_key: str | None = None, workers: int = 1, **env: str) -> Iterator[str]:
    """Base URL of the real service, started for the duration of the block."""
    port = free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("REWARD_SERVICE_") and k != "REDIS_URL"}
    # These tests send math and mcq items only, never code: the no-isolation backend
    # keeps them independent of whether a code sandbox works on this machine.
    child_env.update({"REWARD_SERVICE_SANDBOX_BACKEND": "unsafe", "REWARD_SERVICE_SANDBOX_REQUIRED": "false",
                      "REWARD_SERVICE_WORKERS": str(workers), "PYTHONPATH": str(REPO)}, **env)
    if api_key:
        child_env["REWARD_SERVICE_API_KEY"] = api_key
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "reward_service.api:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=REPO, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise RuntimeError(f"service exited with {proc.returncode}:\n{out[-4000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("service did not become healthy within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


class ScriptedServer:
    """Answers requests with ``(status, json_body)`` pairs from ``script``, then repeats the last."""

    def __init__(self, script: list[tuple[int, object]]) -> None:
        self.script = list(script)
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append({
                    "method": self.command, "path": self.path, "headers": dict(self.headers),
                    "json": json.loads(body) if body else None,
                })
                status, payload = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                if callable(payload):
                    payload = payload(server.requests[-1]["json"])
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def echo_results(body: dict) -> dict:
    """A /score answer with one ok result per item, reward 1.0."""
    results = [{"id": it.get("id"), "task": it["task"], "reward": 1.0, "status": "ok", "detail": {}, "elapsed_ms": 1.0}
               for it in body["items"]]
    summary = {"count": len(results), "mean_reward": 1.0, "by_status": {"ok": len(results)}, "elapsed_ms": 1.0,
               "unique_items": len(results)}
    return {"results": results, "summary": summary}
