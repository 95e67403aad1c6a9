"""Per-slot cgroups for the process sandbox: cgroup v1 and v2 behind one interface.

``detect()`` looks at what this process is in and returns the hierarchy to use:

- **v1** (``memory``, ``pids`` and optionally ``cpuacct`` hierarchies, also what hybrid
  hosts use for controllers): a slot's cgroups are ``<own>/reward-sandbox/slot-N`` in each
  hierarchy, ``<own>`` being this process's cgroup there.
- **v2** (the unified hierarchy at ``/sys/fs/cgroup``): a slot is one cgroup
  ``<D>/reward-sandbox/slot-N`` in the subtree ``<D>`` delegated to the service, with the
  ``memory`` and ``pids`` controllers; CPU time comes from ``cpu.stat`` (present without
  the ``cpu`` controller). v2 forbids processes in a cgroup whose children have
  controllers ("no internal processes"), so the first service process moves every
  process of ``<D>`` into the leaf ``<D>/service`` before enabling ``+memory +pids`` in
  ``<D>``'s ``cgroup.subtree_control``. That is only done in a subtree that is the
  service's own: a systemd unit or scope with ``Delegate=yes`` (marked by systemd's
  ``trusted.delegate`` xattr, systemd >= 251), the root of a container's cgroup namespace,
  or when ``REWARD_SERVICE_SANDBOX_CGROUP_DELEGATED=1`` says so. Anywhere else the
  sandbox runs without cgroups and says why; it never reorganises a cgroup it was not
  given.

Callers spawn a slot's processes like this (both versions)::

    cg.prepare(max_pids)
    with cg.entered():          # v1: the spawning thread is in the slot, children are born there
        proc = Popen(...)
    cg.adopt(proc.pid)          # v2: moves the process and whatever it forked already
    cg.arm(memory_bytes)        # v2 refuses (CgroupNotEntered) if nothing was adopted

v2 cannot move one thread of a multi-threaded service (only whole processes, and the
memory controller is not threaded), so the process is moved right after it is born; what
bwrap allocated before that (a few hundred KiB) stays charged to the service.
"""
from __future__ import annotations

import errno
import os
import signal
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Iterator

CGROUP_ROOT = "/sys/fs/cgroup"
GROUP_NAME = "reward-sandbox"
SERVICE_LEAF = "service"
DELEGATED_ENV = "REWARD_SERVICE_SANDBOX_CGROUP_DELEGATED"
_STALE_CACHE_BYTES = 64 << 20
_CGROUP2_SUPER_MAGIC = 0x63677270


class CgroupUnavailable(RuntimeError):
    pass


class CgroupNotEntered(RuntimeError):
    """A v2 slot was armed with no process in it: the caller forgot ``adopt``; nothing would be limited."""


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _keyed(path: str, key: str) -> int:
    """``key``'s value in a flat-keyed cgroup file (``memory.events``, ``cpu.stat``, ...); 0 if absent."""
    for line in _read(path).splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def _proc_cgroup_lines() -> list[tuple[str, list[str], str]]:
    out = []
    for line in _read("/proc/self/cgroup").splitlines():
        hid, controllers, path = line.split(":", 2)
        out.append((hid, controllers.split(",") if controllers else [], path))
    return out


def _own_cgroup(controller: str) -> str:
    """This process's cgroup path in a v1 hierarchy, relative to the mount."""
    for hid, controllers, path in _proc_cgroup_lines():
        if hid != "0" and controller in controllers:
            return path
    raise CgroupUnavailable(f"this process is in no v1 {controller!r} cgroup")


def _own_v2_cgroup() -> str:
    for hid, _, path in _proc_cgroup_lines():
        if hid == "0":
            return path
    raise CgroupUnavailable("this process is in no cgroup v2 hierarchy")


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name, "auto").strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    return None


# -- one slot ---------------------------------------------------------------------------------

