"""Hardened, pooled Docker containers as the sandbox.

Each run is one ``docker exec`` into a warm container (no container start on
the hot path): the exec runs ``sandbox/_docker_runner.py`` as the sandbox user,
which receives the whole session as JSON on stdin, runs the program in its own
session under rlimits and a wall clock, kills every leftover process and wipes
the work areas before it answers. A container that is not provably clean
afterwards (leftovers, OOM, pid limit, runner killed, wall clock blown) is
destroyed and replaced in the background.

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
import queue
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping

import docker
from docker.types import Ulimit

from sandbox.base import LANGUAGES, Sandbox
from sandbox.types import Limits, RunResult, RunStatus, SandboxUnavailable

log = logging.getLogger(__name__)

IMAGE_ENV = "REWARD_SERVICE_SANDBOX_IMAGE"
RUNTIME_ENV = "REWARD_SERVICE_DOCKER_RUNTIME"
POOL_SIZE_ENV = "REWARD_SERVICE_DOCKER_POOL_SIZE"
CPUS_ENV = "REWARD_SERVICE_DOCKER_CPUS"
TMPFS_MB_ENV = "REWARD_SERVICE_DOCKER_TMPFS_MB"

DEFAULT_IMAGE = "reward-service-sandbox:latest"
BUILD_HINT = "build it with deploy/sandbox/build-image.sh"
SANDBOX_USER = "10001:10001"  # fixed in deploy/sandbox/Dockerfile
LABEL = "reward-service.sandbox"
OWNER_LABEL = "reward-service.sandbox-owner"
RUNNER_SOURCE = (Path(__file__).with_name("_docker_runner.py")).read_text()
# The runner's own Python, the init process and the shm/tmpfs bookkeeping
# live in the same memory cgroup as the program.
MEMORY_OVERHEAD_MB = 32
COMPILE_TIME_S = 30.0
NOFILE = 256
GRACE_S = 5.0  # runner start + cleanup, on top of the limits, before the host steps in
ACQUIRE_TIMEOUT_S = 120.0

# PID 1 of every warm container: reaps orphans (sleep would leave zombies
# that eat the pid limit) and, being init, is immune to kill(-1) from inside.
INIT_SOURCE = """
import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
while True:
    signal.sigwaitinfo({signal.SIGCHLD})
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
"""


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

    @classmethod
    def from_env(cls) -> "DockerConfig":
        return cls(
            image=os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE,
            runtime=os.environ.get(RUNTIME_ENV) or None,
            pool_size=max(1, _env_int(POOL_SIZE_ENV, 2)),
            cpus=_env_float(CPUS_ENV, 1.0),
            tmpfs_mb=_env_int(TMPFS_MB_ENV, 128),
        )


@dataclass
class _Warm:
    id: str
    cgroup: tuple[int, int]  # (memory MB, pids) the container's cgroup is set to now


class _Pool:
    """At most ``size`` containers; idle ones wait in a queue, broken ones are replaced in the background."""

    def __init__(self, size: int, create: Callable[[], _Warm], destroy: Callable[[_Warm], None]) -> None:
        self._size = size
        self._create = create
        self._destroy = destroy
        self._idle: queue.SimpleQueue[_Warm] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._count = 0  # existing or starting
        self._all: dict[str, _Warm] = {}
        self._closed = False

    def warm_up(self) -> None:
        while self._reserve():
            threading.Thread(target=self._start_into_idle, daemon=True, name="docker-sandbox-warm").start()

    def acquire(self, timeout: float = ACQUIRE_TIMEOUT_S) -> _Warm:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                pass
            if self._reserve():
                try:
                    warm = self._create()
                except BaseException:
                    self._unreserve()
                    raise
                if self._track(warm):
                    return warm
                raise TimeoutError("the sandbox pool was closed")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no sandbox container became free within {timeout:.0f}s")
            try:  # short waits: a failed background replacement frees a slot to grow into
                return self._idle.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue

    def release(self, warm: _Warm) -> None:
        if self._closed:
            self.discard(warm, replace=False)
        else:
            self._idle.put(warm)

    def discard(self, warm: _Warm, replace: bool = True) -> None:
        with self._lock:
            self._all.pop(warm.id, None)
            self._count -= 1
        threading.Thread(target=self._destroy_quietly, args=(warm,), daemon=True, name="docker-sandbox-rm").start()
        if replace and not self._closed:
            self.warm_up()

    def close(self) -> list[_Warm]:
        with self._lock:
            self._closed = True
            everything = list(self._all.values())
            self._all.clear()
            self._count = 0
        return everything

    def _reserve(self) -> bool:
        with self._lock:
            if self._closed or self._count >= self._size:
                return False
            self._count += 1
            return True

    def _unreserve(self) -> None:
        with self._lock:
            self._count -= 1

    def _track(self, warm: _Warm) -> bool:
        """Adopt a new container; one finished after close() is removed instead of leaking."""
        with self._lock:
            if not self._closed:
                self._all[warm.id] = warm
                return True
        self._destroy_quietly(warm)
        return False

    def _start_into_idle(self) -> None:
        try:
            warm = self._create()
        except Exception:  # noqa: BLE001 - the next acquire grows into the freed slot
            log.exception("could not start a warm sandbox container")
            self._unreserve()
            return
        if self._track(warm):
            self._idle.put(warm)

    def _destroy_quietly(self, warm: _Warm) -> None:
        try:
            self._destroy(warm)
        except Exception:  # noqa: BLE001
            log.warning("could not remove sandbox container %s", warm.id[:12], exc_info=True)


def _demux(data: bytes) -> tuple[bytes, bytes]:
    """Split Docker's multiplexed attach stream into (stdout, stderr)."""
    out, err = bytearray(), bytearray()
    i = 0
    while i + 8 <= len(data):
        kind, size = struct.unpack(">BxxxL", data[i:i + 8])
        chunk = data[i + 8:i + 8 + size]
        (err if kind == 2 else out).extend(chunk)
        i += 8 + size
    return bytes(out), bytes(err)


