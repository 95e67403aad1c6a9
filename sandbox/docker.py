"""Hardened, pooled Docker containers as the sandbox.

Each warm container's PID 1 is the session supervisor
(``sandbox/inside/supervisor.py``, ``stream`` transport), running as the
sandbox user; the host keeps the container's stdin/stdout attached and each
run of a session is one request/answer on that stream (no container start,
not even an exec, on the hot path). The supervisor runs each program in its
own session under rlimits and a wall clock (a python program as ``__main__``
of a fork of itself, unless ``REWARD_SERVICE_DOCKER_FORK=0``), kills every
leftover process and wipes the scratch areas after each run, and the work
area too when the scored item's session ends. A container that is not
provably clean afterwards (leftovers, OOM, pid limit, wall clock blown from
outside) is destroyed and replaced in the background.

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
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Mapping

import docker
from docker.types import Ulimit

from sandbox import verdict
from sandbox.base import Sandbox, Session
from sandbox.docker_pool import WarmPool
from sandbox.run_spec import NOFILE, run_spec
from sandbox.types import Limits, PairResult, Program, RunResult, RunStatus, SandboxUnavailable

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
SUPERVISOR_SOURCE = (Path(__file__).parent / "inside" / "supervisor.py").read_text()
# The runner (PID 1, ~10 MB) and the program's stdin file on the tmpfs live in
# the same memory cgroup as the program.
MEMORY_OVERHEAD_MB = 64
RUNNER_ENV = {"PYTHONMALLOC": "malloc", "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0:glibc.malloc.perturb=165"}
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
    ready: bool = False  # the supervisor's greeting has been read


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


def _cgroup_for(limits: Limits, judge: bool = False) -> tuple[int, int]:
    """(memory MB, pids) for a container running one run under ``limits``: the program's budget plus
    the supervisor (PID 1). The same for a judge beside a candidate (a pair's judge takes one of the
    candidate's processes and lives in the overhead's memory), so alternating runs of one item never
    cost an engine call to retune the cgroup."""
    return limits.memory_mb + MEMORY_OVERHEAD_MB, limits.max_processes + 1


def _valid_name(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\x00" not in name


class DockerSandbox(Sandbox):
    name = "docker"

    def __init__(self, config: DockerConfig | None = None) -> None:
        self.config = config or DockerConfig.from_env()
        self.fork_python = self.config.fork_python
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
            command=["python3", "-s", "-S", "-P", "-c", SUPERVISOR_SOURCE, "stream"],
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
            # /tmp too: toolchains write there (Go's build cache, rustc's and javac's temp files).
            tmpfs={"/work": f"rw,exec,nosuid,nodev,size={c.tmpfs_mb}m,mode=1777",
                   "/tmp": f"rw,nosuid,nodev,size={c.tmpfs_mb}m,mode=1777"},
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

    # -- sessions -------------------------------------------------------

    def session(self, limits: Limits | None = None, wait_s: float | None = None) -> Session:
        pool = self._get_pool()
        last_error = ""
        for _ in range(2):  # one retry on engine trouble (e.g. a container that died meanwhile)
            warm = pool.acquire(timeout=max(5.0, wait_s or (limits or Limits()).wall_time_s))
            try:
                self._fit_cgroup(warm, limits or Limits())
                session = DockerSession(self, pool, warm)
                if not warm.ready:
                    if session._recv(60.0).get("event") != "ready":
                        raise RuntimeError("the sandbox supervisor did not greet")
                    warm.ready = True
                return session
            except Exception as e:  # noqa: BLE001
                pool.discard(warm)
                last_error = f"{type(e).__name__}: {e}"
        raise RuntimeError(f"docker engine error: {last_error}")

    def _fit_cgroup(self, warm: _Warm, limits: Limits, judge: bool = False) -> None:
        """Session-wide memory and process limits live in the container's cgroup; retune only on change."""
        want = _cgroup_for(limits, judge)
        if warm.cgroup == want:
            return
        memory = want[0] << 20
        api = self._docker().api
        # The SDK's update_container has no pids parameter; the engine's endpoint does.
        res = api._post_json(api._url("/containers/{0}/update", warm.id),
                             data={"Memory": memory, "MemorySwap": memory, "PidsLimit": want[1]})
        api._raise_for_status(res)
        warm.cgroup = want


    def _runner_died(self, warm: _Warm) -> bool:
        """PID 1 is gone, so is the container. Programs can't signal it; the OOM killer can."""
        try:
            return bool(self._docker().api.inspect_container(warm.id)["State"].get("OOMKilled"))
        except Exception:  # noqa: BLE001
            return False


