"""The host side of a supervisor session over a descriptor-passing socket (process and unsafe backends).

Requests are JSON on a SOCK_SEQPACKET socket to the in-sandbox supervisor;
a run's pipes and its files' memfds ride along as SCM_RIGHTS, so program
data flows between this process and the program without passing through the
supervisor. This side feeds stdin, collects output under the caps (asking the
supervisor to kill a run that passes them), and turns the supervisor's raw
facts plus the backend's cgroup readings into a ``RunResult`` through
``sandbox.verdict``. A supervisor that misses its own wall clock by
``BACKSTOP_S`` is taken for broken: the backend kills the whole session.
"""
from __future__ import annotations

import json
import os
import selectors
import socket
import time
from dataclasses import dataclass, replace
from typing import Callable, Mapping

from sandbox import verdict
from sandbox.base import Session
from sandbox.run_spec import run_spec
from sandbox.types import Limits, PairResult, Program, RunResult, RunStatus

BACKSTOP_S = 5.0
FILES_PER_MESSAGE = 48
_CHUNK = 1 << 16


class SessionGone(RuntimeError):
    """The session died (or broke protocol); nothing more can run in it."""


@dataclass
class Hooks:
    """What the backend does around each run: arm and read its cgroup, kill the whole session."""

    kill: Callable[[], None]
    alive: Callable[[], bool]
    arm: Callable[[int | None, int], None] | None = None  # (memory bytes or None, max pids)
    usage: Callable[[], tuple[float, float | None, bool, int]] | None = None  # peak MiB, cpu s, oom, refused
    extra: Callable[[], dict] | None = None
    overhead_pids: int = 1  # processes of the session that aren't the run's (the supervisor, ...)


