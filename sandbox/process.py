"""The default sandbox: Linux namespaces through bubblewrap, rlimits, per-slot uids and cgroups.

One run is one ``bwrap`` session: fresh user, pid, mount, ipc, uts and cgroup
namespaces and a network namespace with nothing up (reused per slot, see
``process_netns``); a seccomp deny-list; a read-only view of /usr (and the
/lib*, /bin symlinks or binds) plus ``/etc/ld.so.cache``; size-capped tmpfs
for the work dir, /tmp and /dev/shm; a scrubbed environment.
``bwrap`` runs under a dedicated host uid per slot when the service is root,
is pid 1 of the session (everything dies with it) and is killed from outside
at the wall-time limit.  Files enter through memfds (``bwrap --file``), so a
run never touches the host's disk.

``prlimit`` sets hard rlimits just before bwrap starts, and bwrap is forked
by a thread that has stepped into the slot's cgroups, so every process of the
session is born limited.  The session starts blocked (``--block-fd``) until
the cgroup limits are armed.  C++ is built inside the same session under its
own budget; the program is released only after the limits are lowered to its own.

Python runs by default go to a *warm* session of their slot instead
(``sandbox.process_warm``): the same bwrap setup, started once, whose PID 1
is a trusted supervisor that forks the already-started interpreter for each
run and wipes the session between runs; ``REWARD_SERVICE_SANDBOX_WARM=0``
gives every run its own cold session as described above.
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import logging
import math
import os
import resource
import selectors
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping

from sandbox.base import LANGUAGES, Sandbox
from sandbox import process_netns, process_seccomp
from sandbox.process_slots import Slot, SlotCgroup, SlotPool
from sandbox.process_warm import WarmPool
from sandbox.types import Limits, RunResult, RunStatus, SandboxUnavailable

log = logging.getLogger(__name__)

ENV_PREFIX = "REWARD_SERVICE_SANDBOX_"
WORK_DIR = "/box"
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": WORK_DIR}
MAX_NOFILE = 256
COMPILE_OUTPUT_BYTES = 64 * 1024
_READ_CHUNK = 1 << 16
_PR_SET_CHILD_SUBREAPER = 36
_MEMORY_PATTERNS = (b"MemoryError", b"std::bad_alloc", b"Cannot allocate memory", b"out of memory",
                    b"memory exhausted")


def _default_state_dir() -> str:
    """Where slot lock files live: shared by every worker process of one service."""
    if os.geteuid() == 0:
        return "/run/reward-service-sandbox"
    return os.path.join(tempfile.gettempdir(), f"reward-service-sandbox-{os.geteuid()}")


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name, default)


@dataclass(frozen=True)
class ProcessConfig:
    """Everything tunable, read from ``REWARD_SERVICE_SANDBOX_*`` environment variables."""

    bwrap: str = "/usr/bin/bwrap"
    python: str = "/usr/bin/python3"
    cxx: str = "g++"
    cxxflags: tuple[str, ...] = ("-O2", "-std=c++17")
    shell: str = "/bin/bash"
    prlimit: str = "/usr/bin/prlimit"
    uid_base: int = 3_000_000
    slots: int = 4096  # sanity maximum; slots are made on demand (sandbox.process_slots)
    state_dir: str = field(default_factory=lambda: _default_state_dir())
    cgroups: bool = True
    ro_binds: tuple[str, ...] = ()
    tmpfs_min_mb: int = 64
    site_packages: bool = False
    compile_memory_mb: int = 1024
    compile_time_s: float = 30.0
    reuse_netns: bool = True
    seccomp: bool = True
    warm: bool = True  # python runs in warm per-slot sessions (sandbox.process_warm)
    warm_runs: int = 500  # runs per warm session before it is replaced
    warm_sessions: int = 4  # idle warm sessions one service process keeps (each holds a slot)

    @classmethod
    def from_env(cls) -> "ProcessConfig":
        return cls(
            bwrap=_env("BWRAP", shutil.which("bwrap") or "/usr/bin/bwrap"),
            python=_env("PYTHON", "/usr/bin/python3"),
            prlimit=_env("PRLIMIT", shutil.which("prlimit") or "/usr/bin/prlimit"),
            cxx=_env("CXX", "g++"),
            cxxflags=tuple(shlex.split(_env("CXXFLAGS", "-O2 -std=c++17"))),
            uid_base=int(_env("UID_BASE", "3000000")),
            slots=int(_env("SLOTS", "4096")),
            state_dir=_env("STATE_DIR", _default_state_dir()),
            cgroups=_env("CGROUPS", "auto").lower() not in ("0", "off", "no", "false"),
            ro_binds=tuple(p for p in _env("RO_BINDS", "").split(":") if p),
            tmpfs_min_mb=int(_env("TMPFS_MB", "64")),
            site_packages=_env("SITE_PACKAGES", "hide").lower() in ("show", "1", "yes", "true"),
            compile_memory_mb=int(_env("COMPILE_MEMORY_MB", "1024")),
            compile_time_s=float(_env("COMPILE_TIME_S", "30")),
            reuse_netns=_env("REUSE_NETNS", "1").lower() not in ("0", "off", "no", "false"),
            seccomp=_env("SECCOMP", "1").lower() not in ("0", "off", "no", "false"),
            warm=_env("WARM", "1").lower() not in ("0", "off", "no", "false"),
            warm_runs=int(_env("WARM_RUNS", "500")),
            warm_sessions=int(_env("WARM_SESSIONS", "4")),
        )


def _root_view(extra: tuple[str, ...]) -> list[str]:
    """bwrap arguments for a read-only view of just what python3 and g++ need."""
    args: list[str] = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for path in ("/etc/ld.so.cache", "/etc/alternatives"):
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    for path in extra:
        args += ["--ro-bind", path, path]
    return args


def _hide_site_packages() -> list[str]:
    """Empty, read-only mounts over the system's site-packages: sandboxed Python gets the stdlib only.

    Also saves milliseconds per run: ``.pth`` hooks there (setuptools'
    distutils hack, distribution and host add-ons) are imported at every
    interpreter start.
    """
    dirs = sorted({*glob.glob("/usr/lib/python3*/dist-packages"), *glob.glob("/usr/lib/python3*/site-packages"),
                   *glob.glob("/usr/local/lib/python3*/dist-packages"),
                   *glob.glob("/usr/local/lib/python3*/site-packages")})
    args: list[str] = []
    for d in dirs:
        if os.path.isdir(d) and not os.path.islink(d):
            args += ["--size", "4096", "--tmpfs", d, "--remount-ro", d]
    return args


@dataclass
class _Compile:
    """The C++ build step's pipes: diagnostics, its exit status, and our go-ahead to run the binary."""

    output_r: int
    status_r: int
    go_w: int
    run_memory_bytes: int
    budget_s: float  # wall and CPU seconds for the build; the program's limits start when it does


