"""A real redis-server and real `reward-service worker` processes, for distributed tests.

Import the fixtures into a test module (``from tests.redis_fixtures import redis_server, ...``).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

try:  # tests/ as a package or as a plain directory on sys.path
    from tests.live_service import free_port
except ImportError:
    from live_service import free_port

REPO = Path(__file__).resolve().parent.parent


class RedisServer:
    """redis-server on a free loopback port, no persistence; can be stopped and restarted on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self._dir = tempfile.mkdtemp(prefix="rs-redis-")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=5)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@contextlib.contextmanager
def redis_running() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with redis_running() as server:
        yield server


def service_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARD_SERVICE_") and k != "REDIS_URL"}
    env.update({"REDIS_URL": redis_url, "PYTHONPATH": str(REPO), "REWARD_SERVICE_LOG_LEVEL": "warning"}, **extra)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


class Workers:
    """`python -m reward_service.cli worker --count N` in its own session, stopped with SIGTERM."""

    def __init__(self, redis_server: RedisServer, count: int, queues: str = "", **env: str) -> None:
        self.redis_server, self.count = redis_server, count
        self.metrics_port = free_port()
        args = [sys.executable, "-m", "reward_service.cli", "worker", "--count", str(count),
                "--metrics-port", str(self.metrics_port)]
        if queues:
            args += ["--queues", queues]
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, cwd=REPO, env=service_env(redis_server.url, **env),
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self._name_prefix = f"{socket.gethostname()}:{self.proc.pid}:"

    def wait_ready(self, queue: str = "rs:math", timeout_s: float = 60) -> None:
        """Every worker process is up and blocked on its queues (registered with RQ)."""
        from rq import Worker

        deadline = time.monotonic() + timeout_s
        r = self.redis_server.client()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"workers exited ({self.proc.returncode}):\n{self.log()}")
            try:
                # only this supervisor's workers (named host:pid:slot:generation): another Workers on
                # the same Redis being idle says nothing about these, still starting their scoring child
                idle = [w for w in Worker.all(connection=r) if w.name.startswith(self._name_prefix)
                        and w.get_state() == "idle"]
                if len(idle) >= self.count:
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready after {timeout_s} s:\n{self.log()}")
            time.sleep(0.1)

    def log(self, tail: int | None = 4000) -> str:
        """The processes' output: its last ``tail`` characters (for assertion messages), or all of it."""
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        return text if tail is None else text[-tail:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything of ours left in the session


@contextlib.contextmanager
def workers_running(redis_server: RedisServer, count: int = 2, **kw) -> Iterator[Workers]:
    w = Workers(redis_server, count, **kw)
    try:
        w.wait_ready()
        yield w
    finally:
        w.stop()
