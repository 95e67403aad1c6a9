"""Hardened, pooled Docker containers as the sandbox.

Each warm container's PID 1 is ``sandbox/_docker_runner.py``, running as the
sandbox user; the host keeps the container's stdin/stdout attached and a run
is one request/answer on that stream (no container start, not even an exec,
on the hot path). The runner runs the program in its own session under
rlimits and a wall clock (a python program as ``__main__`` of a fork of the
warm runner itself, unless ``REWARD_SERVICE_DOCKER_FORK=0``), kills every leftover process and wipes the work
areas before it answers. A container that is not provably clean afterwards
(leftovers, OOM, pid limit, wall clock blown from outside) is destroyed and
replaced in the background.

Containers: no network, read-only root, a size-limited exec-able tmpfs at
/work, memory/swap, pid and CPU limits, all capabilities dropped,
no-new-privileges, a non-root uid, optional runtime (gVisor ``runsc``). The
host's Docker socket is never mounted.
"""
from __future__ import annotations

import atexit
import base64
import json
import logging
import os
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Mapping

import docker
from docker.types import Ulimit

from sandbox.base import LANGUAGES, Sandbox
from sandbox.docker_pool import WarmPool
from sandbox.types import Limits, RunResult, RunStatus, SandboxUnavailable

log = logging.getLogger(__name__)

IMAGE_ENV = "REWARD_SERVICE_SANDBOX_IMAGE"
RUNTIME_ENV = "REWARD_SERVICE_DOCKER_RUNTIME"
POOL_SIZE_ENV = "REWARD_SERVICE_DOCKER_POOL_SIZE"
CPUS_ENV = "REWARD_SERVICE_DOCKER_CPUS"
TMPFS_MB_ENV = "REWARD_SERVICE_DOCKER_TMPFS_MB"
FORK_ENV = "REWARD_SERVICE_DOCKER_FORK"

DEFAULT_IMAGE = "reward-service-sandbox:latest"
BUILD_HINT = "build it with deploy/sandbox/build-image.sh"
SANDBOX_USER = "10001:10001"  # fixed in deploy/sandbox/Dockerfile
LABEL = "reward-service.sandbox"
OWNER_LABEL = "reward-service.sandbox-owner"
RUNNER_SOURCE = (Path(__file__).with_name("_docker_runner.py")).read_text()
# The runner (PID 1, ~10 MB) and the program's stdin file on the tmpfs live in
# the same memory cgroup as the program.
MEMORY_OVERHEAD_MB = 32
RUNNER_ENV = {"PYTHONMALLOC": "malloc", "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0:glibc.malloc.perturb=165"}
COMPILE_TIME_S = 30.0
NOFILE = 256
GRACE_S = 5.0  # runner start + cleanup, on top of the limits, before the host steps in

def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw.strip() else default


@dataclass(frozen=True)
class DockerConfig:
    image: str = DEFAULT_IMAGE
    runtime: str | None = None
    pool_size: int = 2
    cpus: float = 1.0
    tmpfs_mb: int = 128
    # Python runs fork the warm supervisor and run as its __main__ (~3x cheaper than
    # exec'ing a fresh python3); off = the exec path.
    fork_python: bool = True

    @classmethod
    def from_env(cls) -> "DockerConfig":
        return cls(
            image=os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE,
            runtime=os.environ.get(RUNTIME_ENV) or None,
            pool_size=max(1, _env_int(POOL_SIZE_ENV, 2)),
            cpus=_env_float(CPUS_ENV, 1.0),
            tmpfs_mb=_env_int(TMPFS_MB_ENV, 128),
            fork_python=os.environ.get(FORK_ENV, "1").strip().lower() not in ("0", "false", "no", "off"),
        )


@dataclass
class _Warm:
    id: str
    sock: socket.socket  # attached to the runner's stdin/stdout/stderr for the container's life
    cgroup: tuple[int, int]  # (memory MB, pids) the container's cgroup is set to now
    frames: bytearray = field(default_factory=bytearray)  # undecoded attach-stream bytes
    out: bytearray = field(default_factory=bytearray)  # runner stdout not yet consumed
    err: bytearray = field(default_factory=bytearray)  # runner stderr, last few KB


