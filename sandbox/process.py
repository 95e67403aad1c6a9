"""The default sandbox: Linux namespaces through bubblewrap, rlimits, per-slot uids and cgroups.

A session is one ``bwrap``: fresh user, pid, mount, ipc, uts and cgroup
namespaces and a network namespace with nothing up (reused per slot, see
``process_netns``); a seccomp deny-list; a read-only view of /usr (and the
/lib*, /bin symlinks or binds) plus ``/etc/ld.so.cache``; size-capped tmpfs
for the work dir, /tmp and /dev/shm; a scrubbed environment; the slot's own
host uid (when the service is root) and cgroups. Its PID 1 is the supervisor
(``sandbox/inside/supervisor.py``), which runs the session's programs one at a
time on request (``sandbox/fds_session.py``); sessions are reused across
scored items, wiped in between (``sandbox/process_sessions.py``), unless
``REWARD_SERVICE_SANDBOX_WARM=0``.
"""
from __future__ import annotations

import ctypes
import glob
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field

from sandbox import languages, process_seccomp
from sandbox.base import Sandbox, Session
from sandbox.process_sessions import SessionPool
from sandbox.process_slots import Slot, SlotPool
from sandbox.types import Limits, RunStatus, SandboxUnavailable

log = logging.getLogger(__name__)

ENV_PREFIX = "REWARD_SERVICE_SANDBOX_"
WORK_DIR = "/box"
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": WORK_DIR}
_PR_SET_CHILD_SUBREAPER = 36


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
    prlimit: str = "/usr/bin/prlimit"
    uid_base: int = 3_000_000
    slots: int = 4096  # sanity maximum; slots are made on demand (sandbox.process_slots)
    state_dir: str = field(default_factory=lambda: _default_state_dir())
    cgroups: bool = True
    ro_binds: tuple[str, ...] = ()
    tmpfs_min_mb: int = 64
    site_packages: bool = False
    reuse_netns: bool = True
    seccomp: bool = True
    compile_time_s: float | None = None  # overrides every language's build budget (wall and CPU)
    compile_memory_mb: int | None = None  # overrides every language's build memory
    warm: bool = True  # sessions outlive their scored item (wiped in between)
    warm_runs: int = 500  # runs per warm session before it is replaced
    warm_sessions: int = 4  # idle warm sessions one service process keeps (each holds a slot)
    fork_python: bool = True  # python runs fork the session's interpreter instead of exec'ing python3

    @classmethod
    def from_env(cls) -> "ProcessConfig":
        return cls(
            bwrap=_env("BWRAP", shutil.which("bwrap") or "/usr/bin/bwrap"),
            python=_env("PYTHON", "/usr/bin/python3"),
            prlimit=_env("PRLIMIT", shutil.which("prlimit") or "/usr/bin/prlimit"),
            uid_base=int(_env("UID_BASE", "3000000")),
            slots=int(_env("SLOTS", "4096")),
            state_dir=_env("STATE_DIR", _default_state_dir()),
            cgroups=_env("CGROUPS", "auto").lower() not in ("0", "off", "no", "false"),
            ro_binds=tuple(p for p in _env("RO_BINDS", "").split(":") if p),
            tmpfs_min_mb=int(_env("TMPFS_MB", "64")),
            site_packages=_env("SITE_PACKAGES", "hide").lower() in ("show", "1", "yes", "true"),
            reuse_netns=_env("REUSE_NETNS", "1").lower() not in ("0", "off", "no", "false"),
            seccomp=_env("SECCOMP", "1").lower() not in ("0", "off", "no", "false"),
            compile_time_s=float(_env("COMPILE_TIME_S", "0")) or None,
            compile_memory_mb=int(_env("COMPILE_MEMORY_MB", "0")) or None,
            warm=_env("WARM", "1").lower() not in ("0", "off", "no", "false"),
            warm_runs=int(_env("WARM_RUNS", "500")),
            warm_sessions=int(_env("WARM_SESSIONS", "4")),
            fork_python=_env("FORK_PYTHON", "1").lower() not in ("0", "off", "no", "false"),
        )


def _root_view(extra: tuple[str, ...]) -> list[str]:
    """bwrap arguments for a read-only view of just what the interpreters and toolchains need."""
    args: list[str] = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for path in ("/etc/ld.so.cache", "/etc/alternatives"):
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    for path in (*languages.ro_paths(), *extra):
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


class ProcessSandbox(Sandbox):
    name = "process"

    def __init__(self, config: ProcessConfig | None = None) -> None:
        self.config = config or ProcessConfig.from_env()
        self.fork_python = self.config.fork_python
        self._pool: SlotPool | None = None
        self._subreaper = False
        self._owner_pid = 0
        self._pool_lock = threading.Lock()
        self._root_args = _root_view(self.config.ro_binds)
        if not self.config.site_packages:
            self._root_args += _hide_site_packages()
        cfg = self.config
        # Sessions that are not warm still go through the pool: they are just never kept.
        self._sessions = SessionPool(lambda: self.pool, self._bwrap_command, dict(SANDBOX_ENV), cfg.python,
                                     warm=cfg.warm, warm_runs=cfg.warm_runs,
                                     warm_sessions=cfg.warm_sessions if cfg.warm else 0)

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
            "sessions": "warm (reused across items, wiped in between)" if self.config.warm
            else "cold (one bwrap per scored item)",
            "python_runs": "fork of the session's interpreter" if self.fork_python else "exec python3 -I",
            "cgroups": pool.cgroup_summary(),
            "limits_in_force": pool.limits_in_force(),
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
        """Host pids of live sessions (their bwrap and supervisor), which outlive runs by design."""
        return self._sessions.pids()

    def session(self, limits: Limits | None = None, wait_s: float | None = None) -> Session:
        limits = limits or Limits()
        self.pool  # noqa: B018 - first use here: subreaper, slots
        tmpfs_bytes = max(self.config.tmpfs_min_mb, 4 * limits.file_size_mb) << 20
        # A slot wait never outlasts the run it is for.
        s = self._sessions.session(tmpfs_bytes, timeout_s=wait_s or limits.wall_time_s)
        s.compile_time_s, s.compile_memory_mb = self.config.compile_time_s, self.config.compile_memory_mb
        return s

    def close(self) -> None:
        self._sessions.close()
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()

    def _bwrap_command(self, slot: Slot, tmpfs_bytes: int, info_w: int, memfd) -> list[str]:
        """prlimit and bwrap with its options, up to the program: namespaces, read-only view, tmpfs,
        env, seccomp. Session-wide rlimits only where no run needs more; each run lowers its own."""
        return [self.config.prlimit, "--nofile=256", "--core=0", "--memlock=0", "--msgqueue=0", "--",
                *self._bwrap_args(slot, tmpfs_bytes, info_w, memfd), "--as-pid-1", "--remount-ro", "/"]

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


def _become_subreaper() -> bool:
    """Orphans of our descendants (the sandbox's pid 1) come to us to be reaped promptly."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


