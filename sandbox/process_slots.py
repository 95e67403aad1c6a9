"""Slots for the process sandbox: one host uid and one pair of cgroups per concurrent run.

A slot is claimed with an exclusive ``flock`` on a lock file shared by every
worker process of the service, so a slot (and its uid) is never used by two
runs at once.  A per-slot uid makes ``RLIMIT_NPROC`` count one sandbox only
and keeps the program off root even when the service runs as root.  Per-slot
cgroups (v1 ``memory`` and ``pids``) are created once and reused: creating a
cgroup per run would cost more than the run's whole isolation overhead.
"""
from __future__ import annotations

import errno
import fcntl
import os
import random
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from sandbox.process_netns import new_netns

CGROUP_ROOT = "/sys/fs/cgroup"
_GROUP_NAME = "reward-sandbox"
_STALE_CACHE_BYTES = 64 << 20


class CgroupUnavailable(RuntimeError):
    pass


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _own_cgroup(controller: str) -> str:
    """This process's cgroup path in a v1 hierarchy, relative to the mount."""
    for line in _read("/proc/self/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    raise CgroupUnavailable(f"this process is in no v1 {controller!r} cgroup")


class SlotCgroup:
    """v1 memory, pids (and cpuacct) cgroups for one slot, nested under the service's own cgroups.

    Nesting (rather than creating cgroups at the root) keeps sandboxes inside
    whatever limits the service itself runs under.
    """

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
    def create(cls, index: int) -> "SlotCgroup":
        dirs: dict[str, str] = {}
        homes: dict[str, str] = {}
        for controller in ("memory", "pids", "cpuacct"):
            optional = controller == "cpuacct"
            try:
                home = os.path.join(CGROUP_ROOT, controller) + _own_cgroup(controller)
                path = os.path.join(home, _GROUP_NAME, f"slot-{index}")
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

    def _dir(self, controller: str) -> str:
        return {"memory": self.memory_dir, "pids": self.pids_dir, "cpuacct": self.cpuacct_dir}[controller]

    def restart_counters(self) -> None:
        _write(os.path.join(self.memory_dir, "memory.max_usage_in_bytes"), "0")
        # Page cache charged by earlier runs stays here (reclaimable); the peak is measured above it.
        self._baseline = self._usage()
        if self.cpuacct_dir:
            _write(os.path.join(self.cpuacct_dir, "cpuacct.usage"), "0")

    def arm(self, memory_bytes: int) -> None:
        """Limits and counters for the run, set after the spawning thread has left."""
        self.limit_memory(memory_bytes)
        self.restart_counters()

    def arm_run(self, memory_bytes: int, max_pids: int) -> None:
        """Limits and counters for one run of a warm session (already inside the cgroup)."""
        _write(os.path.join(self.pids_dir, "pids.max"), str(max_pids))
        self.limit_memory(memory_bytes)  # EBUSY if what is charged can't be reclaimed below it
        self._oom_before = self.oom_kills()
        self._pids_before = self.pids_refused()
        self.restart_counters()

    def pids_refused_since_arm(self) -> int:
        return self.pids_refused() - self._pids_before

    def usage(self) -> tuple[float, float | None, bool, int]:
        """What the run did here: (peak MiB, CPU seconds of the whole tree or None,
        OOM-killed, forks refused), counted from when the run was prepared or armed."""
        return (self.peak_bytes() / (1 << 20), self.cpu_seconds(), self.oom_killed(),
                self.pids_refused_since_arm())

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

    def oom_killed(self) -> bool:
        return self.oom_kills() > self._oom_before

    def pids_refused(self) -> int:
        try:
            return int(_read(os.path.join(self.pids_dir, "pids.events")).split()[1])
        except (OSError, IndexError, ValueError):
            return 0

    def peak_bytes(self) -> int:
        return max(0, int(_read(os.path.join(self.memory_dir, "memory.max_usage_in_bytes"))) - self._baseline)

    def _usage(self) -> int:
        return int(_read(os.path.join(self.memory_dir, "memory.usage_in_bytes")))

    def kill_all(self, timeout_s: float = 2.0) -> bool:
        """SIGKILL whatever is still in the slot; True once it is empty."""
        deadline = time.monotonic() + timeout_s
        while True:
            pids = {int(p) for d in self.dirs for p in _read(os.path.join(d, "cgroup.procs")).split()}
            if not pids:
                return True
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)

    def reset(self) -> None:
        # Reclaiming after every run would evict the interpreter's own files from the page
        # cache (they are charged to whichever slot read them first): only when a lot piled up.
        try:
            if self._usage() > _STALE_CACHE_BYTES:
                _write(os.path.join(self.memory_dir, "memory.force_empty"), "0")
        except OSError:
            pass

    def remove(self) -> None:
        for path in self.dirs:
            try:
                os.rmdir(path)
            except OSError:
                pass