def _take_frames(warm: _Warm) -> None:
    """Move complete frames of Docker's multiplexed attach stream into out/err."""
    buf, i = warm.frames, 0
    while i + 8 <= len(buf):
        kind, size = struct.unpack(">BxxxL", buf[i:i + 8])
        if i + 8 + size > len(buf):
            break
        chunk = buf[i + 8:i + 8 + size]
        if kind == 2:
            warm.err += chunk
            del warm.err[:-4096]
        else:
            warm.out += chunk
        i += 8 + size
    del buf[:i]


def _answer(warm: _Warm) -> bytes | None:
    """The runner's next complete answer, if it has fully arrived."""
    if len(warm.out) < 4:
        return None
    n = struct.unpack(">I", warm.out[:4])[0]
    if len(warm.out) < 4 + n:
        return None
    answer = bytes(warm.out[4:4 + n])
    del warm.out[:4 + n]
    return answer


def _cgroup_for(limits: Limits) -> tuple[int, int]:
    """(memory MB, pids) for a container running one session under ``limits``: the
    program's budget plus the runner (PID 1)."""
    return limits.memory_mb + MEMORY_OVERHEAD_MB, limits.max_processes + 1


def _valid_name(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\x00" not in name


class DockerSandbox(Sandbox):
    name = "docker"

    def __init__(self, config: DockerConfig | None = None) -> None:
        self.config = config or DockerConfig.from_env()
        self._lock = threading.Lock()
        self._client = None
        self._pool: WarmPool[_Warm] | None = None
        self._pid = os.getpid()
        atexit.register(self.close)

    # -- engine ---------------------------------------------------------

    def _docker(self):
        if self._client is None:
            try:
                client = docker.from_env(max_pool_size=2 * self.config.pool_size + 4)
                client.ping()
            except Exception as e:  # noqa: BLE001 - any failure means: no engine
                raise SandboxUnavailable(
                    f"docker sandbox: no Docker engine reachable ({e}); start one "
                    "(deploy/start-dockerd.sh) or set DOCKER_HOST") from e
            self._client = client
        return self._client

    def check(self) -> None:
        client = self._docker()
        try:
            client.images.get(self.config.image)
        except docker.errors.ImageNotFound:
            raise SandboxUnavailable(
                f"docker sandbox: image {self.config.image!r} is missing; {BUILD_HINT}") from None
        except docker.errors.APIError as e:
            raise SandboxUnavailable(f"docker sandbox: engine error while looking up the image: {e}") from e
        if self.config.runtime:
            runtimes = client.info().get("Runtimes", {})
            if self.config.runtime not in runtimes:
                raise SandboxUnavailable(
                    f"docker sandbox: runtime {self.config.runtime!r} ({RUNTIME_ENV}) is not registered "
                    f"with the engine (has: {', '.join(sorted(runtimes))})")

    def _owner(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    def _create(self) -> _Warm:
        c = self.config
        memory_mb, pids = _cgroup_for(Limits())
        client = self._docker()
        container = client.containers.create(
            c.image,
            command=["python3", "-s", "-S", "-P", "-c", RUNNER_SOURCE],
            stdin_open=True,  # the request channel; stays open across attaches
            user=SANDBOX_USER,
            working_dir="/work",
            # Python runs are forks of the runner, so its freed memory must not hold earlier
            # runs' data: every allocation through glibc malloc, no tcache, freed chunks
            # overwritten (the runner's only environment: -s -S -P, not -I, so Python reads it).
            environment=RUNNER_ENV,
            hostname="sandbox",
            network_mode="none",
            read_only=True,
            # exec: compiled C++ binaries must run from here (tmpfs defaults to noexec).
            tmpfs={"/work": f"rw,exec,nosuid,nodev,size={c.tmpfs_mb}m,mode=1777"},
            shm_size="16m",
            ipc_mode="private",
            mem_limit=f"{memory_mb}m",
            memswap_limit=f"{memory_mb}m",  # equal: no swap
            pids_limit=pids,
            nano_cpus=int(c.cpus * 1e9),
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            ulimits=[Ulimit(name="nofile", soft=1024, hard=1024),
                     Ulimit(name="fsize", soft=c.tmpfs_mb << 20, hard=c.tmpfs_mb << 20),
                     Ulimit(name="core", soft=0, hard=0)],
            # Under memory pressure sandboxes die first, and within one the program (which
            # the runner sets to 1000) before the runner.
            oom_score_adj=500,
            runtime=c.runtime,
            log_config={"type": "none"},
            labels={LABEL: "1", OWNER_LABEL: self._owner()},
        )
        try:
            # Attach before start: nothing the runner says can be missed.
            sock = client.api.attach_socket(container.id, params={"stdin": 1, "stdout": 1, "stderr": 1,
                                                                  "stream": 1})
            container.start()
        except Exception:
            container.remove(force=True)
            raise
        return _Warm(container.id, getattr(sock, "_sock", sock), (memory_mb, pids))

    def _destroy(self, warm: _Warm) -> None:
        try:
            warm.sock.close()
        finally:
            self._docker().api.remove_container(warm.id, force=True)

    def _remove_orphans(self) -> None:
        """Containers left by dead processes on this host (hard kills skip close())."""
        host = socket.gethostname()
        for container in self._docker().containers.list(all=True, filters={"label": LABEL}):
            owner_host, _, pid = container.labels.get(OWNER_LABEL, "").partition(":")
            if owner_host != host or not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                os.kill(int(pid), 0)
                continue  # its owner still runs
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            try:
                container.remove(force=True)
            except Exception:  # noqa: BLE001
                pass

    def _get_pool(self) -> WarmPool[_Warm]:
        with self._lock:
            if self._pool is not None and self._pid != os.getpid():
                # A forked child must not share its parent's containers.
                self._pool, self._client, self._pid = None, None, os.getpid()
            if self._pool is None:
                self.check()
                self._remove_orphans()
                self._pool = WarmPool(self.config.pool_size, self._create, self._destroy, key=lambda w: w.id)
                self._pool.warm_up()
            return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None or self._pid != os.getpid():
            return
        for warm in pool.close():
            try:
                self._destroy(warm)
            except Exception:  # noqa: BLE001
                pass

    # -- one run --------------------------------------------------------

    def run(self, language: str, source: str, *, stdin: bytes = b"", limits: Limits | None = None,
            files: Mapping[str, bytes] | None = None, argv: list[str] | None = None) -> RunResult:
        limits = limits or Limits()
        if language not in LANGUAGES:
            return RunResult(RunStatus.sandbox_error, detail=f"unsupported language {language!r}")
        bad = [n for n in (files or {}) if not _valid_name(n)]
        if bad:
            return RunResult(RunStatus.sandbox_error, detail=f"invalid file names: {bad}")
        request = json.dumps({
            "id": uuid.uuid4().hex[:12],
            "language": language,
            "fork": language == "python" and self.config.fork_python,
            "source": source,
            "stdin": base64.b64encode(stdin).decode(),
            "files": {n: base64.b64encode(d).decode() for n, d in (files or {}).items()},
            "argv": list(argv or []),
            "limits": {"wall_time_s": limits.wall_time_s, "cpu_time_s": limits.cpu_time_s,
                       "output_bytes": limits.output_bytes, "file_size_mb": limits.file_size_mb,
                       "memory_mb": limits.memory_mb,
                       "compile_s": max(COMPILE_TIME_S, limits.wall_time_s), "nofile": NOFILE},
        }).encode()
        deadline_s = limits.wall_time_s + GRACE_S
        if language == "cpp":
            deadline_s += max(COMPILE_TIME_S, limits.wall_time_s)

        pool = self._get_pool()
        last_error = ""
        for _ in range(2):  # one retry on engine trouble (e.g. a container that died meanwhile)
            try:
                warm = pool.acquire()
            except TimeoutError as e:
                return RunResult(RunStatus.sandbox_error, detail=str(e))
            except Exception as e:  # noqa: BLE001
                return RunResult(RunStatus.sandbox_error, detail=f"could not start a sandbox container: {e}")
            try:
                self._fit_cgroup(warm, limits)
                result, reusable = self._call(warm, request, deadline_s)
            except Exception as e:  # noqa: BLE001 - engine/transport failure, not the program's doing
                pool.discard(warm)
                last_error = f"{type(e).__name__}: {e}"
                log.warning("docker sandbox run failed on %s: %s", warm.id[:12], last_error)
                continue
            if reusable:
                pool.release(warm)
            else:
                pool.discard(warm)
            return result
        return RunResult(RunStatus.sandbox_error, detail=f"docker engine error: {last_error}")

    def _fit_cgroup(self, warm: _Warm, limits: Limits) -> None:
        """Session-wide memory and process limits live in the container's cgroup; retune only on change."""
        want = _cgroup_for(limits)
        if warm.cgroup == want:
            return
        memory = want[0] << 20
        api = self._docker().api
        # The SDK's update_container has no pids parameter; the engine's endpoint does.
        res = api._post_json(api._url("/containers/{0}/update", warm.id),
                             data={"Memory": memory, "MemorySwap": memory, "PidsLimit": want[1]})
        api._raise_for_status(res)
        warm.cgroup = want

    def _call(self, warm: _Warm, request: bytes, deadline_s: float) -> tuple[RunResult, bool]:
        """One request/answer with the container's runner, bounded by the wall clock from outside."""
        t0 = time.monotonic()
        end = t0 + deadline_s
        raw = warm.sock
        raw.settimeout(deadline_s)
        raw.sendall(struct.pack(">I", len(request)) + request)
        answer = _answer(warm)
        while answer is None:
            remaining = end - time.monotonic()
            try:
                if remaining <= 0:
                    raise socket.timeout
                raw.settimeout(remaining)
                chunk = raw.recv(1 << 16)
            except socket.timeout:
                # The runner missed its own clock: nothing in that container can be trusted.
                return RunResult(RunStatus.timeout, wall_time_s=time.monotonic() - t0,
                                 extra={"container": warm.id[:12]},
                                 detail=f"wall time exceeded; stopped from outside after {deadline_s:.1f}s"), False
            if not chunk:
                return self._runner_died(warm, time.monotonic() - t0), False
            warm.frames += chunk
            _take_frames(warm)
            answer = _answer(warm)
        r = json.loads(answer)
        status = RunStatus(r["status"])
        reusable = bool(r.get("clean")) and not r.get("oom") and not r.get("pid_limit_hit") \
            and status != RunStatus.sandbox_error
        detail = r.get("detail", "")
        if r.get("pid_limit_hit"):
            detail = (detail + "; " if detail else "") + "hit the container's process limit"
        return RunResult(
            status=status,
            exit_code=r.get("exit_code"),
            stdout=base64.b64decode(r.get("stdout", "")),
            stderr=base64.b64decode(r.get("stderr", "")),
            wall_time_s=r.get("wall", time.monotonic() - t0),
            cpu_time_s=r.get("cpu", 0.0),
            peak_memory_mb=r.get("peak_mb", 0.0),
            detail=detail,
            compile_output=r.get("compile_output", ""),
            extra={"container": warm.id[:12]},
        ), reusable

    def _runner_died(self, warm: _Warm, wall: float) -> RunResult:
        """PID 1 is gone, so is the container. Programs can't signal it; the OOM killer can."""
        extra = {"container": warm.id[:12], "runner_stderr": warm.err.decode("utf-8", "replace")[-2000:]}
        try:
            oom = bool(self._docker().api.inspect_container(warm.id)["State"].get("OOMKilled"))
        except Exception:  # noqa: BLE001
            oom = False
        if oom:
            return RunResult(RunStatus.memory_limit, wall_time_s=wall, extra=extra,
                             detail="the session was killed by the out-of-memory killer")
        raise RuntimeError(f"sandbox runner exited unexpectedly: {extra['runner_stderr'][-300:]!r}")
