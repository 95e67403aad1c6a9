"""The supervisor's description of one run, built the same way by every backend (host side)."""
from __future__ import annotations

from sandbox.types import Limits, Program

NOFILE = 256


def run_spec(program: Program, limits: Limits, *, source_target: int | None = None, extra_procs: int = 0,
             cgroup: bool = True) -> dict:
    """``program`` under ``limits`` as the supervisor's request reads it.

    ``source_target``: the descriptor a ``python_source`` arrives on; ``extra_procs``: processes
    beside the run counted in its user namespace (a judge, its candidate); ``cgroup``: the session
    has a memory cgroup (else a runtime that can't take ``RLIMIT_AS`` gets memory + its headroom)."""
    if program.rlimit_as:
        memory = limits.memory_mb
    else:  # bounded by the cgroup; without one, by the address space plus the runtime's headroom
        memory = None if cgroup or not program.as_headroom_mb else limits.memory_mb + program.as_headroom_mb
    spec: dict = {"argv": list(program.argv), "env": dict(program.env) or None, "cwd": program.cwd,
                  "limits": {"cpu_time_s": limits.cpu_time_s, "memory_mb": memory,
                             "file_size_mb": limits.file_size_mb, "nofile": NOFILE,
                             # Counted in the session's user namespace: the supervisor's too.
                             "nproc": limits.max_processes + 1 + extra_procs}}
    if program.stack_is_memory:
        spec["limits"]["stack_mb"] = limits.memory_mb
    if program.python is not None:
        spec["python"] = {"path": program.python}
    elif source_target is not None:
        spec["python"] = {"fd": source_target, "name": "judge.py"}
    return spec
