"""Warm sessions for the process sandbox: one long-lived bwrap session per slot serves many python runs.

A cold run pays for bwrap's namespaces and mounts, the cgroup setup and a
fresh interpreter start (~18 ms) before the program does anything. A warm
session pays that once: its only program is the trusted supervisor
(``sandbox/_docker_runner.py``, the docker backend's PID 1, in its ``warm``
mode), started by bubblewrap as PID 1 (``--as-pid-1``) of a session with the
same isolation as a cold run: every namespace, no network, the read-only
view, the slot's own host uid and cgroups, seccomp, a scrubbed environment.
A ``run("python", ...)`` is one request on a SOCK_SEQPACKET socket carrying
the run's stdin/stdout/stderr pipes and memfds of its files (SCM_RIGHTS), so
program data never passes through the supervisor's memory. The supervisor
forks; the child starts a new session, resets signals, copies the files into
the empty ``/box``, closes every other descriptor, lowers its rlimits to the
run's, makes itself the OOM killer's first choice and executes the source as
``__main__`` in the already-warm interpreter (no exec: a fork costs ~1 ms).

Between runs the supervisor kills every other process in the pid namespace
(``kill(-1)`` until /proc shows only itself), wipes /box, /tmp and /dev/shm
and SysV IPC, and reports whether that left the session clean. Being PID 1
of the namespace and not dumpable, the programs it runs can neither kill,
stop nor signal it, nor ptrace it or read its memory or descriptors.
The host retires a session (kills it and its slot's cgroup, next run gets a
fresh one) when it is not clean, after a memory (OOM) or pids limit hit, on a
timeout or output limit (it kills the whole session to enforce them), on any
protocol error, after ``warm_runs`` runs or when idle for ``WARM_IDLE_S``.

Semantics that differ from a cold run (python only; C++ runs stay cold):
the program runs in a fork of an interpreter that already imported
``WARM_PRELOAD`` (so those are in ``sys.modules`` and the string hash seed is
the session's, shared by its runs); ``sys.flags`` and ``sys.path`` are those
of ``python3 -I``; shutdown (thread join, atexit, flush) is emulated; the
``cpu_time_s`` limit and CPU accounting start at the fork.
"""
from __future__ import annotations

import atexit
import json
import logging
import math
import os
import selectors
import signal
import socket
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox import process_netns
from sandbox.process_slots import Slot
from sandbox.types import Limits, RunResult, RunStatus

if TYPE_CHECKING:
    from sandbox.process import ProcessSandbox

log = logging.getLogger(__name__)

SUPERVISOR_SOURCE = (Path(__file__).parent / "_docker_runner.py").read_text()
WARM_IDLE_S = 60.0
START_TIMEOUT_S = 20.0
CLEANUP_TIMEOUT_S = 3.0  # from the program's exit to the supervisor's "clean"
_READ_CHUNK = 1 << 16
_MEMORY_PATTERNS = (b"MemoryError", b"Cannot allocate memory", b"out of memory")


class StaleSession(RuntimeError):
    """The session can't take this run (dead, or its cgroup can't be armed); nothing ran."""


