"""Slots of the process sandbox: as many as runs need, exclusive across processes, waits bounded.

Real lock files, real processes and the real sandbox; no mocks.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sandbox.process import ProcessConfig, ProcessSandbox
from sandbox.process_slots import SlotPool
from sandbox.types import Limits, RunStatus

REPO = Path(__file__).resolve().parent.parent


def pool(tmp_path, count: int = 4096, **kw) -> SlotPool:
    return SlotPool(str(tmp_path), count, uid_base=None, use_cgroups=False, **kw)


def test_slots_grow_past_the_old_fixed_32_when_every_slot_is_busy(tmp_path):
    p = pool(tmp_path)
    held = [p.acquire(timeout_s=1) for _ in range(100)]
    assert sorted(s.index for s in held) == list(range(100))
    for s in held:
        p.release(s)


def test_the_lowest_free_slot_is_taken_so_the_index_space_stays_compact(tmp_path):
    p = pool(tmp_path)
    held = [p.acquire(timeout_s=1) for _ in range(10)]
    p.release(held[3])
    p.release(held[7])
    assert p.acquire(timeout_s=1).index == 3
    assert p.acquire(timeout_s=1).index == 7
    assert p.acquire(timeout_s=1).index == 10


def test_a_wait_at_the_maximum_ends_at_the_callers_timeout(tmp_path):
    p = pool(tmp_path, count=2)
    p.acquire(timeout_s=1), p.acquire(timeout_s=1)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="REWARD_SERVICE_SANDBOX_SLOTS"):
        p.acquire(timeout_s=0.3)
    assert 0.3 <= time.monotonic() - t0 < 1.0


def test_a_slot_freed_during_a_wait_is_taken(tmp_path):
    p = pool(tmp_path, count=1)
    first = p.acquire(timeout_s=1)
    threading.Timer(0.2, p.release, [first]).start()
    t0 = time.monotonic()
    assert p.acquire(timeout_s=5).index == 0
    assert time.monotonic() - t0 < 1.0


def test_slots_held_by_another_process_are_skipped_not_shared(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nsys.path.insert(0, %r)\nfrom sandbox.process_slots import SlotPool\n"
         "p = SlotPool(%r, 64, None, False)\nheld = [p.acquire(timeout_s=1) for _ in range(5)]\n"
         "print(sorted(s.index for s in held), flush=True)\ntime.sleep(30)" % (str(REPO), str(tmp_path))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "[0, 1, 2, 3, 4]"
        p = pool(tmp_path)
        assert [p.acquire(timeout_s=1).index for _ in range(3)] == [5, 6, 7]
    finally:
        holder.kill()
        holder.wait()
    # The holder's locks died with it.
    assert SlotPool(str(tmp_path), 64, None, False).acquire(timeout_s=1).index == 0


def test_a_forked_child_does_not_think_it_holds_its_parents_slots(tmp_path):
    p = pool(tmp_path)
    s = p.acquire(timeout_s=1)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(s.lock_fd)  # as the warm pool's after-fork hook does
        child = p.acquire(timeout_s=1)
        os.write(w, str(child.index).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    os.close(w)
    assert os.read(r, 16) == b"1"  # slot 0 is still the parent's: the child took the next one
    os.close(r)


def test_per_slot_uids_must_fit_the_uid_range(tmp_path):
    with pytest.raises(ValueError, match="uid range"):
        SlotPool(str(tmp_path), 4096, uid_base=0xFFFFFFFF - 100, use_cgroups=False)


def test_limits_in_force_say_cgroups_are_off_and_why(tmp_path):
    d = pool(tmp_path).limits_in_force()
    assert d["cgroup"] == "off"
    assert "REWARD_SERVICE_SANDBOX_CGROUPS" in d["reason"]
    assert d["peak_memory"].startswith("unmeasured")
    assert d["slots"]["max"] == 4096 and d["slots"]["grow"] == "on demand"


def _v1_root() -> bool:
    lines = open("/proc/self/cgroup").read().splitlines()
    v1 = {c for line in lines for c in line.split(":")[1].split(",") if not line.startswith("0:")}
    return os.geteuid() == 0 and {"memory", "pids"} <= v1


@pytest.mark.skipif(not _v1_root(), reason="needs root and cgroup v1 memory+pids hierarchies")
def test_limits_in_force_name_the_v1_controllers(tmp_path):
    p = SlotPool(str(tmp_path), 8, uid_base=3_000_000, use_cgroups=True)
    try:
        d = p.limits_in_force()
        assert p.use_cgroups, p.cgroup_error
        assert d["cgroup"] == "v1"
        assert d["memory"].startswith("memory.limit_in_bytes") and d["processes"] == "pids.max per session"
        assert p.cgroup_summary().startswith("v1 memory+pids")
    finally:
        p.close()


@pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap is not installed (apt-get install bubblewrap)")
def test_runs_go_ahead_while_more_slots_than_the_old_maximum_are_held_idle(tmp_path):
    # 40 slots held as if by idle warm sessions of other scoring processes (the issue-11 starvation).
    sb = ProcessSandbox(ProcessConfig.from_env())
    sb.check()
    held = [sb.pool.acquire(timeout_s=1) for _ in range(40)]
    try:
        t0 = time.monotonic()
        for lang, src in (("python", "print(6 * 7)"), ("cpp", "#include <cstdio>\nint main(){std::puts(\"42\");}")):
            r = sb.run(lang, src, limits=Limits(wall_time_s=20, cpu_time_s=10))
            assert (r.status, r.stdout) == (RunStatus.ok, b"42\n"), r
            assert r.extra["slot"] not in {s.index for s in held}
        assert time.monotonic() - t0 < 15
    finally:
        for s in held:
            sb.pool.release(s)
        sb.close()


@pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap is not installed (apt-get install bubblewrap)")
@pytest.mark.parametrize("language", ["python", "cpp"])
def test_a_slot_wait_never_outlasts_the_items_wall_time_limit(tmp_path, language):
    import dataclasses

    cfg = dataclasses.replace(ProcessConfig.from_env(), slots=1, state_dir=str(tmp_path))
    sb = ProcessSandbox(cfg)
    held = sb.pool.acquire(timeout_s=1)
    try:
        t0 = time.monotonic()
        r = sb.run(language, "print(1)" if language == "python" else "int main(){}",
                   limits=Limits(wall_time_s=0.5, cpu_time_s=0.5))
        assert r.status == RunStatus.sandbox_error and "no sandbox slot" in r.detail, r
        assert time.monotonic() - t0 < 2.0
    finally:
        sb.pool.release(held)
        sb.close()