def _cgroup_for(limits: Limits) -> tuple[int, int]:
    """(memory MB, pids) for a container running one session under ``limits``: the
    program's budget plus what init and the runner use."""
    return limits.memory_mb + MEMORY_OVERHEAD_MB, limits.max_processes + 2


def _valid_name(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\x00" not in name


class DockerSandbox(Sandbox):
    name = "docker"

    def __init__(self, config: DockerConfig | None = None) -> None:
        self.config = config or DockerConfig.from_env()
        self._lock = threading.Lock()
        self._client = None
        self._pool: _Pool | None = None
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
        container = self._docker().containers.run(
            c.image,
            command=["python3", "-I", "-S", "-c", INIT_SOURCE],
            detach=True,
            user=SANDBOX_USER,
            working_dir="/work",
            environment={},
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
            oom_score_adj=1000,  # under host memory pressure, sandboxes die first
            runtime=c.runtime,
            log_config={"type": "none"},
            labels={LABEL: "1", OWNER_LABEL: self._owner()},
        )
        return _Warm(container.id, (memory_mb, pids))

    def _destroy(self, warm: _Warm) -> None:
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

    def _get_pool(self) -> _Pool:
        with self._lock:
            if self._pool is not None and self._pid != os.getpid():
                # A forked child must not share its parent's containers.
                self._pool, self._client, self._pid = None, None, os.getpid()
            if self._pool is None:
                self.check()
                self._remove_orphans()
                self._pool = _Pool(self.config.pool_size, self._create, self._destroy)
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
                result, reusable = self._exec(warm, request, deadline_s)
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

    def _saw_oom(self, warm: _Warm) -> bool:
        """Whether the container's cgroup ever OOM-killed. Pooled containers have not:
        the first OOM sends a container to the bin, so any count means this run."""
        api = self._docker().api
        try:
            exec_id = api.exec_create(warm.id, ["cat", "/sys/fs/cgroup/memory/memory.oom_control",
                                                "/sys/fs/cgroup/memory.events"], user=SANDBOX_USER)["Id"]
            text = api.exec_start(exec_id).decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - no answer means no evidence
            return False
        return any(line.split()[:1] == ["oom_kill"] and line.split()[1] != "0" for line in text.splitlines())

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

    def _exec(self, warm: _Warm, request: bytes, deadline_s: float) -> tuple[RunResult, bool]:
        api = self._docker().api
        t0 = time.monotonic()
        exec_id = api.exec_create(warm.id, ["python3", "-I", "-S", "-c", RUNNER_SOURCE], stdin=True,
                                  stdout=True, stderr=True, user=SANDBOX_USER, workdir="/work")["Id"]
        sock = api.exec_start(exec_id, socket=True)
        raw = getattr(sock, "_sock", sock)
        data = bytearray()
        timed_out = False
        try:
            raw.settimeout(deadline_s)
            raw.sendall(request)
            raw.shutdown(socket.SHUT_WR)  # EOF on the runner's stdin
            end = t0 + deadline_s
            while True:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                raw.settimeout(remaining)
                try:
                    chunk = raw.recv(1 << 16)
                except socket.timeout:
                    timed_out = True
                    break
                if not chunk:
                    break
                data += chunk
        finally:
            sock.close()
            if raw is not sock:
                raw.close()
        wall = time.monotonic() - t0
        if timed_out:
            # The runner missed its own clock: nothing in that container can be trusted.
            return RunResult(RunStatus.timeout, wall_time_s=wall, extra={"container": warm.id[:12]},
                             detail=f"wall time exceeded; killed from outside after {deadline_s:.1f}s"), False
        out, err = _demux(bytes(data))
        try:
            r = json.loads(out)
        except ValueError:
            # The runner died: the OOM killer chose it, or the program killed it (kill(-1, SIGKILL)).
            extra = {"container": warm.id[:12], "runner_stderr": err[-2000:].decode("utf-8", "replace")}
            if self._saw_oom(warm):
                return RunResult(RunStatus.memory_limit, wall_time_s=wall, extra=extra,
                                 detail="the session was killed by the out-of-memory killer"), False
            return RunResult(RunStatus.runtime_error, wall_time_s=wall, extra=extra,
                             detail="the program killed the sandbox's supervisor before it could report"), False
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
            wall_time_s=r.get("wall", wall),
            cpu_time_s=r.get("cpu", 0.0),
            peak_memory_mb=r.get("peak_mb", 0.0),
            detail=detail,
            compile_output=r.get("compile_output", ""),
            extra={"container": warm.id[:12]},
        ), reusable
