"""Hostile programs in the compiled languages, on both backends, for real (tests/hostile/*.c|java|go|rs).

A fork bomb in C, a memory bomb in Java that -Xmx can't see (off-heap through sun.misc.Unsafe),
a network attempt in Go and file writes outside the work dir in Rust: each is contained (the run
is not ok, or its output proves it got nowhere), nothing reaches the host, and the sandbox works
for the next run. The docker backend is skipped, with the reason, when no engine or image is there.
"""
from __future__ import annotations

import os
import socket
import threading
import uuid
from pathlib import Path

import pytest

import sandbox
import verifiers
from language_programs import PROGRAMS, toolchain_missing
from sandbox.types import Limits, RunStatus, SandboxUnavailable

HOSTILE = Path(__file__).parent / "hostile"
LIMITS = Limits(wall_time_s=5, cpu_time_s=4, memory_mb=256, max_processes=16)


def hostile(name: str) -> str:
    return (HOSTILE / name).read_text()


@pytest.fixture(params=["process", "docker"])
def box(request):
    try:
        sandbox.get_sandbox(request.param).check()
    except SandboxUnavailable as e:
        pytest.skip(f"{request.param} sandbox unavailable: {e}")
    return sandbox.get_sandbox(request.param)


def needs(language: str) -> None:
    reason = toolchain_missing(language)
    if reason:
        pytest.skip(reason)


def test_c_fork_bomb_is_contained_and_the_next_run_works(box):
    needs("c")
    r = box.run("c", hostile("fork_bomb.c"), limits=LIMITS)
    assert r.status != RunStatus.ok, r.detail
    assert r.status in (RunStatus.timeout, RunStatus.runtime_error), (r.status, r.detail)
    assert r.wall_time_s < LIMITS.wall_time_s + 3
    after = box.run("c", PROGRAMS["c"]["add"], stdin=b"2 3\n", limits=LIMITS)
    assert (after.status, after.stdout) == (RunStatus.ok, b"5\n"), after.detail


def test_java_off_heap_memory_bomb_hits_the_memory_limit(box):
    needs("java")
    r = box.run("java", hostile("memory_bomb.java"), limits=LIMITS)
    assert r.status == RunStatus.memory_limit, (r.status, r.detail, r.stderr[-500:])
    # It never got near its 4 GiB off-heap goal.
    assert b"allocated" not in r.stdout
    assert r.peak_memory_mb < LIMITS.memory_mb + 128


def test_java_memory_bomb_through_the_verifier_scores_zero_with_memory_limit(monkeypatch, box):
    needs("java")
    monkeypatch.setenv(sandbox.BACKEND_ENV, box.name)
    v = verifiers.score("code", f"```java\n{hostile('memory_bomb.java')}```", {"inputs": [""], "outputs": ["1"]},
                        {"memory_mb": 256})
    assert (v.reward, v.status) == (0.0, "ok")
    assert v.detail.get("statuses") == {"memory_limit": 1}, v.detail


@pytest.fixture
def loopback_listener():
    """A TCP listener on the host's loopback that records whether anything connected."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    hits: list[tuple] = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, peer = srv.accept()
                hits.append(peer)
                conn.close()
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1], hits
    stop.set()
    t.join(2)
    srv.close()


def test_go_network_attempt_gets_nowhere(box, loopback_listener):
    needs("go")
    port, hits = loopback_listener
    r = box.run("go", hostile("network_attempt.go"), stdin=f"{port}\n".encode(),
                limits=Limits(wall_time_s=20, cpu_time_s=10, memory_mb=256, max_processes=32))
    assert r.status == RunStatus.ok, (r.status, r.detail, r.compile_output, r.stderr[-500:])
    out = r.stdout.decode()
    assert "denied tcp 1.1.1.1:80" in out and "denied dns" in out, out
    assert "ESCAPED" not in out, out
    assert hits == []


def test_rust_file_writes_outside_the_work_dir_never_reach_the_host_or_the_next_run(box):
    needs("rust")
    marker = f"rs-escape-{uuid.uuid4().hex[:12]}"
    source = hostile("write_outside.rs")
    outputs = []
    for _ in range(2):
        r = box.run("rust", source, stdin=marker.encode(), limits=LIMITS)
        assert r.status == RunStatus.ok, (r.status, r.detail, r.compile_output, r.stderr[-500:])
        outputs.append(r.stdout.decode())
    for out in outputs:
        # The system's own directories are read-only in every backend.
        for d in ("/usr", "/usr/bin"):
            assert f"denied {d} " in out, out
        assert "wrote /etc/passwd" not in out
    # Whatever a run could write (its private tmpfs) is gone for the next one. (A run sees its own
    # file twice: /proc/self/root/tmp is its /tmp. So only what the first run did not see counts.)
    leftovers = [{line for line in out.splitlines() if line.startswith("LEFTOVER")} for out in outputs]
    assert leftovers[1] <= leftovers[0], outputs[1]
    for d in ("/tmp", "/", "/etc", "/root", "/home", "/work", "/box", "/var/tmp", "/dev/shm", os.getcwd()):
        assert not os.path.exists(os.path.join(d, marker)), f"a sandboxed write reached the host's {d}"