@dataclass
class Slot:
    index: int
    uid: int | None  # None: run as the service's own uid (it is not root)
    cgroup: SlotCgroup | None
    netns_fd: int | None  # a reused empty network namespace; None: bwrap makes a fresh one
    lock_fd: int


class SlotPool:
    """Hands out slots across threads and processes; ``release`` must follow every ``acquire``."""

    def __init__(self, state_dir: str, count: int, uid_base: int | None, use_cgroups: bool,
                 reuse_netns: bool = False) -> None:
        self.state_dir = state_dir
        self.count = count
        self.uid_base = uid_base
        self.cgroup_error: str | None = None
        self._cgroups: dict[int, SlotCgroup] = {}
        self._netns: dict[int, int] = {}
        self._netns_lock = threading.Lock()
        self.netns_error: str | None = None
        self.reuse_netns = reuse_netns
        os.makedirs(os.path.join(state_dir, "slots"), mode=0o700, exist_ok=True)
        self.use_cgroups = use_cgroups
        if use_cgroups:
            try:
                self._probe_cgroups()
            except (CgroupUnavailable, OSError) as e:
                self.use_cgroups = False
                self.cgroup_error = str(e)

    def _probe_cgroups(self) -> None:
        for controller, probe in (("memory", "memory.limit_in_bytes"), ("pids", "pids.max")):
            parent = os.path.join(CGROUP_ROOT, controller) + _own_cgroup(controller)
            if not os.path.isdir(parent):
                raise CgroupUnavailable(f"no cgroup v1 {controller} hierarchy at {parent}")
        slot = self.acquire(timeout_s=5.0)
        try:
            if slot.cgroup is None:
                raise CgroupUnavailable(self.cgroup_error or "cgroup setup failed")
            if not os.path.exists(os.path.join(slot.cgroup.pids_dir, "pids.max")):
                raise CgroupUnavailable("the pids controller has no pids.max")
        finally:
            self.release(slot)

    def acquire(self, timeout_s: float = 120.0) -> Slot:
        deadline = time.monotonic() + timeout_s
        start = random.randrange(self.count)
        while True:
            for k in range(self.count):
                index = (start + k) % self.count
                fd = os.open(self._lock_path(index), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                try:
                    return Slot(index=index, uid=self._uid(index), cgroup=self._cgroup(index), lock_fd=fd,
                                netns_fd=self._slot_netns(index))
                except BaseException:
                    os.close(fd)  # a leaked descriptor would hold the slot's lock forever
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"all {self.count} sandbox slots stayed busy for {timeout_s:.0f}s")
            time.sleep(0.01)

    def _lock_path(self, index: int) -> str:
        return os.path.join(self.state_dir, "slots", f"slot-{index}.lock")

    def _uid(self, index: int) -> int | None:
        return None if self.uid_base is None else self.uid_base + index

    def _cgroup(self, index: int) -> SlotCgroup | None:
        if not self.use_cgroups:
            return None
        cg = self._cgroups.get(index)
        if cg is None or not all(os.path.isdir(d) for d in cg.dirs):
            try:
                cg = SlotCgroup.create(index)
            except (CgroupUnavailable, OSError) as e:
                self.cgroup_error = str(e)
                return None
            self._cgroups[index] = cg
        return cg

    def _slot_netns(self, index: int) -> int | None:
        if not self.reuse_netns:
            return None
        with self._netns_lock:
            if index not in self._netns:
                try:
                    self._netns[index] = new_netns()
                except OSError as e:
                    self.reuse_netns, self.netns_error = False, str(e)
                    return None
            return self._netns[index]

    def release(self, slot: Slot) -> None:
        os.close(slot.lock_fd)  # closing the only descriptor drops the flock

    def close(self) -> None:
        """Remove idle slot cgroups this process created; busy ones belong to another run."""
        for index, cg in list(self._cgroups.items()):
            fd = os.open(self._lock_path(index), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                cg.remove()
            except BlockingIOError:
                pass
            finally:
                os.close(fd)
        self._cgroups.clear()
        with self._netns_lock:
            for fd in self._netns.values():
                os.close(fd)
            self._netns.clear()