class _Gone(RuntimeError):
    pass


class DockerSession(Session):
    """One scored item's container: requests on its attach stream; wiped and given back on close."""

    backend = "docker"

    def __init__(self, box: DockerSandbox, pool: WarmPool[_Warm], warm: _Warm) -> None:
        self.box, self.pool, self.warm = box, pool, warm
        self.dead = self.dirty = False
        self._closed = False
        self._failure: Exception | None = None  # what broke the session; every later run reports it
        self.wiped: bool | None = None  # the last run carried the closing wipe: was it clean
        self._env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/work", "TMPDIR": "/work", "LANG": "C.UTF-8"}

    # -- transport --------------------------------------------------------

    def _send(self, msg: dict) -> None:
        if self.dead:
            raise _Gone("the sandbox container is gone")
        data = json.dumps(msg).encode()
        try:
            self.warm.sock.settimeout(60)
            self.warm.sock.sendall(struct.pack(">I", len(data)) + data)
        except OSError as e:
            self.dead = True
            raise _Gone(f"the sandbox container is gone: {e}") from e

    def _recv(self, timeout_s: float) -> dict:
        end = time.monotonic() + timeout_s
        answer = _answer(self.warm)
        while answer is None:
            remaining = end - time.monotonic()
            try:
                if remaining <= 0:
                    raise socket.timeout
                self.warm.sock.settimeout(remaining)
                chunk = self.warm.sock.recv(1 << 16)
            except socket.timeout:
                self.dead = True  # the supervisor missed its own clock: nothing there can be trusted
                raise _Gone("the sandbox supervisor stopped answering") from None
            except OSError as e:
                self.dead = True
                raise _Gone(f"the sandbox container is gone: {e}") from e
            if not chunk:
                self.dead = True
                raise _Gone("oom" if self.box._runner_died(self.warm) else "the sandbox supervisor exited")
            self.warm.frames += chunk
            _take_frames(self.warm)
            answer = _answer(self.warm)
        msg = json.loads(answer)
        if "error" in msg:
            self.dirty = True
        return msg

    # -- Session ----------------------------------------------------------

    def put(self, files) -> None:
        bad = [n for n in files if not _valid_name(n)]
        if bad:
            raise ValueError(f"invalid file names: {bad}")
        try:
            self._send({"op": "put", "files": {n: base64.b64encode(d).decode() for n, d in files.items()}})
            msg = self._recv(GRACE_S + 5)
        except _Gone as e:
            self._failure = e
            return
        if "error" in msg:
            self._failure = _Gone(f"could not place files: {msg['error']}")

    def _spec(self, program: Program, limits: Limits, extra_procs: int = 0, judge: bool = False) -> dict:
        return run_spec(replace(program, env={**self._env, **program.env}), limits, extra_procs=extra_procs,
                        source_target=5 if judge else None)

    def exec(self, program: Program, *, stdin: bytes = b"", limits: Limits,
             side_input: bytes | None = None, side_output: bool = False, last: bool = False) -> RunResult:
        targets = [0, 1, 2]
        feeds = {"0": base64.b64encode(stdin).decode()}
        if side_input is not None:
            targets.append(3)
            feeds["3"] = base64.b64encode(side_input).decode()
        if side_output:
            targets.append(4)
        req = dict(self._spec(program, limits), op="exec", fd_targets=targets, feeds_b64=feeds,
                   wall_time_s=limits.wall_time_s, output_bytes=limits.output_bytes, then_reset=last)
        if self._failure is not None:
            return self._gone(self._failure, limits)
        try:
            self._fit(limits)
            self._send(req)
            msg = self._recv(limits.wall_time_s + GRACE_S)
        except _Gone as e:
            return self._gone(e, limits)
        out = {k: base64.b64decode(v) for k, v in msg.get("outputs", {}).items()}
        if last:
            self.wiped = bool(msg.get("clean")) and "error" not in msg
        return self._result(msg.get("main", {}), msg, limits, out.get("1", b""), out.get("2", b""),
                            side_output=out.get("4", b""))

    def pair(self, judge: Program, candidate: Program, *, judge_input: bytes, limits: Limits,
             judge_limits: Limits, last: bool = False) -> PairResult:
        req = {"op": "pair", "wall_time_s": limits.wall_time_s, "output_bytes": limits.output_bytes,
               "then_reset": last,
               "judge": self._spec(replace(judge, python_source=None, cwd=judge.cwd or "/"),
                                   judge_limits, extra_procs=limits.max_processes + 1, judge=True),
               "candidate": self._spec(candidate, limits, extra_procs=2),
               "judge_fd_targets": [0, 1, 2, 5], "candidate_fd_targets": [0, 1, 2],
               "judge_feeds_b64": {"5": base64.b64encode(judge.python_source or b"").decode()}}
        if self._failure is not None:
            r = self._gone(self._failure, limits)
            return PairResult(r, r)
        try:
            self._fit(limits, judge=True)
            self._send(req)
            # The judge's input goes in a frame of its own, after the candidate has been forked.
            self._send({"spec_b64": base64.b64encode(judge_input).decode()})
            msg = self._recv(limits.wall_time_s + GRACE_S)
        except _Gone as e:
            r = self._gone(e, limits)
            return PairResult(r, r)
        out = {k: base64.b64decode(v) for k, v in msg.get("outputs", {}).items()}
        if last:
            self.wiped = bool(msg.get("clean")) and "error" not in msg
        cand = self._result(msg.get("candidate", {}), msg, limits, out.get("candidate:1", b""),
                            out.get("candidate:2", b""))
        jr = self._result(msg.get("judge", {}), dict(msg, over_output=False, oom_killed=False), judge_limits, b"",
                          out.get("judge:2", b""))
        return PairResult(jr, cand, out.get("judge:1", b""))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        clean = False
        if self.wiped is not None:
            clean = self.wiped and not self.dirty and not self.dead
        elif not self.dead:
            try:
                self._send({"op": "reset"})
                clean = bool(self._recv(30.0).get("clean")) and not self.dirty
            except _Gone:
                clean = False
        if clean:
            self.pool.release(self.warm)
        else:
            self.pool.discard(self.warm)

    # -- internals --------------------------------------------------------

    def _fit(self, limits: Limits, judge: bool = False) -> None:
        try:
            self.box._fit_cgroup(self.warm, limits, judge)
        except Exception as e:  # noqa: BLE001 - the engine refused (e.g. usage above the new limit)
            log.debug("docker sandbox: cgroup not retuned: %s", e)

    def _gone(self, e: Exception, limits: Limits) -> RunResult:
        extra = {"container": self.warm.id[:12]}
        if str(e) == "oom":
            return RunResult(RunStatus.memory_limit, extra=extra,
                             detail="the session was killed by the out-of-memory killer")
        if "stopped answering" in str(e):
            return RunResult(RunStatus.timeout, extra=extra,
                             detail=f"wall time exceeded; stopped from outside after {limits.wall_time_s + GRACE_S:.1f}s")
        return RunResult(RunStatus.sandbox_error, extra=extra, detail=f"docker sandbox: {e}")

    def _result(self, proc: dict, msg: dict, limits: Limits, stdout: bytes, stderr: bytes, **kw) -> RunResult:
        extra = {"container": self.warm.id[:12]}
        if "error" in msg:
            return RunResult(RunStatus.sandbox_error, detail=f"supervisor: {msg['error']}"[:500], extra=extra)
        if not msg.get("clean") or msg.get("oom_killed") or msg.get("pid_limit_hit"):
            self.dirty = True
        facts = verdict.Facts(verdict.exit_code(proc.get("wait_status")), cpu_s=proc.get("cpu_s") or 0.0,
                              wall_s=msg.get("wall_s", 0.0), peak_mb=(proc.get("maxrss_kb") or 0) / 1024.0,
                              timed_out=bool(msg.get("timed_out")), over_output=bool(msg.get("over_output")),
                              oom_killed=bool(msg.get("oom_killed")), stderr=stderr)
        r = verdict.result(facts, limits, stdout, stderr, extra=extra, **kw)
        if msg.get("pid_limit_hit"):
            r.detail = (r.detail + "; " if r.detail else "") + "hit the container's process limit"
        return r
