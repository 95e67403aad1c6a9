"""Live bubblewrap sessions of the process sandbox, and the pool that reuses them.

A session is one ``bwrap`` with every namespace, no network, the read-only
view, its slot's host uid and cgroups, seccomp and a scrubbed environment,
whose PID 1 is the supervisor (``sandbox/inside/supervisor.py``, ``fds``
transport). Starting one costs ~15 ms (namespaces, mounts, an interpreter);
a run in a live one costs a fork (~1 ms) plus the program. With ``warm`` on
(the default) a session outlives its scored item: after the item the
supervisor kills everything else and wipes every writable area, and the
session goes back to this pool for the next item of this service process.

The pool retires a session (SIGKILL of its PID 1 takes everything in it, the
slot's cgroup is emptied, the slot released) when it is not provably clean,
after a cgroup limit hit, on a protocol error or a missed wall clock, after
``warm_runs`` runs, when idle for ``WARM_IDLE_S`` (idle sessions hold their
slot) and when more than ``warm_sessions`` are idle.
"""
from __future__ import annotations

import atexit
import logging
import os
import selectors
import signal
import socket
import subprocess
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sandbox import process_netns
from sandbox.fds_session import FdsSession, Hooks
from sandbox.process_slots import Slot, SlotPool

log = logging.getLogger(__name__)

SUPERVISOR_SOURCE = (Path(__file__).parent / "inside" / "supervisor.py").read_text()
WARM_IDLE_S = 60.0
START_TIMEOUT_S = 20.0