@dataclass
class _Session:
    """What the supervision loop learned about one bwrap session."""

    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    compile_output: bytearray = field(default_factory=bytearray)
    compile_status: bytearray = field(default_factory=bytearray)
    killed_for: str | None = None  # "timeout" | "output_limit"
    exit_status: int = 0
    rusage: resource.struct_rusage | None = None
    inner_cpu_s: float | None = None
    wall_time_s: float = 0.0
    started_at: float | None = None  # C++: when the program (not the compiler) started
    t0: float = 0.0


class ProcessSandbox(Sandbox):
    name = "process"

    def __init__(self, config: ProcessConfig | None = None) -> None:
        self.config = config or ProcessConfig.from_env()
        self._pool: SlotPool | None = None
        self._subreaper = False
        self._owner_pid = 0
        self._pool_lock = threading.Lock()
        self._warm: WarmPool | None = WarmPool(self) if self.config.warm else None
        self._root_args = _root_view(self.config.ro_binds)
        if not self.config.site_packages:
            self._root_args += _hide_site_packages()

    # -- setup -------------------------------------------------------------------------

    @property
    def pool(self) -> SlotPool:
        with self._pool_lock:
            if self._owner_pid != os.getpid():
                # First use in this process (or we were forked: the subreaper flag is not inherited).
                self._subreaper = _become_subreaper()
                self._owner_pid = os.getpid()
            if self._pool is None:
                root = os.geteuid() == 0
                self._pool = SlotPool(self.config.state_dir, self.config.slots,
                                      self.config.uid_base if root else None,
                                      use_cgroups=self.config.cgroups and root,
                                      reuse_netns=self.config.reuse_netns and root)
                if not root:
                    log.warning("process sandbox: service is not root, so programs run under its own uid "
                                "(RLIMIT_NPROC still counts per user namespace) and without cgroups")
                elif self._pool.cgroup_error:
                    log.warning("process sandbox: no cgroups (%s); memory and process limits are rlimits only",
                                self._pool.cgroup_error)
            return self._pool

    def isolation(self) -> dict:
        """How runs are confined here, for logs and results."""
        pool = self.pool
        return {
            "uid": "per-slot" if pool.uid_base is not None else "service uid",
            "reaper": "subreaper" if self._subreaper else "host init (zombies may linger)",
            "seccomp": "deny-list" if self.config.seccomp and process_seccomp.filter_program() else "off",
            "netns": "per-slot, reused, loopback down" if pool.reuse_netns
            else f"fresh per run ({pool.netns_error or 'disabled or not root'})",
            "python_runs": "warm per-slot sessions (forked supervisor)" if self._warm else "cold (one bwrap each)",
            "cgroups": pool.cgroup_summary(),
        }

    def check(self) -> None:
        cfg = self.config
        if not os.access(cfg.bwrap, os.X_OK):
            raise SandboxUnavailable(
                f"bubblewrap not found at {cfg.bwrap}: install it (apt-get install bubblewrap) or set "
                f"{ENV_PREFIX}BWRAP, or choose another backend with REWARD_SERVICE_SANDBOX_BACKEND=docker")
        if not os.access(cfg.prlimit, os.X_OK):
            raise SandboxUnavailable(f"prlimit not found at {cfg.prlimit}: install util-linux or set {ENV_PREFIX}PRLIMIT")
        if not os.access(cfg.python, os.X_OK):
            raise SandboxUnavailable(f"no Python interpreter at {cfg.python}: install python3 or set {ENV_PREFIX}PYTHON")
        try:
            self.pool
        except OSError as e:
            raise SandboxUnavailable(f"cannot use the sandbox state dir {cfg.state_dir}: {e}; "
                                     f"set {ENV_PREFIX}STATE_DIR to a writable directory") from e
        result = self.run("python", "print(6 * 7)", limits=Limits(wall_time_s=20, cpu_time_s=10))
        if result.status != RunStatus.ok or result.stdout.strip() != b"42":
            raise SandboxUnavailable(
                "bubblewrap cannot start a sandbox here (user namespaces are probably disabled: check "
                "sysctl user.max_user_namespaces > 0 and kernel.unprivileged_userns_clone=1, or the "
                "container's seccomp/AppArmor profile): "
                f"status={result.status.value} exit={result.exit_code} detail={result.detail!r} "
                f"stderr={result.stderr[-500:].decode(errors='replace')!r}")

    def session_pids(self) -> set[int]:
        """Host pids of live warm sessions (their bwrap and supervisor), which outlive runs by design."""
        return self._warm.pids() if self._warm is not None else set()

    def close(self) -> None:
        if self._warm is not None:
            self._warm.close()
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()

    # -- running ------------------------------------------------------------------------

    def run(self, language: str, source: str, *, stdin: bytes = b"", limits: Limits | None = None,
            files: Mapping[str, bytes] | None = None, argv: list[str] | None = None) -> RunResult:
        limits = limits or Limits()
        if language not in LANGUAGES:
            return RunResult(RunStatus.sandbox_error, detail=f"unsupported language {language!r}")
        files = dict(files or {})
        for name in files:
            if not name or name.startswith("/") or ".." in name.split("/") or name in ("main.py", "main.cpp", "main"):
                return RunResult(RunStatus.sandbox_error, detail=f"refusing extra file name {name!r}")
        files["main.py" if language == "python" else "main.cpp"] = source.encode()
        too_big = [name for name, data in files.items() if len(data) > limits.file_size_mb << 20]
        if too_big:  # bwrap would die of SIGXFSZ copying them in
            return RunResult(RunStatus.sandbox_error, detail=f"files over file_size_mb={limits.file_size_mb}: {too_big}")
        # A warm run's files travel as descriptors in one message (at most 64 with its pipes).
        if self._warm is not None and language == "python" and len(files) <= 48:
            self.pool  # noqa: B018 - first use: subreaper, slots
            tmpfs_bytes = max(self.config.tmpfs_min_mb, 4 * limits.file_size_mb) << 20
            result = self._warm.run(files, stdin, limits, list(argv or []), tmpfs_bytes)
            if result is not None:
                return result
        try:
            slot = self.pool.acquire(timeout_s=limits.wall_time_s)
        except (OSError, TimeoutError) as e:
            return RunResult(RunStatus.sandbox_error, detail=f"no sandbox slot: {e}")
        try:
            return self._run_in_slot(slot, language, files, stdin, limits, list(argv or []))
        except Exception as e:  # noqa: BLE001 - a broken sandbox must not look like a broken program
            log.exception("process sandbox failed")
            return RunResult(RunStatus.sandbox_error, detail=f"sandbox failure: {type(e).__name__}: {e}")
        finally:
            self.pool.release(slot)

    def _run_in_slot(self, slot: Slot, language: str, files: dict[str, bytes], stdin: bytes,
                     limits: Limits, argv: list[str]) -> RunResult:
        fds_to_close: list[int] = []
        pass_fds: list[int] = []

        def pipe() -> tuple[int, int]:
            r, w = os.pipe()
            fds_to_close.extend((r, w))
            return r, w

        try:
            info_r, info_w = pipe()
            block_r, block_w = pipe()
            pass_fds += [info_w, block_r]
            tmpfs_bytes = max(self.config.tmpfs_min_mb, 4 * limits.file_size_mb) << 20
            session_memory_mb, session_cpu_s = limits.memory_mb, limits.cpu_time_s
            compile_budget_s = max(self.config.compile_time_s, limits.wall_time_s)
            if language == "cpp":
                # The compiler gets its own, usually larger, budgets (as in the docker backend);
                # the program's limits apply from the moment it starts.
                session_memory_mb = max(limits.memory_mb, self.config.compile_memory_mb)
                session_cpu_s = max(limits.cpu_time_s, compile_budget_s)
            def memfd(data: bytes) -> int:
                fd = _memfd(data, inheritable=True)
                fds_to_close.append(fd)
                pass_fds.append(fd)
                return fd

            args = [*self._rlimit_prefix(limits, session_memory_mb, session_cpu_s),
                    *self._bwrap_args(slot, tmpfs_bytes, info_w, memfd),
                    "--block-fd", str(block_r)]
            for name, data in files.items():
                fd = memfd(data)
                parent = os.path.dirname(name)
                if parent:
                    args += ["--dir", f"{WORK_DIR}/{parent}"]
                args += ["--file", str(fd), f"{WORK_DIR}/{name}"]
            args += ["--remount-ro", "/"]
            build: _Compile | None = None
            if language == "python":
                args += ["--", self.config.python, "-I", "main.py", *argv]
            else:
                out_r, out_w = pipe()
                st_r, st_w = pipe()
                go_r, go_w = pipe()
                pass_fds += [out_w, st_w, go_r]
                build = _Compile(out_r, st_r, go_w, limits.memory_mb << 20, compile_budget_s)
                cpu = max(1, math.ceil(limits.cpu_time_s))
                cc = " ".join(shlex.quote(a) for a in (self.config.cxx, *self.config.cxxflags, "-o", "main", "main.cpp"))
                # After a good build: the program's own address-space limit, report, then wait until
                # the host has lowered the session's cgroup memory limit too.
                script = (f"{cc} </dev/null >&{out_w} 2>&1; rc=$?; exec {out_w}>&-; "
                          f"if [ $rc = 0 ]; then ulimit -v {limits.memory_mb * 1024} && ulimit -S -t {cpu} "
                          f"&& ulimit -H -t {cpu + 1} || rc=125; fi; "
                          f"echo $rc >&{st_w}; exec {st_w}>&-; [ $rc = 0 ] || exit 1; "
                          f"read -r _ <&{go_r} || exit 1; exec {go_r}<&-; exec ./main \"$@\"")
                args += ["--", self.config.shell, "-c", script, "main", *argv]

            session = self._supervise(slot, args, pass_fds, fds_to_close, info_r, block_w,
                                      build, stdin, limits, session_memory_mb)
            return self._result(slot, language, session, limits)
        finally:
            for fd in fds_to_close:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _bwrap_args(self, slot: Slot, tmpfs_bytes: int, info_w: int, memfd) -> list[str]:
        """bwrap and its options up to the files: namespaces, read-only view, tmpfs, env, seccomp."""
        # With a slot's reused network namespace, bwrap is born in it and must not make its own.
        unshare = (["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup"]
                   if slot.netns_fd is not None else ["--unshare-all", "--unshare-user"])
        args = [self.config.bwrap, *unshare, "--disable-userns",
                "--die-with-parent", "--new-session", "--hostname", "sandbox",
                *self._root_args, "--proc", "/proc", "--dev", "/dev",
                # Every writable place is a size-capped tmpfs; the rest of the tree is read-only.
                "--size", str(tmpfs_bytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
                "--size", str(tmpfs_bytes), "--tmpfs", "/tmp",
                "--size", str(tmpfs_bytes), "--tmpfs", WORK_DIR, "--chdir", WORK_DIR,
                "--info-fd", str(info_w), "--clearenv"]
        for key, value in SANDBOX_ENV.items():
            args += ["--setenv", key, value]
        bpf = process_seccomp.filter_program() if self.config.seccomp else None
        if bpf is not None:
            args += ["--seccomp", str(memfd(bpf))]
        return args

    def _supervise(self, slot: Slot, args: list[str], pass_fds: list[int], fds_to_close: list[int],
                   info_r: int, block_w: int, build: _Compile | None, stdin: bytes,
                   limits: Limits, session_memory_mb: int) -> _Session:
        s = _Session()
        uid = slot.uid
        cg = slot.cgroup
        if cg is not None:
            # The cgroup also holds both bwrap processes (and, while spawning, our own thread).
            cg.prepare(limits.max_processes + 3)
        t0 = time.monotonic()
        with contextlib.ExitStack() as inside:
            if cg is not None:
                inside.enter_context(cg.entered())
            if slot.netns_fd is not None:
                inside.enter_context(process_netns.entered(slot.netns_fd))
            proc = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=pass_fds, cwd="/", env=dict(SANDBOX_ENV), close_fds=True, start_new_session=True,
                user=uid, group=uid, extra_groups=[] if uid is not None else None)
        if cg is not None:
            cg.adopt(proc.pid)  # cgroup v2: moved right after birth (v1: born inside, a no-op)
        # Drop our copies of the child's ends at once so EOF means "the sandbox is gone".
        for fd in pass_fds:
            os.close(fd)
            fds_to_close.remove(fd)
        inner: int | None = None
        finished = False
        inner_pidfd = outer_pidfd = -1
        try:
            outer_pidfd = os.pidfd_open(proc.pid)
            if cg is not None:
                # Armed only now: while our thread was inside, the service's own allocations counted there.
                cg.arm(session_memory_mb << 20)
            inner = self._read_child_pid(info_r, t0 + (build.budget_s if build else limits.wall_time_s))
            if inner is None:
                s.killed_for = "setup"
            else:
                inner_pidfd = os.pidfd_open(inner)
                os.write(block_w, b"x")  # release the blocked session
                s.killed_for = self._pump(proc, outer_pidfd, build, cg, stdin, limits, s, t0)
            finished = True
        finally:
            if not finished or s.killed_for is not None:
                self._kill(proc.pid, inner_pidfd)
            _, status, rusage = os.wait4(proc.pid, 0)
            if s.killed_for == "setup":
                s.stderr += _read_available(proc.stderr.fileno(), 4096)
            proc.returncode = os.waitstatus_to_exitcode(status)
            s.wall_time_s, s.t0 = time.monotonic() - t0, t0
            s.exit_status, s.rusage = status, rusage
            for f in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    f.close()
                except OSError:
                    pass
            if outer_pidfd >= 0:
                os.close(outer_pidfd)
            if inner_pidfd >= 0:
                s.inner_cpu_s = self._reap_pid1(inner, inner_pidfd)
                os.close(inner_pidfd)
            if cg is not None and not cg.kill_all():
                log.error("process sandbox: slot %d cgroup did not empty", slot.index)
        return s

    @staticmethod
    def _reap_pid1(pid: int, pidfd: int) -> float | None:
        """Reap the session's pid 1 if it was orphaned to us; its CPU time (with all it reaped) if readable.

        The outer bwrap exits as soon as pid 1 reports the program's status,
        often before pid 1 is gone; we are a child subreaper, so the orphan
        comes to us rather than to an init that may reap it seconds later
        (a zombie still counts against the slot's process limits).
        """
        if not _wait_readable(pidfd, 1.0):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            _wait_readable(pidfd, 1.0)
        cpu = None
        try:
            if os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                return None
            # An unreaped child of ours: its pid can't have been reused, so /proc/<pid> is it.
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            cpu = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
        except (ChildProcessError, OSError, ValueError, IndexError):
            pass
        return cpu

    @staticmethod
    def _read_child_pid(info_r: int, deadline: float) -> int | None:
        data = b""
        sel = selectors.DefaultSelector()
        sel.register(info_r, selectors.EVENT_READ)
        try:
            while time.monotonic() < deadline:
                if not sel.select(max(0.0, deadline - time.monotonic())):
                    continue
                chunk = os.read(info_r, 4096)
                if not chunk:
                    break
                data += chunk
                # Read only until the document is complete: pid 1 still holds this pipe open.
                try:
                    return int(json.loads(data)["child-pid"])
                except ValueError:
                    continue
                except (KeyError, TypeError):
                    return None
        finally:
            sel.close()
        return None

    def _rlimit_prefix(self, limits: Limits, memory_mb: int, cpu_time_s: float) -> list[str]:
        """``prlimit`` in front of bwrap: hard limits every process of the session inherits.

        Set from inside the child, not with prlimit(2) from here, because a
        service running as root without CAP_SYS_RESOURCE (a container) may not
        change the limits of a process that already runs under another uid.
        """
        cpu = max(1, math.ceil(cpu_time_s))
        mem = memory_mb << 20
        return [self.config.prlimit,
                # SIGXCPU at the soft limit, SIGKILL one second later if it is ignored.
                f"--cpu={cpu}:{cpu + 1}", f"--as={mem}", f"--fsize={limits.file_size_mb << 20}",
                # bwrap's own two processes count too.
                f"--nproc={limits.max_processes + 2}", f"--nofile={MAX_NOFILE}",
                "--core=0", "--memlock=0", "--msgqueue=0", "--"]

    def _pump(self, proc: subprocess.Popen, pidfd: int, build: _Compile | None, cg: SlotCgroup | None,
              stdin: bytes, limits: Limits, s: _Session, t0: float) -> str | None:
        """Feed stdin and collect output until the session ends; returns why we had to kill it, if we did."""
        deadline = t0 + (build.budget_s if build is not None else limits.wall_time_s)
        sel = selectors.DefaultSelector()
        sinks = {proc.stdout.fileno(): (s.stdout, limits.output_bytes),
                 proc.stderr.fileno(): (s.stderr, limits.output_bytes)}
        if build is not None:
            sinks[build.output_r] = (s.compile_output, COMPILE_OUTPUT_BYTES)
            sinks[build.status_r] = (s.compile_status, 64)
        for fd in sinks:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        sel.register(pidfd, selectors.EVENT_READ)
        stdin_fd = proc.stdin.fileno()
        pending = memoryview(stdin)
        if pending:
            os.set_blocking(stdin_fd, False)
            sel.register(stdin_fd, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        exited_at: float | None = None
        try:
            while True:
                now = time.monotonic()
                if exited_at is not None and (not sinks or now > exited_at + 1.0):
                    return None
                if now >= deadline:
                    return "timeout"
                wait = deadline - now if exited_at is None else min(deadline - now, exited_at + 1.0 - now)
                for key, _ in sel.select(wait):
                    fd = key.fd
                    if fd == pidfd:
                        # bwrap is gone, so is every process of the session; drain what is buffered.
                        sel.unregister(pidfd)
                        exited_at = time.monotonic()
                    elif fd == stdin_fd:
                        try:
                            n = os.write(stdin_fd, pending[:_READ_CHUNK])
                            pending = pending[n:]
                        except (BrokenPipeError, BlockingIOError) as e:
                            if isinstance(e, BrokenPipeError):
                                pending = pending[:0]
                        if not pending:
                            sel.unregister(stdin_fd)
                            proc.stdin.close()
                    else:
                        buf, cap = sinks[fd]
                        try:
                            chunk = os.read(fd, _READ_CHUNK)
                        except BlockingIOError:
                            continue
                        if not chunk:
                            sel.unregister(fd)
                            del sinks[fd]
                            continue
                        room = cap - len(buf)
                        buf += chunk[:max(room, 0)]
                        if build is not None and fd == build.status_r and buf.strip() == b"0":
                            if not self._start_program(build, cg):
                                return "memory_limit"
                            s.started_at = time.monotonic()
                            deadline = s.started_at + limits.wall_time_s
                        if len(chunk) > room and fd in (proc.stdout.fileno(), proc.stderr.fileno()):
                            return "output_limit"
        finally:
            sel.close()

    @staticmethod
    def _start_program(build: _Compile, cg: SlotCgroup | None) -> bool:
        """The build succeeded: shrink the session's memory to the program's, then let it run."""
        if cg is not None:
            try:
                cg.limit_memory(build.run_memory_bytes)
                cg.restart_counters()  # peak memory and CPU time are the program's, not the compiler's
            except OSError:
                return False  # what the build left behind can't be reclaimed below the program's limit
        os.write(build.go_w, b"go\n")
        return True

    @staticmethod
    def _kill(outer_pid: int, inner_pidfd: int) -> None:
        # pid 1 of the session first: its death takes every process in the pid namespace with it.
        if inner_pidfd >= 0:
            try:
                signal.pidfd_send_signal(inner_pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.kill(outer_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # -- judging ------------------------------------------------------------------------

    def _result(self, slot: Slot, language: str, s: _Session, limits: Limits) -> RunResult:
        cg = slot.cgroup
        code = os.waitstatus_to_exitcode(s.exit_status)
        # bwrap reports a program killed by signal N as exit status 128 + N.
        if 128 < code < 128 + 65:
            code = -(code - 128)
        # bwrap's pid 1 is usually not reaped by the bwrap we wait for: its time comes from /proc or cpuacct.
        cpu = (s.rusage.ru_utime + s.rusage.ru_stime) if s.rusage else 0.0
        if s.inner_cpu_s is not None:
            cpu += s.inner_cpu_s
        # Without cgroups there is no honest peak: bwrap's ru_maxrss is the forked service's, not the program's.
        peak = 0.0
        extra: dict = {"slot": slot.index}
        oom = False
        if cg is not None:
            try:
                peak, cg_cpu, oom, refused = cg.usage()
                if cg_cpu is not None:
                    cpu = cg_cpu
                if refused:
                    extra["forks_refused"] = refused
            except OSError:
                pass
            cg.reset()
        else:
            extra["measured"] = "no cgroups: peak memory unmeasured, CPU time best effort"
        wall = s.wall_time_s
        if s.started_at is not None:
            extra["compile_time_s"] = round(s.started_at - s.t0, 4)
            wall -= extra["compile_time_s"]
        res = RunResult(RunStatus.ok, code, bytes(s.stdout), bytes(s.stderr), round(wall, 4),
                        round(cpu, 4), round(peak, 2), extra=extra)
        compiled = True
        if language == "cpp":
            res.compile_output = bytes(s.compile_output).decode(errors="replace")[-4000:]
            st = bytes(s.compile_status).strip()
            compiled = st == b"0"
            if st and not compiled:
                res.status, res.detail = RunStatus.compile_error, f"compilation failed (g++ exit {st.decode()})"
                if oom or any(p in s.compile_output for p in _MEMORY_PATTERNS):
                    res.detail += ", out of memory"
                return res

        if s.killed_for == "memory_limit":
            res.status = RunStatus.memory_limit
            res.detail = f"the build left more than memory_mb={limits.memory_mb} in use; killed before the run"
        elif s.killed_for == "setup":
            res.status = RunStatus.sandbox_error
            res.detail = "bwrap did not start: " + bytes(s.stderr[:500]).decode(errors="replace")
        elif s.killed_for == "output_limit":
            res.status, res.detail = RunStatus.output_limit, f"more than {limits.output_bytes} bytes of output; killed"
        elif s.killed_for == "timeout" and language == "cpp" and s.started_at is None:
            res.status, res.detail = RunStatus.compile_error, f"compiler timed out after {s.wall_time_s:.1f}s"
        elif s.killed_for == "timeout":
            res.status = RunStatus.timeout
            res.detail = f"wall time limit {limits.wall_time_s}s exceeded; killed"
        elif not compiled:
            # The session died during compilation without a status: a signal or a limit hit the compiler.
            res.status, res.detail = RunStatus.compile_error, f"compiler killed (exit {code})"
            if oom:
                res.detail += ", out of memory"
        elif code == 0:
            res.status = RunStatus.ok
        elif code == -signal.SIGXCPU:
            res.status, res.detail = RunStatus.timeout, f"CPU time limit {limits.cpu_time_s}s exceeded"
        elif oom:
            res.status, res.detail = RunStatus.memory_limit, f"memory limit {limits.memory_mb} MB exceeded (OOM kill)"
        elif code == -signal.SIGKILL and cpu >= max(1, math.ceil(limits.cpu_time_s)):
            res.status, res.detail = RunStatus.timeout, f"CPU time limit {limits.cpu_time_s}s exceeded"
        elif any(p in s.stderr[-4096:] for p in _MEMORY_PATTERNS):
            res.status, res.detail = RunStatus.memory_limit, f"memory limit {limits.memory_mb} MB exceeded"
        elif code < 0:
            res.status, res.detail = RunStatus.runtime_error, f"killed by {signal.Signals(-code).name}"
        elif code == 1 and not s.stdout and s.stderr.startswith(b"bwrap: "):
            res.status, res.detail = RunStatus.sandbox_error, "bwrap could not set up the sandbox"
        else:
            res.status, res.detail = RunStatus.runtime_error, f"exit code {code}"
        return res


def _wait_readable(fd: int, timeout_s: float) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        return bool(sel.select(timeout_s))


def _read_available(fd: int, limit: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, limit)
    except OSError:
        return b""


def _become_subreaper() -> bool:
    """Orphans of our descendants (the sandbox's pid 1) come to us to be reaped promptly."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _memfd(data: bytes, inheritable: bool = False) -> int:
    fd = os.memfd_create("sandbox-file", os.MFD_CLOEXEC)
    try:
        _write_all(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, inheritable)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