class SlotCgroup(ABC):
    """The cgroup(s) of one slot: limits for a run and what the run used.

    ``memory_dir``/``pids_dir``/``cpuacct_dir`` are where the controllers' files are (one
    directory on v2); ``dirs`` lists each directory once.
    """

    version: int
    memory_dir: str
    pids_dir: str
    cpuacct_dir: str | None

    @property
    @abstractmethod
    def dirs(self) -> list[str]: ...

    @abstractmethod
    def prepare(self, max_pids: int) -> None:
        """Before spawning: no memory limit yet, ``max_pids``, counters remembered."""

    @abstractmethod
    def entered(self):
        """Context manager: what the calling thread forks inside the block is born in the slot (v1)."""

    @abstractmethod
    def adopt(self, pid: int) -> None:
        """Move ``pid`` and everything it already forked into the slot (v2; v1: ``entered`` did it)."""

    @abstractmethod
    def restart_counters(self) -> None: ...

    @abstractmethod
    def arm(self, memory_bytes: int) -> None:
        """Limits and counters for the run, set after the spawning thread has left."""

    @abstractmethod
    def arm_run(self, memory_bytes: int, max_pids: int) -> None:
        """Limits and counters for one run of a warm session (already inside the cgroup)."""

    @abstractmethod
    def limit_memory(self, limit: int) -> None:
        """``limit`` bytes (-1: none); OSError(EBUSY) if what is charged can't be reclaimed below it."""

    @abstractmethod
    def cpu_seconds(self) -> float | None: ...

    @abstractmethod
    def oom_kills(self) -> int: ...

    @abstractmethod
    def pids_refused(self) -> int: ...

    @abstractmethod
    def peak_bytes(self) -> int: ...

    @abstractmethod
    def procs(self) -> set[int]: ...

    @abstractmethod
    def reset(self) -> None:
        """Between runs: drop piled-up page cache."""

    _oom_before = 0
    _pids_before = 0

    def rearm(self) -> None:
        """Counters for another run under the limits already armed (no limit written again)."""
        self._oom_before = self.oom_kills()
        self._pids_before = self.pids_refused()
        self.restart_counters()

    def oom_killed(self) -> bool:
        return self.oom_kills() > self._oom_before

    def pids_refused_since_arm(self) -> int:
        return self.pids_refused() - self._pids_before

    def usage(self) -> tuple[float, float | None, bool, int]:
        """What the run did here: (peak MiB, CPU seconds of the whole tree or None,
        OOM-killed, forks refused), counted from when the run was prepared or armed."""
        return (self.peak_bytes() / (1 << 20), self.cpu_seconds(), self.oom_killed(),
                self.pids_refused_since_arm())

    def _signal_all(self) -> None:
        for pid in self.procs():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill_all(self, timeout_s: float = 2.0) -> bool:
        """SIGKILL whatever is still in the slot; True once it is empty."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.procs():
                return True
            self._signal_all()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)

    def remove(self) -> None:
        for path in self.dirs:
            try:
                os.rmdir(path)
            except OSError:
                pass


class SlotCgroupV1(SlotCgroup):
    """v1 memory, pids (and cpuacct) cgroups for one slot, nested under the service's own cgroups.

    Nesting (rather than creating cgroups at the root) keeps sandboxes inside
    whatever limits the service itself runs under.
    """

    version = 1

    def __init__(self, dirs: dict[str, str], homes: dict[str, str]) -> None:
        self.memory_dir = dirs["memory"]
        self.pids_dir = dirs["pids"]
        self.cpuacct_dir = dirs.get("cpuacct")  # CPU time of the whole tree: bwrap's rusage misses it
        self._homes = homes
        self._memsw = os.path.exists(os.path.join(self.memory_dir, "memory.memsw.limit_in_bytes"))
        self._oom_before = 0
        self._pids_before = 0
        self._baseline = 0

    @property
    def dirs(self) -> list[str]:
        return [d for d in (self.memory_dir, self.pids_dir, self.cpuacct_dir) if d]

    @classmethod
    def create(cls, index: int, root: str = CGROUP_ROOT) -> "SlotCgroupV1":
        dirs: dict[str, str] = {}
        homes: dict[str, str] = {}
        for controller in ("memory", "pids", "cpuacct"):
            optional = controller == "cpuacct"
            try:
                home = os.path.join(root, controller) + _own_cgroup(controller)
                path = os.path.join(home, GROUP_NAME, f"slot-{index}")
                os.makedirs(path, exist_ok=True)
            except (CgroupUnavailable, OSError) as e:
                if optional:
                    continue
                raise CgroupUnavailable(f"cannot create a {controller} cgroup: {e}") from e
            dirs[controller], homes[controller] = path, home
        return cls(dirs, homes)

    def prepare(self, max_pids: int) -> None:
        # No memory limit while the spawning thread is inside: if it is the main thread, the
        # whole service's allocations are charged here for that moment, and an OOM kill in
        # this cgroup would pick the service.
        self.limit_memory(-1)
        _write(os.path.join(self.pids_dir, "pids.max"), str(max_pids))
        self._oom_before = self.oom_kills()
        self._pids_before = self.pids_refused()

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block with the calling *thread* inside the slot, so what it forks is born there.

        Moving one's own thread (writing "0" to ``tasks``) skips the global
        threadgroup lock whose RCU grace period makes moving another process
        cost ~4 ms; the child inherits the thread's cgroups at fork.
        """
        entered: list[str] = []
        try:
            for controller, home in self._homes.items():
                _write(os.path.join(self._dir(controller), "tasks"), "0")
                entered.append(controller)
            yield
        finally:
            for controller in entered:
                _write(os.path.join(self._homes[controller], "tasks"), "0")

    def adopt(self, pid: int) -> None:
        pass  # born inside, through entered()

    def _dir(self, controller: str) -> str:
        return {"memory": self.memory_dir, "pids": self.pids_dir, "cpuacct": self.cpuacct_dir}[controller]

    def restart_counters(self) -> None:
        _write(os.path.join(self.memory_dir, "memory.max_usage_in_bytes"), "0")
        # Page cache charged by earlier runs stays here (reclaimable); the peak is measured above it.
        self._baseline = self._usage()
        if self.cpuacct_dir:
            _write(os.path.join(self.cpuacct_dir, "cpuacct.usage"), "0")

    def arm(self, memory_bytes: int) -> None:
        self.limit_memory(memory_bytes)
        self.restart_counters()

    def arm_run(self, memory_bytes: int, max_pids: int) -> None:
        _write(os.path.join(self.pids_dir, "pids.max"), str(max_pids))
        self.limit_memory(memory_bytes)  # EBUSY if what is charged can't be reclaimed below it
        self._oom_before = self.oom_kills()
        self._pids_before = self.pids_refused()
        self.restart_counters()

    def limit_memory(self, limit: int) -> None:
        mem = os.path.join(self.memory_dir, "memory.limit_in_bytes")
        memsw = os.path.join(self.memory_dir, "memory.memsw.limit_in_bytes")
        if not self._memsw:
            _write(mem, str(limit))
            return
        # memsw must stay >= mem, so the order of the two writes depends on the direction.
        try:
            _write(mem, str(limit))
            _write(memsw, str(limit))
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            _write(memsw, str(limit))
            _write(mem, str(limit))

    def cpu_seconds(self) -> float | None:
        if not self.cpuacct_dir:
            return None
        return int(_read(os.path.join(self.cpuacct_dir, "cpuacct.usage"))) / 1e9

    def oom_kills(self) -> int:
        for line in _read(os.path.join(self.memory_dir, "memory.oom_control")).splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return int(_read(os.path.join(self.memory_dir, "memory.failcnt")))

    def pids_refused(self) -> int:
        try:
            return int(_read(os.path.join(self.pids_dir, "pids.events")).split()[1])
        except (OSError, IndexError, ValueError):
            return 0

    def peak_bytes(self) -> int:
        return max(0, int(_read(os.path.join(self.memory_dir, "memory.max_usage_in_bytes"))) - self._baseline)

    def _usage(self) -> int:
        return int(_read(os.path.join(self.memory_dir, "memory.usage_in_bytes")))

    def procs(self) -> set[int]:
        return {int(p) for d in self.dirs for p in _read(os.path.join(d, "cgroup.procs")).split()}

    def reset(self) -> None:
        # Reclaiming after every run would evict the interpreter's own files from the page
        # cache (they are charged to whichever slot read them first): only when a lot piled up.
        try:
            if self._usage() > _STALE_CACHE_BYTES:
                _write(os.path.join(self.memory_dir, "memory.force_empty"), "0")
        except OSError:
            pass