@dataclass(eq=False)
class Live:
    """One running bwrap session and the slot it holds."""

    slot: Slot
    key: int  # tmpfs size: part of the mount setup, so of the session
    sock: socket.socket | None = None
    outer_pid: int = 0
    outer_pidfd: int = -1
    inner_pid: int = 0
    inner_pidfd: int = -1
    runs: int = 0
    last_used: float = field(default_factory=time.monotonic)
    closed: bool = False
    reset_pending: bool = False  # a wipe was asked for; its answer is still to be read

    def alive(self) -> bool:
        if self.outer_pidfd < 0 or self.closed:
            return False
        with selectors.DefaultSelector() as sel:
            sel.register(self.outer_pidfd, selectors.EVENT_READ)
            return not sel.select(0)

    def pids(self) -> set[int]:
        return {p for p in (self.outer_pid, self.inner_pid) if p}

    def stop(self) -> None:
        """SIGKILL PID 1: everything in the session dies with it."""
        for fd in (self.inner_pidfd, self.outer_pidfd):
            if fd >= 0:
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                except (ProcessLookupError, OSError):
                    pass

    def forget(self) -> None:
        """In a forked child of the service: drop our copies of its descriptors, touch nothing else."""
        if self.closed:  # its descriptors are closed already; their numbers may be someone else's now
            return
        for fd in (self.outer_pidfd, self.inner_pidfd, self.slot.lock_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self.sock is not None:
            self.sock.detach()
        self.closed = True


# Host pids of every session's outer bwrap and PID 1 this process started and has not reaped yet.
# A session can end without its pool (a pool garbage-collected with idle sessions: their spawner
# thread goes, and --die-with-parent takes bwrap); we are a child subreaper, so both come to us, and
# an unreaped zombie keeps its slot's pids cgroup charged, which would refuse the next session there.
_UNREAPED: set[int] = set()
_UNREAPED_LOCK = threading.Lock()


def reap_orphans() -> None:
    """Reap whatever of our sessions' processes has exited (only those: never another child's status)."""
    with _UNREAPED_LOCK:
        pids = list(_UNREAPED)
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            try:
                os.kill(pid, 0)
                continue  # alive, not (yet) our child: its own parent reaps it
            except ProcessLookupError:
                done = pid  # gone: reaped elsewhere
            except PermissionError:
                continue
        if done:
            with _UNREAPED_LOCK:
                _UNREAPED.discard(pid)


class ProcessSession(FdsSession):
    """A scored item's session: given back to the pool (wiped) or destroyed on close."""

    def __init__(self, pool: "SessionPool", live: Live, env: dict, warm: bool) -> None:
        cg = live.slot.cgroup
        armed: list = [None]  # the (memory, pids) the slot's cgroup holds now

        def arm(mem: int, pids: int) -> None:
            # Tests of one item run under the same limits: write them once, reset counters per run.
            if armed[0] == (mem, pids):
                cg.rearm()
                return
            armed[0] = None
            cg.arm_run(mem, pids)
            armed[0] = (mem, pids)

        hooks = Hooks(kill=live.stop, alive=live.alive, arm=arm if cg is not None else None,
                      usage=cg.usage if cg is not None else None,
                      extra=lambda: self._extra(),
                      overhead_pids=2)  # the outer bwrap and the supervisor
        super().__init__(live.sock, "process", hooks, env)
        self.pool, self.live, self.warm = pool, live, warm
        self._closed = False

    def _extra(self) -> dict:
        extra: dict = {"slot": self.live.slot.index}
        if self.warm:
            extra.update(warm=True, session_run=self.live.runs + self.runs)
        if self.live.slot.cgroup is None:
            extra["measured"] = "no cgroups: peak memory is the run's own RSS, CPU time of its main process"
        return extra

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.live.runs += self.runs
        # The wipe runs while the caller goes on with its result; whoever takes the session next
        # reads its answer first (and gets another session if it was not clean).
        if self.wiped is not None:  # the last run carried the wipe
            keep, self.live.reset_pending = self.warm and not self.dead and not self.dirty and self.wiped, False
        else:
            keep = self.warm and not self.dead and not self.dirty and self.start_reset()
            self.live.reset_pending = keep
        self.pool.give_back(self.live, keep)


class SessionPool:
    """Live sessions of one service process; an idle one is handed to one item at a time."""

    def __init__(self, slots: Callable[[], SlotPool], command: Callable[[Slot, int, int, Callable], list[str]],
                 env: dict, python: str, *, warm: bool, warm_runs: int, warm_sessions: int, slot_timeout_s: float = 120.0) -> None:
        self._slots = slots
        self._command = command  # (slot, tmpfs bytes, info fd, memfd maker) -> argv up to the program
        self._env = env
        self._python = python
        self.warm, self.warm_runs, self.warm_sessions = warm, warm_runs, warm_sessions
        self.slot_timeout_s = slot_timeout_s
        self._lock = threading.Lock()
        self._idle: list[Live] = []
        self._all: "weakref.WeakSet[Live]" = weakref.WeakSet()
        self._spawner: ThreadPoolExecutor | None = None
        self._reaper: threading.Thread | None = None
        self._owner = os.getpid()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (p := ref()) and p._after_fork())

        # Sessions die with us anyway (--die-with-parent), but killed and reaped here they leave
        # no orphaned bwrap for a subreaper parent to collect.
        atexit.register(lambda: (p := ref()) and p._owner == os.getpid() and p.close())

    def _after_fork(self) -> None:
        for s in list(self._all):  # the parent's sessions and slot locks are the parent's
            s.forget()
        self._idle, self._all = [], weakref.WeakSet()
        self._spawner, self._reaper, self._lock = None, None, threading.Lock()
        self._owner = os.getpid()

    def pids(self) -> set[int]:
        with self._lock:
            return {p for s in self._all for p in s.pids()}

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for s in idle:
            self._destroy(s)

    def session(self, tmpfs_bytes: int, timeout_s: float | None = None) -> ProcessSession:
        while True:
            live = self._take(tmpfs_bytes, timeout_s)
            session = ProcessSession(self, live, self._env, self.warm)
            if not live.reset_pending:
                return session
            live.reset_pending = False
            if session.finish_reset():
                return session
            session._closed = True
            self._destroy(live)  # not provably clean after its last item: never reused

    # -- taking and giving back --------------------------------------------------------------

    def _take(self, key: int, timeout_s: float | None) -> Live:
        now = time.monotonic()
        stale, found = [], None
        with self._lock:
            keep = []
            for s in reversed(self._idle):  # most recently used first: its cache is warmest
                if found is None and s.key == key and s.alive():
                    found = s
                elif now - s.last_used > WARM_IDLE_S or not s.alive():
                    stale.append(s)
                else:
                    keep.append(s)
            keep.reverse()
            self._idle = keep
        for s in stale:
            self._destroy(s)
        if found is not None:
            return found
        reap_orphans()  # sessions that ended without their pool still charge their slot until reaped
        wait = self.slot_timeout_s if timeout_s is None else timeout_s
        failed: list[Slot] = []
        try:
            for attempt in range(3):
                slot = self._slots().acquire(timeout_s=wait)
                live = Live(slot, key)
                with self._lock:
                    self._all.add(live)
                try:
                    self._start(live)
                    return live
                except Exception as e:  # noqa: BLE001 - e.g. EAGAIN in a slot whose cgroup is still busy
                    log.warning("process sandbox: a session would not start in slot %d (%s); %s", slot.index, e,
                                "trying another slot" if attempt < 2 else "giving up")
                    self._destroy(live, release=False)
                    failed.append(slot)  # held until we are done, so the next try gets another slot
                    if attempt == 2:
                        raise
        finally:
            for slot in failed:
                self._slots().release(slot)
        raise RuntimeError("unreachable")

    def give_back(self, live: Live, keep: bool) -> None:
        live.last_used = time.monotonic()
        evicted: list[Live] = []
        with self._lock:
            keep = (keep and live.runs < self.warm_runs and self.warm_sessions > 0 and live.alive())
            if keep:
                self._idle.append(live)
                while len(self._idle) > self.warm_sessions:
                    evicted.append(self._idle.pop(0))  # least recently used
                self._start_reaper()
        if not keep:
            evicted.append(live)
        for s in evicted:
            self._destroy(s)

    def _destroy(self, s: Live, release: bool = True) -> None:
        if s.closed:
            return
        s.closed = True
        s.stop()
        if s.outer_pid:
            try:
                os.waitpid(s.outer_pid, 0)
            except ChildProcessError:
                pass
        if s.inner_pidfd >= 0:
            reap_pid1(s.inner_pid, s.inner_pidfd)
            os.close(s.inner_pidfd)
            s.inner_pidfd = -1
        if s.outer_pidfd >= 0:
            os.close(s.outer_pidfd)
            s.outer_pidfd = -1
        if s.sock is not None:
            s.sock.close()
        cg = s.slot.cgroup
        try:
            if cg is not None and not cg.kill_all():
                log.error("process sandbox: slot %d cgroup did not empty", s.slot.index)
        except OSError:  # another pool of this process removed the slot's cgroup meanwhile
            pass
        if release:
            self._slots().release(s.slot)
        reap_orphans()

    def _start_reaper(self) -> None:
        """Idle sessions hold slots other service processes may need: give them back after WARM_IDLE_S."""
        if self._reaper is not None and self._reaper.is_alive():
            return
        ref = weakref.ref(self)

        def reap() -> None:
            while True:
                time.sleep(WARM_IDLE_S / 4)
                pool = ref()
                if pool is None or pool._owner != os.getpid():
                    return
                now = time.monotonic()
                with pool._lock:
                    old = [s for s in pool._idle if now - s.last_used > WARM_IDLE_S]
                    pool._idle = [s for s in pool._idle if s not in old]
                    empty = not pool._idle
                for s in old:
                    pool._destroy(s)
                del pool
                if empty:
                    return

        self._reaper = threading.Thread(target=reap, name="sandbox-session-reaper", daemon=True)
        self._reaper.start()

    # -- starting a session -----------------------------------------------------------------

    def _start(self, s: Live) -> None:
        from sandbox.fds_session import memfd as make_memfd

        slot = s.slot
        host_sock, inner_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.sock = host_sock
        inner_fd = inner_sock.detach()  # a raw fd from here on: closed exactly once, below
        info_r, info_w = os.pipe()
        to_close = [info_r, info_w, inner_fd]
        pass_fds = [info_w, inner_fd]
        proc = None
        try:
            def memfd(data: bytes) -> int:
                fd = make_memfd(data)
                os.set_inheritable(fd, True)
                to_close.append(fd)
                pass_fds.append(fd)
                return fd

            args = self._command(slot, s.key, info_w, memfd) + [
                "--", self._python, "-I", "-c", SUPERVISOR_SOURCE,
                "fds", str(inner_fd), "/box"]
            cg = slot.cgroup
            if cg is not None:
                # A session of a service process that died may still be dying in here.
                if not cg.kill_all():
                    raise RuntimeError(f"slot {slot.index}'s cgroup did not empty")
                cg.prepare(64)  # the first run arms the run's own limit
            proc = self._spawn(slot, args, pass_fds)
            if cg is not None:
                cg.adopt(proc.pid)  # cgroup v2: bwrap and its PID 1 moved right after birth (v1: born inside)
            s.outer_pid = proc.pid
            with _UNREAPED_LOCK:
                _UNREAPED.add(proc.pid)
            proc.returncode = 0  # we reap it ourselves; keep Popen from touching the pid later
            s.outer_pidfd = os.pidfd_open(proc.pid)
            for fd in pass_fds:
                os.close(fd)
                to_close.remove(fd)
            deadline = time.monotonic() + START_TIMEOUT_S
            inner = read_child_pid(info_r, deadline)
            if inner is not None:
                s.inner_pid, s.inner_pidfd = inner, os.pidfd_open(inner)
                with _UNREAPED_LOCK:
                    _UNREAPED.add(inner)
            ready = _recv(host_sock, deadline) if inner is not None else None
            if ready is None or ready.get("event") != "ready":
                err = b""
                if proc.stderr is not None:
                    os.set_blocking(proc.stderr.fileno(), False)
                    try:
                        err = proc.stderr.read(2000) or b""
                    except OSError:
                        pass
                raise RuntimeError("sandbox session did not start: " + err.decode(errors="replace"))
        finally:
            for fd in to_close:
                try:
                    os.close(fd)
                except OSError:
                    pass
            if proc is not None and proc.stderr is not None:
                proc.stderr.close()

    def _spawn(self, slot: Slot, args: list[str], pass_fds: list[int]):
        """Fork bwrap from one long-lived thread: ``--die-with-parent`` follows the forking *thread*."""
        env = dict(self._env)

        def spawn():
            with ExitStack() as inside:
                if slot.cgroup is not None:
                    inside.enter_context(slot.cgroup.entered())
                if slot.netns_fd is not None:
                    inside.enter_context(process_netns.entered(slot.netns_fd))
                uid = slot.uid
                return subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    pass_fds=pass_fds, cwd="/", env=env, close_fds=True, start_new_session=True,
                    user=uid, group=uid, extra_groups=[] if uid is not None else None)

        with self._lock:
            if self._spawner is None:
                self._spawner = ThreadPoolExecutor(1, thread_name_prefix="sandbox-spawner")
            spawner = self._spawner
        return spawner.submit(spawn).result()


def _recv(sock: socket.socket, deadline: float) -> dict | None:
    import json
    with selectors.DefaultSelector() as sel:
        sel.register(sock.fileno(), selectors.EVENT_READ)
        if not sel.select(max(0.0, deadline - time.monotonic())):
            return None
    try:
        msg = sock.recv(1 << 16)
        return json.loads(msg) if msg else None
    except (OSError, ValueError):
        return None


def read_child_pid(info_r: int, deadline: float) -> int | None:
    """bwrap's --info-fd document names the session's PID 1 (as a host pid)."""
    import json
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
            try:  # read only until the document is complete: PID 1 still holds this pipe open
                return int(json.loads(data)["child-pid"])
            except ValueError:
                continue
            except (KeyError, TypeError):
                return None
    finally:
        sel.close()
    return None


def reap_pid1(pid: int, pidfd: int) -> None:
    """Reap the session's PID 1 if it was orphaned to us (we are a child subreaper), so its
    zombie doesn't count against the slot's process limits."""
    with selectors.DefaultSelector() as sel:
        sel.register(pidfd, selectors.EVENT_READ)
        if not sel.select(1.0):
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except OSError:
                pass
            sel.select(1.0)
    try:
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
    except (ChildProcessError, OSError):
        pass