class WarmSession:
    def __init__(self, slot: Slot, key: int) -> None:
        self.slot = slot
        self.key = key  # tmpfs size: part of the mount setup, so of the session
        self.runs = 0
        self.last_used = time.monotonic()
        self.retire = False
        self.sock: socket.socket | None = None
        self.outer_pid = 0
        self.outer_pidfd = -1
        self.inner_pid = 0
        self.inner_pidfd = -1
        self._closed = False

    def alive(self) -> bool:
        if self.outer_pidfd < 0:
            return False
        with selectors.DefaultSelector() as sel:
            sel.register(self.outer_pidfd, selectors.EVENT_READ)
            return not sel.select(0)

    def pids(self) -> set[int]:
        return {p for p in (self.outer_pid, self.inner_pid) if p}

    def forget(self) -> None:
        """In a forked child of the service: drop our copies of its descriptors, touch nothing else."""
        for fd in (self.outer_pidfd, self.inner_pidfd, self.slot.lock_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self.sock is not None:
            self.sock.detach()
        self._closed = True

    def stop(self) -> None:
        """SIGKILL the session's PID 1 (everything in it dies) and wait briefly for that; slot kept."""
        if self.inner_pidfd >= 0:
            try:
                signal.pidfd_send_signal(self.inner_pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            with selectors.DefaultSelector() as sel:
                sel.register(self.inner_pidfd, selectors.EVENT_READ)
                sel.select(1.0)

    def kill(self, sandbox: "ProcessSandbox") -> None:
        if self._closed:
            return
        self._closed = True
        if self.inner_pidfd >= 0:
            try:
                signal.pidfd_send_signal(self.inner_pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.outer_pid:
            try:
                os.kill(self.outer_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(self.outer_pid, 0)
            except ChildProcessError:
                pass
        if self.inner_pidfd >= 0:
            sandbox._reap_pid1(self.inner_pid, self.inner_pidfd)
            os.close(self.inner_pidfd)
        if self.outer_pidfd >= 0:
            os.close(self.outer_pidfd)
        if self.sock is not None:
            self.sock.close()
        cg = self.slot.cgroup
        if cg is not None and not cg.kill_all():
            log.error("process sandbox: slot %d cgroup did not empty", self.slot.index)
        sandbox.pool.release(self.slot)


class WarmPool:
    """Idle warm sessions of one service process, handed to one run at a time."""

    def __init__(self, sandbox: "ProcessSandbox") -> None:
        self._sandbox = sandbox
        self._lock = threading.Lock()
        self._idle: list[WarmSession] = []
        self._all: "weakref.WeakSet[WarmSession]" = weakref.WeakSet()
        self._busy: set[WarmSession] = set()
        self._spawner: ThreadPoolExecutor | None = None
        self._reaper: threading.Thread | None = None
        self._owner = os.getpid()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (p := ref()) and p._after_fork())
        # Sessions die with us anyway (--die-with-parent), but killed and reaped here they leave
        # no orphaned bwrap for a subreaper parent to collect.
        atexit.register(lambda: (p := ref()) and p._owner == os.getpid() and p.close())

    def _after_fork(self) -> None:
        # The slot locks of sessions we inherited belong to the parent's sessions.
        for s in list(self._all):
            s.forget()
        self._idle, self._busy, self._all = [], set(), weakref.WeakSet()
        self._spawner, self._reaper, self._lock = None, None, threading.Lock()
        self._owner = os.getpid()

    def pids(self) -> set[int]:
        with self._lock:
            return {p for s in self._all for p in s.pids()}

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for s in idle:
            s.kill(self._sandbox)

    # -- one run ----------------------------------------------------------------------------

    def run(self, files: dict[str, bytes], stdin: bytes, limits: Limits, argv: list[str],
            tmpfs_bytes: int) -> RunResult | None:
        """The run's result; None when even a fresh session can't take it (e.g. ``memory_mb``
        below what the supervisor itself uses): the caller runs it cold."""
        for _ in range(3):
            try:
                session = self._take(tmpfs_bytes, limits.wall_time_s)
            except (OSError, TimeoutError) as e:
                return RunResult(RunStatus.sandbox_error, detail=f"no sandbox slot: {e}")
            except RuntimeError as e:
                return RunResult(RunStatus.sandbox_error, detail=str(e))
            try:
                result = self._run(session, files, stdin, limits, argv)
            except StaleSession:
                session.retire = True
                if session.runs == 0 and session.alive():
                    return None
                continue
            except Exception as e:  # noqa: BLE001 - a broken sandbox must not look like a broken program
                log.exception("process sandbox: warm run failed")
                session.retire = True
                return RunResult(RunStatus.sandbox_error, detail=f"sandbox failure: {type(e).__name__}: {e}")
            finally:
                self._give_back(session)
            return result
        return RunResult(RunStatus.sandbox_error, detail="no warm sandbox session would start")

    def _take(self, key: int, timeout_s: float = 120.0) -> WarmSession:
        now = time.monotonic()
        stale: list[WarmSession] = []
        found = None
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
            if found is not None:
                self._busy.add(found)
        for s in stale:
            s.kill(self._sandbox)
        if found is not None:
            return found
        slot = self._sandbox.pool.acquire(timeout_s=timeout_s)
        session = WarmSession(slot, key)
        with self._lock:
            self._all.add(session)
            self._busy.add(session)
        try:
            self._start(session)
        except BaseException:
            with self._lock:
                self._busy.discard(session)
            session.kill(self._sandbox)
            raise
        return session

    def _give_back(self, session: WarmSession) -> None:
        session.last_used = time.monotonic()
        cfg = self._sandbox.config
        evicted: list[WarmSession] = []
        with self._lock:
            self._busy.discard(session)
            keep = (not session.retire and session.runs < cfg.warm_runs and cfg.warm_sessions > 0
                    and session.alive())
            if keep:
                self._idle.append(session)
                while len(self._idle) > cfg.warm_sessions:
                    evicted.append(self._idle.pop(0))  # least recently used
                self._start_reaper()
        if not keep:
            evicted.append(session)
        for s in evicted:
            s.kill(self._sandbox)

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
                    s.kill(pool._sandbox)
                del pool
                if empty:
                    return

        self._reaper = threading.Thread(target=reap, name="sandbox-warm-reaper", daemon=True)
        self._reaper.start()

    # -- starting a session -----------------------------------------------------------------

    def _start(self, s: WarmSession) -> None:
        sb, cfg, slot = self._sandbox, self._sandbox.config, s.slot
        host_sock, inner_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.sock = host_sock
        inner_fd = inner_sock.detach()  # a raw fd from here on: closed exactly once, below
        info_r, info_w = os.pipe()
        to_close = [info_r, info_w, inner_fd]
        pass_fds = [info_w, inner_fd]
        proc = None
        try:
            from sandbox.process import _memfd

            def memfd(data: bytes) -> int:
                fd = _memfd(data, inheritable=True)
                to_close.append(fd)
                pass_fds.append(fd)
                return fd

            # Session-wide rlimits only where no run needs more; each run lowers its own.
            args = [cfg.prlimit, f"--nofile={256}", "--core=0", "--memlock=0", "--msgqueue=0", "--",
                    *sb._bwrap_args(slot, s.key, info_w, memfd), "--as-pid-1", "--remount-ro", "/",
                    "--", cfg.python, "-I", "-c", SUPERVISOR_SOURCE, "warm", str(inner_fd)]
            cg = slot.cgroup
            if cg is not None:
                # A session of a service process that died may still be dying in here.
                if not cg.kill_all():
                    raise RuntimeError(f"slot {slot.index}'s cgroup did not empty")
                cg.prepare(8)
            proc = self._spawn(slot, args, pass_fds)
            if cg is not None:
                cg.adopt(proc.pid)  # cgroup v2: moved right after birth (v1: a no-op)
            s.outer_pid = proc.pid
            proc.returncode = 0  # we reap it ourselves; keep Popen from touching the pid later
            s.outer_pidfd = os.pidfd_open(proc.pid)
            for fd in pass_fds:
                os.close(fd)
                to_close.remove(fd)
            deadline = time.monotonic() + START_TIMEOUT_S
            inner = sb._read_child_pid(info_r, deadline)
            if inner is not None:
                s.inner_pid, s.inner_pidfd = inner, os.pidfd_open(inner)
            ready = _recv(host_sock, deadline) if inner is not None else None
            if ready is None or ready.get("event") != "ready":
                err = b""
                if proc.stderr is not None:
                    os.set_blocking(proc.stderr.fileno(), False)
                    try:
                        err = proc.stderr.read(2000) or b""
                    except OSError:
                        pass
                raise RuntimeError("warm sandbox session did not start: " + err.decode(errors="replace"))
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
        import subprocess

        from sandbox.process import SANDBOX_ENV

        def spawn():
            with ExitStack() as inside:
                if slot.cgroup is not None:
                    inside.enter_context(slot.cgroup.entered())
                if slot.netns_fd is not None:
                    inside.enter_context(process_netns.entered(slot.netns_fd))
                uid = slot.uid
                return subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    pass_fds=pass_fds, cwd="/", env=dict(SANDBOX_ENV), close_fds=True, start_new_session=True,
                    user=uid, group=uid, extra_groups=[] if uid is not None else None)

        with self._lock:
            if self._spawner is None:
                self._spawner = ThreadPoolExecutor(1, thread_name_prefix="sandbox-spawner")
            spawner = self._spawner
        return spawner.submit(spawn).result()

    # -- running ----------------------------------------------------------------------------

    def _run(self, s: WarmSession, files: dict[str, bytes], stdin: bytes, limits: Limits,
             argv: list[str]) -> RunResult:
        from sandbox.process import MAX_NOFILE, SANDBOX_ENV, _memfd

        if not s.alive() or s.sock is None:
            raise StaleSession()
        cg = s.slot.cgroup
        if cg is not None:
            try:
                # The session's two bwrap-side processes (outer bwrap, supervisor) count too.
                cg.arm_run(limits.memory_mb << 20, limits.max_processes + 2)
            except OSError as e:
                raise StaleSession() from e
        fds: list[int] = []
        ours: list[int] = []
        try:
            in_r, in_w = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            fds += [in_r, out_w, err_w]
            ours += [in_w, out_r, err_r]
            names = list(files)
            for name in names:
                fds.append(_memfd(files[name]))
            req = {"files": names, "argv": argv, "env": SANDBOX_ENV,
                   "limits": {"cpu_time_s": limits.cpu_time_s, "memory_mb": limits.memory_mb,
                              "file_size_mb": limits.file_size_mb,
                              # Counted in the session's user namespace: the supervisor and the run's.
                              "nproc": limits.max_processes + 1,
                              "nofile": MAX_NOFILE}}
            t0 = time.monotonic()
            try:
                socket.send_fds(s.sock, [json.dumps(req).encode()], fds)
            except OSError as e:
                raise StaleSession() from e
            s.runs += 1
            for fd in fds:
                os.close(fd)
            fds = []
            return self._pump(s, ours, stdin, limits, t0)
        finally:
            for fd in fds + ours:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _pump(self, s: WarmSession, ours: list[int], stdin: bytes, limits: Limits, t0: float) -> RunResult:
        """``ours``: our ends (stdin, stdout, stderr); whatever we close here leaves the list."""
        in_w, out_r, err_r = ours
        out, err = bytearray(), bytearray()
        sinks = {out_r: out, err_r: err}
        sel = selectors.DefaultSelector()
        for fd in sinks:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        sock_fd = s.sock.fileno()
        sel.register(sock_fd, selectors.EVENT_READ)
        sel.register(s.outer_pidfd, selectors.EVENT_READ)
        pending = memoryview(stdin)
        if pending:
            os.set_blocking(in_w, False)
            sel.register(in_w, selectors.EVENT_WRITE)
        else:
            ours.remove(in_w)
            os.close(in_w)
        exited: dict | None = None
        exited_at = 0.0
        clean: bool | None = None
        killed_for: str | None = None
        deadline = t0 + limits.wall_time_s
        try:
            while killed_for is None:
                now = time.monotonic()
                if exited is None and now >= deadline:
                    killed_for = "timeout"
                    break
                if clean is not None and not sinks:
                    break
                if exited is not None and now > exited_at + CLEANUP_TIMEOUT_S:
                    killed_for = "cleanup"
                    break
                limit = deadline if exited is None else exited_at + CLEANUP_TIMEOUT_S
                for key, _ in sel.select(max(0.0, limit - now)):
                    fd = key.fd
                    if fd == sock_fd:
                        try:
                            msg = s.sock.recv(1 << 16)
                            m = json.loads(msg) if msg else None
                        except (OSError, ValueError):
                            m = None
                        if not isinstance(m, dict):
                            killed_for = "died"
                            break
                        if m.get("event") == "exited":
                            if "error" in m:
                                raise RuntimeError("supervisor: " + str(m["error"]))
                            exited, exited_at = m, time.monotonic()
                        elif m.get("event") == "clean":
                            clean = bool(m.get("clean"))
                            sel.unregister(sock_fd)
                    elif fd == s.outer_pidfd:
                        killed_for = "died"
                        break
                    elif fd == in_w:
                        try:
                            pending = pending[os.write(in_w, pending[:_READ_CHUNK]):]
                        except BlockingIOError:
                            pass
                        except BrokenPipeError:
                            pending = pending[:0]
                        if not pending:
                            sel.unregister(in_w)
                            ours.remove(in_w)
                            os.close(in_w)
                    else:
                        buf = sinks[fd]
                        try:
                            chunk = os.read(fd, _READ_CHUNK)
                        except BlockingIOError:
                            continue
                        if not chunk:
                            sel.unregister(fd)
                            del sinks[fd]
                            continue
                        room = limits.output_bytes - len(buf)
                        buf += chunk[:max(room, 0)]
                        if len(chunk) > room:
                            killed_for = "output_limit"
                            break
        finally:
            sel.close()
        wall = (exited_at if exited is not None else time.monotonic()) - t0
        if killed_for is not None or not clean:
            # Timeouts, output limits and any doubt about the session: it goes, with everything in it.
            s.retire = True
            s.stop()
            for fd, buf in list(sinks.items()):
                buf += _drain(fd, limits.output_bytes - len(buf))
        return self._judge(s, exited, killed_for, bytes(out), bytes(err), wall, limits)

    def _judge(self, s: WarmSession, exited: dict | None, killed_for: str | None, out: bytes, err: bytes,
               wall: float, limits: Limits) -> RunResult:
        cg = s.slot.cgroup
        code = exited.get("exit_code") if exited else None
        cpu = float(exited.get("cpu") or 0.0) if exited else 0.0
        peak, oom = 0.0, False
        extra: dict = {"slot": s.slot.index, "warm": True, "session_run": s.runs}
        if cg is not None:
            try:
                peak, cg_cpu, oom, refused = cg.usage()
                if cg_cpu is not None:
                    cpu = cg_cpu
                if refused:
                    extra["forks_refused"] = refused
                if oom or refused:
                    s.retire = True  # a session that hit a limit is not trusted to be tidy
            except OSError:
                pass
        else:
            extra["measured"] = "no cgroups: peak memory unmeasured, CPU time of the main process only"
        res = RunResult(RunStatus.ok, code, out, err, round(wall, 4), round(cpu, 4), round(peak, 2), extra=extra)
        cpu_cap = max(1, math.ceil(limits.cpu_time_s))
        if killed_for == "output_limit":
            res.status, res.detail = RunStatus.output_limit, f"more than {limits.output_bytes} bytes of output; killed"
        elif killed_for == "timeout":
            res.status, res.detail = RunStatus.timeout, f"wall time limit {limits.wall_time_s}s exceeded; killed"
        elif code is None:
            # The session ended under the run: only an OOM kill or the host can do that to PID 1.
            res.exit_code = -signal.SIGKILL
            if oom:
                res.status, res.detail = RunStatus.memory_limit, f"memory limit {limits.memory_mb} MB exceeded (OOM kill)"
            else:
                res.status, res.detail = RunStatus.runtime_error, "the sandbox session ended during the run"
        elif code == 0:
            res.status = RunStatus.ok
        elif code == -signal.SIGXCPU:
            res.status, res.detail = RunStatus.timeout, f"CPU time limit {limits.cpu_time_s}s exceeded"
        elif oom:
            res.status, res.detail = RunStatus.memory_limit, f"memory limit {limits.memory_mb} MB exceeded (OOM kill)"
        elif code == -signal.SIGKILL and cpu >= cpu_cap:
            res.status, res.detail = RunStatus.timeout, f"CPU time limit {limits.cpu_time_s}s exceeded"
        elif any(p in err[-4096:] for p in _MEMORY_PATTERNS):
            res.status, res.detail = RunStatus.memory_limit, f"memory limit {limits.memory_mb} MB exceeded"
        elif code < 0:
            res.status, res.detail = RunStatus.runtime_error, f"killed by {signal.Signals(-code).name}"
        else:
            res.status, res.detail = RunStatus.runtime_error, f"exit code {code}"
        return res


def _recv(sock: socket.socket, deadline: float) -> dict | None:
    with selectors.DefaultSelector() as sel:
        sel.register(sock.fileno(), selectors.EVENT_READ)
        if not sel.select(max(0.0, deadline - time.monotonic())):
            return None
    try:
        msg = sock.recv(1 << 16)
        return json.loads(msg) if msg else None
    except (OSError, ValueError):
        return None


def _drain(fd: int, room: int) -> bytes:
    """What a killed session left in a pipe (every writer is gone, so this ends)."""
    data = bytearray()
    try:
        os.set_blocking(fd, False)
        while True:
            chunk = os.read(fd, _READ_CHUNK)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return bytes(data[:max(room, 0)])