def memfd(data: bytes, readonly: bool = False) -> int:
    """A memfd holding ``data``; ``readonly``: a read-only descriptor of it (a program's stdin must
    not be writable: a write would move the very offset its reads start from)."""
    fd = os.memfd_create("sandbox-file", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
        if readonly:
            ro = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
            os.close(fd)
            fd = ro
    except BaseException:
        os.close(fd)
        raise
    return fd


class FdsSession(Session):
    def __init__(self, sock: socket.socket, backend: str, hooks: Hooks, env: Mapping[str, str]) -> None:
        self.sock = sock
        self.backend = backend
        self.hooks = hooks
        self.env = dict(env)  # the scrubbed base environment of every run
        self.dead = False
        self.dirty = False  # not provably clean after a run: retire instead of reuse
        self.runs = 0
        self._pending: dict[str, bytes] = {}  # files for the next run's request
        self.wiped: bool | None = None  # the last run carried the session's closing wipe: was it clean

    # -- protocol ----------------------------------------------------------------------

    def _send(self, msg: dict, fds: list[int] = ()) -> None:
        if self.dead:
            raise SessionGone("the sandbox session ended")
        try:
            socket.send_fds(self.sock, [json.dumps(msg).encode()], list(fds))
        except OSError as e:
            self.dead = True
            raise SessionGone(f"the sandbox session is gone: {e}") from e

    def _recv(self, timeout_s: float) -> dict:
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            if not sel.select(timeout_s):
                self.dead = True
                self.hooks.kill()
                raise SessionGone("the sandbox supervisor stopped answering")
        return self._read_message()

    def _read_message(self) -> dict:
        try:
            raw = self.sock.recv(1 << 20)
            msg = json.loads(raw) if raw else None
        except (OSError, ValueError):
            msg = None
        if not isinstance(msg, dict):
            self.dead = True
            raise SessionGone("the sandbox session ended")
        if "error" in msg:
            self.dirty = True
        return msg

    # -- Session -----------------------------------------------------------------------

    def put(self, files: Mapping[str, bytes]) -> None:
        # A few files wait and ride along with the next run's request (one round trip, not two).
        if len(files) + len(self._pending) <= FILES_PER_MESSAGE:
            self._pending.update(files)
            return
        files = {**self._pending, **files}
        self._pending = {}
        names = list(files)
        for i in range(0, len(names), FILES_PER_MESSAGE):
            self._put_now({n: files[n] for n in names[i:i + FILES_PER_MESSAGE]})

    def _put_now(self, files: Mapping[str, bytes]) -> None:
        names = list(files)
        fds = [memfd(files[n]) for n in names]
        try:
            self._send({"op": "put", "names": names}, fds)
        finally:
            for fd in fds:
                os.close(fd)
        msg = self._recv(30.0)
        if "error" in msg:
            raise SessionGone(f"could not place files: {msg['error']}")

    def exec(self, program: Program, *, stdin: bytes = b"", limits: Limits,
             side_input: bytes | None = None, side_output: bool = False, last: bool = False) -> RunResult:
        if self.dead or not self.hooks.alive():
            return RunResult(RunStatus.sandbox_error, detail="the sandbox session ended")
        program = replace(program, env={**self.env, **program.env})
        streams = {1: "stdout", 2: "stderr"}
        if side_output:
            streams[4] = "side"
        feeds = {0: stdin}
        if side_input is not None:
            feeds[3] = side_input
        try:
            self._arm(limits, program.rlimit_as, 0)
        except SessionGone as e:
            return RunResult(RunStatus.memory_limit, detail=f"memory limit {limits.memory_mb} MB is below what the "
                                                            f"session itself uses ({e})")
        req = dict(run_spec(program, limits, cgroup=self.hooks.arm is not None), op="exec",
                   wall_time_s=limits.wall_time_s, then_reset=last)
        outs, msg = self._run(req, "fd_targets", feeds, streams, limits)
        if msg is None:
            return self._backstop(limits, outs)
        if last:
            self.wiped = bool(msg.get("clean")) and "error" not in msg
        return self._result(msg["main"], msg, limits, outs.get("stdout", b""), outs.get("stderr", b""),
                            side_output=outs.get("side", b""))

    def pair(self, judge: Program, candidate: Program, *, judge_input: bytes, limits: Limits,
             judge_limits: Limits, last: bool = False) -> PairResult:
        if self.dead or not self.hooks.alive():
            dead = RunResult(RunStatus.sandbox_error, detail="the sandbox session ended")
            return PairResult(dead, dead)
        judge = replace(judge, env={**self.env, **judge.env}, cwd=judge.cwd or "/")
        candidate = replace(candidate, env={**self.env, **candidate.env})
        try:
            self._arm(limits, candidate.rlimit_as, judge_limits.memory_mb)
        except SessionGone as e:
            r = RunResult(RunStatus.memory_limit, detail=f"memory limit {limits.memory_mb} MB is below what the "
                                                         f"session itself uses ({e})")
            return PairResult(r, r)
        req = {"op": "pair", "wall_time_s": limits.wall_time_s, "then_reset": last,
               "judge": run_spec(judge, judge_limits, source_target=5, extra_procs=limits.max_processes + 1),
               "candidate": run_spec(candidate, limits, extra_procs=2)}
        feeds = {"judge": {0: None, 4: judge_input, 5: judge.python_source or b""},
                 "candidate": {0: None}}
        streams = {"judge": {1: "report", 2: "judge_stderr"}, "candidate": {1: "stdout", 2: "stderr"}}
        outs, msg = self._run(req, ("judge_fd_targets", "candidate_fd_targets"), feeds, streams, limits)
        if msg is None:
            r = self._backstop(limits, outs)
            return PairResult(r, r, outs.get("report", b""))
        if "error" in msg:
            r = RunResult(RunStatus.sandbox_error, detail=f"supervisor: {msg['error']}"[:500])
            return PairResult(r, r)
        if last:
            self.wiped = bool(msg.get("clean"))
        cand = self._result(msg["candidate"], msg, limits, outs.get("stdout", b""), outs.get("stderr", b""))
        # The judge is judged by its own facts only: the candidate's limits fired on the candidate.
        jmsg = dict(msg, over_output=False)
        jr = self._result(msg["judge"], jmsg, judge_limits, b"", outs.get("judge_stderr", b""), cgroup=False)
        return PairResult(jr, cand, outs.get("report", b""))

    def close(self) -> None:
        raise NotImplementedError  # the backend's subclass gives the session back or destroys it

    def reset(self) -> bool:
        """Kill and wipe everything of the runs so far; True if the session is provably clean."""
        if self.wiped is not None:
            return self.wiped and not self.dirty
        return self.start_reset() and self.finish_reset()

    def start_reset(self) -> bool:
        """Ask for the wipe without waiting for it (``finish_reset`` reads the answer)."""
        self._pending = {}
        if self.wiped is not None:  # done already, with the last run
            return False
        if self.dead or not self.hooks.alive():
            return False
        try:
            self._send({"op": "reset"})
            return True
        except SessionGone:
            return False

    def finish_reset(self, timeout_s: float = 30.0) -> bool:
        try:
            return bool(self._recv(timeout_s).get("clean")) and not self.dirty
        except SessionGone:
            return False

    # -- internals ---------------------------------------------------------------------

    def _arm(self, limits: Limits, rlimit_as: bool, more_mb: int) -> None:
        if self.hooks.arm is None:
            return
        # The session's memory_mb bounds everything in it, the supervisor (~20 MB) included, as a
        # program's whole tree; a pair's judge gets room of its own beside the candidate.
        memory = (limits.memory_mb + (64 if more_mb else 0)) << 20
        try:
            self.hooks.arm(memory, limits.max_processes + self.hooks.overhead_pids + (2 if more_mb else 0))
        except OSError as e:
            # What is charged can't be reclaimed below the new limit: this session can't take the run.
            self.dirty = True
            raise SessionGone(f"cannot arm the session's cgroup: {e}") from e

    def _run(self, req: dict, targets_key, feeds: dict, streams: dict, limits: Limits):
        """Send ``req`` with fresh pipes, pump them until the supervisor's answer.
        Returns ({stream name: bytes}, answer or None when the backstop fired)."""
        child: list[int] = []  # descriptors that go to the supervisor (closed here after sending)
        ours_w: dict[int, memoryview] = {}
        ours_r: dict[int, tuple[str, bytearray]] = {}
        devnull = None
        try:
            groups = [(targets_key, feeds, streams)] if isinstance(targets_key, str) else [
                (targets_key[0], feeds["judge"], streams["judge"]), (targets_key[1], feeds["candidate"], streams["candidate"])]
            for key, fmap, smap in groups:
                targets = []
                for target, data in fmap.items():
                    if data is None:
                        if devnull is None:
                            devnull = os.open(os.devnull, os.O_RDONLY)
                        child.append(os.dup(devnull))
                    elif target in (0, 4, 5):
                        # stdin is a file, as judges give it (fstat() tells its size, seeking works);
                        # a judge's input and program are memfds only that process holds.
                        child.append(memfd(data, readonly=True))
                    else:
                        r, w = os.pipe()
                        child.append(r)
                        if data:
                            ours_w[w] = memoryview(data)
                        else:
                            os.close(w)
                    targets.append(target)
                for target, name in smap.items():
                    r, w = os.pipe()
                    child.append(w)
                    ours_r[r] = (name, bytearray())
                    targets.append(target)
                req[key] = targets
            if self._pending:  # files ride along: their fds lead the message
                names = list(self._pending)
                child = [memfd(self._pending[n]) for n in names] + child
                req["put"] = names
                self._pending = {}
            self._send(req, child)
            for fd in child:
                os.close(fd)
            child = []
            self.runs += 1
            msg = self._pump(ours_w, ours_r, limits)
            return {name: bytes(buf) for name, buf in ours_r.values()}, msg
        finally:
            for fd in child + list(ours_w) + list(ours_r):
                try:
                    os.close(fd)
                except OSError:
                    pass
            if devnull is not None:
                os.close(devnull)

    def _pump(self, ours_w: dict, ours_r: dict, limits: Limits) -> dict | None:
        sel = selectors.DefaultSelector()
        for fd in ours_w:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_WRITE)
        for fd in ours_r:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        sel.register(self.sock, selectors.EVENT_READ)
        deadline = time.monotonic() + limits.wall_time_s + BACKSTOP_S
        answer = None
        asked_kill = False
        open_r = set(ours_r)
        try:
            while answer is None or open_r:
                now = time.monotonic()
                if now >= deadline:
                    if answer is not None:
                        break  # a leftover writer holds a pipe: we have what we need
                    self.dead = True
                    self.hooks.kill()
                    return None
                if answer is not None:
                    deadline = min(deadline, now + 0.5)
                for key, _ in sel.select(deadline - now):
                    fd = key.fd
                    if key.fileobj is self.sock:
                        try:
                            answer = self._read_message()
                        except SessionGone:
                            # The session ended under the run: only an OOM kill or the host can do
                            # that to its PID 1. What the cgroup saw tells which.
                            answer = {"died": True, "main": {}, "candidate": {}, "judge": {}}
                            deadline = min(deadline, time.monotonic() + 0.2)
                        sel.unregister(self.sock)
                    elif fd in ours_w:
                        try:
                            view = ours_w[fd]
                            ours_w[fd] = view[os.write(fd, view[:_CHUNK]):]
                        except BlockingIOError:
                            continue
                        except OSError:  # the program closed its stdin
                            ours_w[fd] = memoryview(b"")
                        if not ours_w[fd]:
                            sel.unregister(fd)
                            os.close(fd)
                            del ours_w[fd]
                    else:
                        try:
                            chunk = os.read(fd, _CHUNK)
                        except BlockingIOError:
                            continue
                        if not chunk:
                            sel.unregister(fd)
                            open_r.discard(fd)
                            continue
                        _, buf = ours_r[fd]
                        room = limits.output_bytes - len(buf)
                        buf += chunk[:max(room, 0)]
                        if len(chunk) > room and not asked_kill and answer is None:
                            asked_kill = True
                            try:
                                socket.send_fds(self.sock, [b'{"op": "kill"}'], [])
                            except OSError:
                                pass
        finally:
            sel.close()
        if asked_kill:
            answer = dict(answer, over_output=True)
        return answer

    def _backstop(self, limits: Limits, outs: dict) -> RunResult:
        return RunResult(RunStatus.timeout, None, outs.get("stdout", b""), outs.get("stderr", b""),
                         limits.wall_time_s + BACKSTOP_S,
                         detail=f"wall time limit {limits.wall_time_s:g}s exceeded; the session was killed from outside")

    def _result(self, proc: dict, msg: dict, limits: Limits, stdout: bytes, stderr: bytes, cgroup: bool = True,
                **kw) -> RunResult:
        if msg.get("died"):
            self.dead = True
        if not msg.get("clean", False):
            self.dirty = True
        peak, cpu, oom, refused = 0.0, proc.get("cpu_s") or 0.0, False, 0
        extra = dict(self.hooks.extra() if self.hooks.extra else {})
        if cgroup and self.hooks.usage is not None:
            try:
                peak, cg_cpu, oom, refused = self.hooks.usage()
                if cg_cpu is not None:
                    cpu = cg_cpu
                if oom or refused:
                    self.dirty = True  # a session that hit a limit is not trusted to be tidy
            except OSError:
                pass
        elif proc.get("maxrss_kb"):
            peak = proc["maxrss_kb"] / 1024.0
        code = verdict.exit_code(proc.get("wait_status"))
        facts = verdict.Facts(code, cpu_s=cpu, wall_s=msg.get("wall_s", 0.0), peak_mb=peak,
                              timed_out=bool(msg.get("timed_out")), over_output=bool(msg.get("over_output")),
                              oom_killed=oom, forks_refused=refused, stderr=stderr)
        if "error" in msg:
            return RunResult(RunStatus.sandbox_error, detail=f"supervisor: {msg['error']}"[:500], extra=extra)
        return verdict.result(facts, limits, stdout, stderr, extra=extra, **kw)