class SlotCgroupV2(SlotCgroup):
    """One cgroup v2 leaf for one slot: ``memory.max`` (swap off), ``pids.max``, ``cpu.stat``, ``cgroup.kill``.

    ``controllers`` are those enabled for it by its parent; without ``memory`` or
    ``pids`` (only in tests on a hierarchy that has none) those parts are no-ops and
    read as zero.
    """

    version = 2

    def __init__(self, path: str, controllers: frozenset[str] = frozenset({"memory", "pids"})) -> None:
        self.path = path
        self.memory_dir = self.pids_dir = self.cpuacct_dir = path
        self._memory = "memory" in controllers
        self._pids = "pids" in controllers
        self._oom_before = 0
        self._pids_before = 0
        self._cpu_before = 0
        self._baseline = 0
        self._peak_fd = -1  # memory.peak reset through this descriptor (Linux >= 6.12)
        self._peak_before = 0  # lifetime memory.peak at arm time (older kernels)
        self._kill = os.path.exists(self._file("cgroup.kill"))

    @property
    def dirs(self) -> list[str]:
        return [self.path]

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @classmethod
    def create(cls, group: str, index: int, controllers: frozenset[str]) -> "SlotCgroupV2":
        path = os.path.join(group, f"slot-{index}")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise CgroupUnavailable(f"cannot create cgroup {path}: {e}") from e
        cg = cls(path, controllers)
        if cg._memory and os.path.exists(cg._file("memory.swap.max")):
            # v1's memsw limit counted swap in memory_mb; here: no swap at all.
            _write(cg._file("memory.swap.max"), "0")
        return cg

    @property
    def peak_resettable(self) -> bool:
        return self._peak_fd >= 0

    def prepare(self, max_pids: int) -> None:
        self._renew_if_peak_is_stale()
        self.limit_memory(-1)
        if self._pids:
            _write(self._file("pids.max"), str(max_pids))
        self._oom_before = self.oom_kills()
        self._pids_before = self.pids_refused()

    @contextmanager
    def entered(self) -> Iterator[None]:
        # v2 moves whole processes only: see adopt().
        yield

    def adopt(self, pid: int) -> None:
        """Move ``pid``, then its children, theirs, ...: a fork racing the move is either
        finished before it (the child is listed and moved next) or born inside."""
        procs = self._file("cgroup.procs")
        todo, seen = [pid], set()
        while todo:
            p = todo.pop()
            if p in seen:
                continue
            seen.add(p)
            try:
                _write(procs, str(p))
            except OSError as e:
                if e.errno == errno.ESRCH:
                    continue
                raise
            try:
                tids = os.listdir(f"/proc/{p}/task")
            except FileNotFoundError:
                continue
            for tid in tids:
                try:
                    todo += [int(c) for c in _read(f"/proc/{p}/task/{tid}/children").split()]
                except OSError:
                    pass

    def _renew_if_peak_is_stale(self) -> None:
        """Before a session starts in an empty slot whose ``memory.peak`` can't be reset (Linux < 6.12):
        an earlier session's high-water mark would hide this one's, so the cgroup is made afresh
        (only then: a new cgroup per run would cost more than the run's isolation)."""
        if not self._memory or self._peak_fd >= 0 or not os.path.exists(self._file("memory.peak")):
            return
        try:
            if self._lifetime_peak() <= self._current() + (1 << 20) or self.procs():
                return
            os.rmdir(self.path)
            os.mkdir(self.path)
            if os.path.exists(self._file("memory.swap.max")):
                _write(self._file("memory.swap.max"), "0")
        except OSError:
            if not os.path.isdir(self.path):
                raise
        self._peak_fd = -1

    def _require_procs(self) -> None:
        if not self.procs():
            raise CgroupNotEntered(f"no process in {self.path}: spawn with cg.adopt(pid) before arming")

    def restart_counters(self) -> None:
        self._cpu_before = self._cpu_usec()
        if not self._memory:
            return
        self._baseline = self._current()
        if self._peak_fd < 0 and os.path.exists(self._file("memory.peak")):
            try:
                self._peak_fd = os.open(self._file("memory.peak"), os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                self._peak_fd = -2  # read-only: a kernel before 6.12
        if self._peak_fd >= 0:
            try:
                os.pwrite(self._peak_fd, b"reset\n", 0)
            except OSError:
                os.close(self._peak_fd)
                self._peak_fd = -2
        if self._peak_fd < 0:
            self._peak_before = self._lifetime_peak()

    def arm(self, memory_bytes: int) -> None:
        self._require_procs()
        self.limit_memory(memory_bytes)
        self.restart_counters()

    def arm_run(self, memory_bytes: int, max_pids: int) -> None:
        self._require_procs()
        if self._pids:
            _write(self._file("pids.max"), str(max_pids))
        self.limit_memory(memory_bytes)
        self._oom_before = self.oom_kills()
        self._pids_before = self.pids_refused()
        self.restart_counters()

    def limit_memory(self, limit: int) -> None:
        if not self._memory:
            return
        if limit < 0:
            _write(self._file("memory.max"), "max")
            return
        # v1 refuses a limit below what is charged (EBUSY) and the warm path relies on that;
        # v2 would instead OOM-kill the session to get there. Reclaim first, refuse if it stays above.
        over = self._current() - limit
        if over > 0 and os.path.exists(self._file("memory.reclaim")):
            try:
                _write(self._file("memory.reclaim"), str(over))
            except OSError:
                pass  # EAGAIN: could not reclaim that much
        if self._current() > limit:
            raise OSError(errno.EBUSY, f"{self.path}: {self._current()} bytes charged, above the limit {limit}")
        _write(self._file("memory.max"), str(limit))

    def _cpu_usec(self) -> int:
        return _keyed(self._file("cpu.stat"), "usage_usec")

    def cpu_seconds(self) -> float | None:
        return (self._cpu_usec() - self._cpu_before) / 1e6

    def oom_kills(self) -> int:
        return _keyed(self._file("memory.events"), "oom_kill") if self._memory else 0

    def pids_refused(self) -> int:
        return _keyed(self._file("pids.events"), "max") if self._pids else 0

    def _current(self) -> int:
        return int(_read(self._file("memory.current")))

    def _lifetime_peak(self) -> int:
        try:
            return int(_read(self._file("memory.peak")))
        except (OSError, ValueError):
            return 0

    def peak_bytes(self) -> int:
        if not self._memory:
            return 0
        if self._peak_fd >= 0:
            return max(0, int(os.pread(self._peak_fd, 64, 0)) - self._baseline)
        # No resettable peak: the lifetime high-water mark is this run's only if the run raised it;
        # otherwise what is charged now is a lower bound (limits_in_force() says so).
        peak = self._lifetime_peak()
        if peak > self._peak_before:
            return max(0, peak - self._baseline)
        return max(0, self._current() - self._baseline)

    def procs(self) -> set[int]:
        return {int(p) for p in _read(self._file("cgroup.procs")).split()}

    def kill_all(self, timeout_s: float = 2.0) -> bool:
        if not self.procs():
            return True
        if self._kill:
            # One write kills every process in the cgroup, forks in flight included (Linux >= 5.14).
            _write(self._file("cgroup.kill"), "1")
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.procs():
                return True
            if time.monotonic() > deadline:
                return False
            if not self._kill:
                self._signal_all()
            time.sleep(0.002)

    def reset(self) -> None:
        if not self._memory or not os.path.exists(self._file("memory.reclaim")):
            return
        try:
            if self._current() > _STALE_CACHE_BYTES:
                _write(self._file("memory.reclaim"), str(self._current()))
        except OSError:
            pass

    def remove(self) -> None:
        if self._peak_fd >= 0:
            os.close(self._peak_fd)
            self._peak_fd = -1
        super().remove()


# -- the hierarchy --------------------------------------------------------------------------------

class CgroupHierarchy(ABC):
    version: int

    @abstractmethod
    def setup(self) -> None:
        """Make the tree usable for slots or raise CgroupUnavailable saying why."""

    @abstractmethod
    def create_slot(self, index: int) -> SlotCgroup: ...

    @abstractmethod
    def describe(self, sample: SlotCgroup | None = None) -> dict:
        """Which limits are in force (for /readyz and the start-up log)."""


class CgroupV1(CgroupHierarchy):
    version = 1

    def __init__(self, root: str = CGROUP_ROOT) -> None:
        self.root = root

    def setup(self) -> None:
        for controller in ("memory", "pids"):
            parent = os.path.join(self.root, controller) + _own_cgroup(controller)
            if not os.path.isdir(parent):
                raise CgroupUnavailable(f"no cgroup v1 {controller} hierarchy at {parent}")

    def create_slot(self, index: int) -> SlotCgroupV1:
        cg = SlotCgroupV1.create(index, self.root)
        if not os.path.exists(os.path.join(cg.pids_dir, "pids.max")):
            raise CgroupUnavailable("the pids controller has no pids.max")
        return cg

    def describe(self, sample: SlotCgroup | None = None) -> dict:
        base = os.path.join(self.root, "memory") + _own_cgroup("memory")
        memsw = isinstance(sample, SlotCgroupV1) and sample._memsw
        cpu = sample is None or sample.cpuacct_dir is not None
        return {
            "cgroup": "v1",
            "cgroup_root": os.path.join(base, GROUP_NAME),
            "memory": "memory.limit_in_bytes per session" + (" (+ memsw: swap included)" if memsw else ""),
            "processes": "pids.max per session",
            "cpu_time": "cpuacct.usage of the whole tree" if cpu else "no cpuacct hierarchy: the main process only",
            "peak_memory": "memory.max_usage_in_bytes, reset per run",
            "oom_detection": "memory.oom_control oom_kill",
        }


class CgroupV2(CgroupHierarchy):
    """A delegated subtree ``<D>`` of the unified hierarchy (see the module docstring)."""

    version = 2
    required = ("memory", "pids")

    def __init__(self, mount: str = CGROUP_ROOT, own: str | None = None, delegated: bool | None = None,
                 required: tuple[str, ...] | None = None) -> None:
        self.mount = mount
        own = own if own is not None else _own_v2_cgroup()
        self.own = own
        # A process we (or a sibling service process) already moved lives in <D>/service.
        self.delegated_rel = os.path.dirname(own) if os.path.basename(own) == SERVICE_LEAF else own
        self.root = os.path.normpath(mount + "/" + self.delegated_rel)
        self.group = os.path.join(self.root, GROUP_NAME)
        self._delegated = delegated if delegated is not None else _env_flag(DELEGATED_ENV)
        if required is not None:
            self.required = required
        self.controllers: frozenset[str] = frozenset(self.required)
        self.moved_service = False

    def _file(self, name: str, base: str | None = None) -> str:
        return os.path.join(base or self.root, name)

    def is_delegated(self) -> tuple[bool, str]:
        """Whether reorganising ``<D>`` is ours to do, and the evidence."""
        if self._delegated is not None:
            return self._delegated, f"{DELEGATED_ENV}={'1' if self._delegated else '0'}"
        if self.delegated_rel == "/":
            return True, "root of this process's cgroup namespace (a container's own cgroup)"
        for attr in ("trusted.delegate", "user.delegate"):
            try:
                if os.getxattr(self.root, attr).strip(b"\0") == b"1":
                    return True, f"{attr}=1 (systemd Delegate=yes)"
            except OSError:
                pass
        return False, "no Delegate=yes marker"

    def setup(self) -> None:
        try:
            available = _read(self._file("cgroup.controllers")).split()
        except OSError as e:
            raise CgroupUnavailable(f"cgroup v2: cannot read {self._file('cgroup.controllers')}: {e}") from e
        missing = [c for c in self.required if c not in available]
        if missing:
            raise CgroupUnavailable(
                f"cgroup v2: controller(s) {'+'.join(missing)} not delegated to {self.root} (it has: "
                f"{' '.join(available) or 'none'}); run the service in a unit or scope with Delegate=yes")
        enabled = _read(self._file("cgroup.subtree_control")).split()
        if not all(c in enabled for c in self.required):
            real_root = not os.path.exists(self._file("cgroup.type"))  # the root may have internal processes
            if not real_root and _read(self._file("cgroup.procs")).split():
                ok, why = self.is_delegated()
                if not ok:
                    raise CgroupUnavailable(
                        f"cgroup v2: {self.root} holds processes and is not delegated to the service ({why}); "
                        f"start it with systemd-run --scope -p Delegate=yes, a unit with Delegate=yes, in a "
                        f"container with its own cgroup namespace, or set {DELEGATED_ENV}=1 if this subtree is its own")
                self._move_processes_to_leaf()
            try:
                _write(self._file("cgroup.subtree_control"), " ".join(f"+{c}" for c in self.required))
            except OSError as e:
                raise CgroupUnavailable(f"cgroup v2: cannot enable {'+'.join(self.required)} in "
                                        f"{self._file('cgroup.subtree_control')}: {e}") from e
        try:
            os.makedirs(self.group, exist_ok=True)
            enabled = _read(self._file("cgroup.subtree_control", self.group)).split()
            if not all(c in enabled for c in self.required):
                _write(self._file("cgroup.subtree_control", self.group), " ".join(f"+{c}" for c in self.required))
        except OSError as e:
            raise CgroupUnavailable(f"cgroup v2: cannot set up {self.group}: {e}") from e

    def _move_processes_to_leaf(self) -> None:
        leaf = os.path.join(self.root, SERVICE_LEAF)
        os.makedirs(leaf, exist_ok=True)
        # Processes forked meanwhile by one not yet moved appear on the next pass.
        for _ in range(50):
            pids = _read(self._file("cgroup.procs")).split()
            if not pids:
                break
            for pid in pids:
                try:
                    _write(self._file("cgroup.procs", leaf), pid)
                except OSError as e:
                    if e.errno != errno.ESRCH:
                        raise CgroupUnavailable(f"cgroup v2: cannot move pid {pid} into {leaf}: {e}") from e
        self.moved_service = True

    def create_slot(self, index: int) -> SlotCgroupV2:
        cg = SlotCgroupV2.create(self.group, index, self.controllers)
        for name in [f"{c}.max" for c in self.required] + ["cgroup.procs", "cpu.stat"]:
            if not os.path.exists(cg._file(name)):
                raise CgroupUnavailable(f"cgroup v2: {cg._file(name)} is missing")
        return cg

    def describe(self, sample: SlotCgroup | None = None) -> dict:
        peak = "memory.peak"
        if isinstance(sample, SlotCgroupV2):
            if sample._peak_fd >= 0:
                peak += ", reset per run"
            elif os.path.exists(sample._file("memory.peak")):
                peak += (" is not resettable on this kernel (< 6.12): a run's peak is exact when it sets a new "
                         "high-water mark for its slot, else memory.current at the end (a lower bound)")
            else:
                peak = "no memory.peak (kernel < 5.19): memory.current at the end, a lower bound"
        ok, why = self.is_delegated()
        swap = isinstance(sample, SlotCgroupV2) and os.path.exists(sample._file("memory.swap.max"))
        return {
            "cgroup": "v2",
            "cgroup_root": self.group,
            "delegated_subtree": self.root + (f" ({why})" if ok else ""),
            "memory": "memory.max per session" + (", memory.swap.max=0" if swap else ""),
            "processes": "pids.max per session",
            "cpu_time": "cpu.stat usage_usec of the whole tree",
            "peak_memory": peak,
            "oom_detection": "memory.events oom_kill",
            "kill": "cgroup.kill" if isinstance(sample, SlotCgroupV2) and sample._kill else "SIGKILL per process",
        }


def _is_cgroup2(path: str) -> bool:
    try:
        for line in _read("/proc/self/mountinfo").splitlines():
            left, _, right = line.partition(" - ")
            if left.split()[4] == path and right.split()[0] == "cgroup2":
                return True
    except (OSError, IndexError):
        pass
    return False


def detect(root: str = CGROUP_ROOT) -> CgroupHierarchy:
    """The hierarchy that holds this process's memory and pids controllers, or CgroupUnavailable."""
    lines = _proc_cgroup_lines()
    v1 = {c for hid, controllers, _ in lines if hid != "0" for c in controllers}
    if "memory" in v1 and "pids" in v1:
        return CgroupV1(root)
    if _is_cgroup2(root) and any(hid == "0" for hid, _, _ in lines):
        return CgroupV2(root)
    have = ", ".join(sorted(v1)) or "none"
    raise CgroupUnavailable(f"no usable cgroups: v1 controllers here: {have}; no cgroup2 mount at {root}")
