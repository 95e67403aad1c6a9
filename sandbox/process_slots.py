"""Slots for the process sandbox: one host uid, one cgroup and one network namespace per concurrent run.

A slot is claimed with an exclusive ``flock`` on a lock file shared by every
worker process of the service, so a slot (and its uid) is never used by two
runs at once.  A per-slot uid makes ``RLIMIT_NPROC`` count one sandbox only
and keeps the program off root even when the service runs as root.  Per-slot
cgroups (``sandbox.process_cgroup``: v1 or v2, whichever the host has) are
created once and reused: creating a cgroup per run would cost more than the
run's whole isolation overhead.

The number of slots follows demand: ``acquire`` takes the lowest free index
and, when every existing slot is busy, the next one (a new lock file, uid
``uid_base + index``, cgroup and network namespace, all made lazily). Idle warm
sessions of one scoring process therefore never starve another; only the sanity
maximum ``count`` (``REWARD_SERVICE_SANDBOX_SLOTS``) makes ``acquire`` wait, and
never longer than the ``timeout_s`` the caller passes (the item's own limit).
"""
from __future__ import annotations

import fcntl
import os
import threading
import time
from dataclasses import dataclass

from sandbox.process_cgroup import (CGROUP_ROOT, CgroupHierarchy, CgroupNotEntered, CgroupUnavailable,  # noqa: F401
                                    CgroupV1, CgroupV2, SlotCgroup, SlotCgroupV1, SlotCgroupV2, detect)
from sandbox.process_netns import new_netns

MAX_UID = 0xFFFFFFFE  # (uid_t)-1 is "no change" to setuid()


@dataclass
class Slot:
    index: int
    uid: int | None  # None: run as the service's own uid (it is not root)
    cgroup: SlotCgroup | None
    netns_fd: int | None  # a reused empty network namespace; None: bwrap makes a fresh one
    lock_fd: int


class SlotUnavailable(OSError):
    """A slot's cgroup (or another per-slot resource in force) could not be set up: the run must not go ahead."""


class SlotPool:
    """Hands out slots across threads and processes; ``release`` must follow every ``acquire``.

    ``count`` is a sanity maximum, not a size: slots are made as concurrent runs need them.
    """

    def __init__(self, state_dir: str, count: int, uid_base: int | None, use_cgroups: bool,
                 reuse_netns: bool = False, hierarchy: CgroupHierarchy | None = None) -> None:
        if count < 1:
            raise ValueError(f"the slot maximum must be at least 1, not {count}")
        if uid_base is not None and not 0 < uid_base <= MAX_UID - count:
            raise ValueError(f"per-slot uids {uid_base}..{uid_base + count - 1} leave the uid range")
        self.state_dir = state_dir
        self.count = count
        self.uid_base = uid_base
        self.cgroup_error: str | None = None
        self.hierarchy: CgroupHierarchy | None = None
        self._cgroups: dict[int, SlotCgroup] = {}
        self._held: set[int] = set()  # indices this process holds: skipped without a syscall
        self._held_lock = threading.Lock()
        self._netns: dict[int, int] = {}
        self._netns_lock = threading.Lock()
        self.netns_error: str | None = None
        self.reuse_netns = reuse_netns
        self._owner = os.getpid()
        os.makedirs(os.path.join(state_dir, "slots"), mode=0o700, exist_ok=True)
        self.use_cgroups = use_cgroups
        if use_cgroups:
            try:
                self.hierarchy = hierarchy or detect()
                self.hierarchy.setup()
                self._probe_cgroups()
            except (CgroupUnavailable, OSError) as e:
                self.use_cgroups = False
                self.cgroup_error = str(e)

    def _probe_cgroups(self) -> None:
        slot = self.acquire(timeout_s=5.0)
        self.release(slot)

    # -- claiming -----------------------------------------------------------------------------

    def acquire(self, timeout_s: float = 120.0) -> Slot:
        """The lowest free slot, a new one if all are busy; waits only at the maximum, up to ``timeout_s``."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        self._check_owner()
        pause = 0.002
        while True:
            for index in range(self.count):
                with self._held_lock:
                    if index in self._held:
                        continue
                fd = os.open(self._lock_path(index), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                with self._held_lock:
                    self._held.add(index)
                try:
                    return Slot(index=index, uid=self._uid(index), cgroup=self._cgroup(index), lock_fd=fd,
                                netns_fd=self._slot_netns(index))
                except BaseException:
                    self._forget(index)
                    os.close(fd)  # a leaked descriptor would hold the slot's lock forever
                    raise
            if time.monotonic() >= deadline:
                raise TimeoutError(f"all {self.count} sandbox slots (REWARD_SERVICE_SANDBOX_SLOTS) stayed busy "
                                   f"for {timeout_s:g}s")
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.05)

    def release(self, slot: Slot) -> None:
        self._forget(slot.index)
        os.close(slot.lock_fd)  # closing the only descriptor drops the flock

    def _forget(self, index: int) -> None:
        with self._held_lock:
            self._held.discard(index)

    def _check_owner(self) -> None:
        # A forked child holds none of its parent's slots (their lock fds are the parent's).
        if self._owner != os.getpid():
            with self._held_lock:
                self._held.clear()
            self._owner = os.getpid()

    def _lock_path(self, index: int) -> str:
        return os.path.join(self.state_dir, "slots", f"slot-{index}.lock")

    def _uid(self, index: int) -> int | None:
        return None if self.uid_base is None else self.uid_base + index

    def _cgroup(self, index: int) -> SlotCgroup | None:
        if not self.use_cgroups or self.hierarchy is None:
            return None
        cg = self._cgroups.get(index)
        if cg is None or not all(os.path.isdir(d) for d in cg.dirs):
            try:
                cg = self.hierarchy.create_slot(index)
            except (CgroupUnavailable, OSError) as e:
                # Cgroups are in force: a slot without one would run unconfined, so no run here.
                self.cgroup_error = f"slot {index}: {e}"
                raise SlotUnavailable(f"cannot set up slot {index}'s cgroup: {e}") from e
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

    # -- reporting ------------------------------------------------------------------------------

    def slots_made(self) -> int:
        """Slot lock files on this machine: the most runs that were ever in flight at once (roughly)."""
        try:
            return sum(1 for n in os.listdir(os.path.join(self.state_dir, "slots")) if n.endswith(".lock"))
        except OSError:
            return 0

    def cgroup_summary(self) -> str:
        """One line for logs and ``isolation()``: the cgroup version and controllers, or why none."""
        if self.use_cgroups and self.hierarchy is not None:
            d = self.hierarchy.describe(next(iter(self._cgroups.values()), None))
            return f"{d['cgroup']} memory+pids+cpu under {d['cgroup_root']}"
        return f"off ({self.cgroup_error or 'disabled or not root'})"

    def limits_in_force(self) -> dict:
        """Which limits runs get here and how, for /readyz and the start-up log: never a silent fallback."""
        out: dict = {
            "slots": {"max": self.count, "made": self.slots_made(), "grow": "on demand"},
            "uid": (f"per slot: {self.uid_base} + slot index" if self.uid_base is not None
                    else "the service's own uid (not root)"),
            "netns": ("per slot, reused, loopback down" if self.reuse_netns
                      else f"fresh per run ({self.netns_error or 'disabled or not root'})"),
        }
        if self.use_cgroups and self.hierarchy is not None:
            out.update(self.hierarchy.describe(next(iter(self._cgroups.values()), None)))
        else:
            out.update({
                "cgroup": "off",
                "reason": self.cgroup_error or "disabled (REWARD_SERVICE_SANDBOX_CGROUPS=off) or not root",
                "memory": "RLIMIT_AS per process only: no cap on a session's processes together",
                "processes": "RLIMIT_NPROC only",
                "cpu_time": "the main process's, best effort",
                "peak_memory": "unmeasured (reported as 0)",
            })
        return out

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
