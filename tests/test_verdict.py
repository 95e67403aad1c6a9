"""sandbox.verdict.classify: the one place a run's raw facts become a status, for every backend."""
import signal

from sandbox.types import Limits, RunStatus
from sandbox.verdict import Facts, classify

LIMITS = Limits(wall_time_s=2, cpu_time_s=2, memory_mb=256, output_bytes=1000)


def status(**facts) -> RunStatus:
    facts.setdefault("exit_code", 0)
    return classify(Facts(**facts), LIMITS)[0]


def test_exit_zero_is_ok():
    assert status(exit_code=0) == RunStatus.ok


def test_exit_zero_after_a_childs_oom_kill_is_still_ok_and_says_so():
    st, detail = classify(Facts(0, oom_killed=True), LIMITS)
    assert st == RunStatus.ok and "out-of-memory" in detail


def test_the_output_cap_wins_over_everything_else():
    assert status(exit_code=0, over_output=True, timed_out=True) == RunStatus.output_limit


def test_the_wall_clock_is_a_timeout_whatever_the_exit():
    assert status(exit_code=-signal.SIGKILL, timed_out=True) == RunStatus.timeout


def test_sigxcpu_is_a_timeout():
    assert status(exit_code=-signal.SIGXCPU) == RunStatus.timeout


def test_sigkill_after_the_cpu_limit_was_used_is_a_timeout():
    assert status(exit_code=-signal.SIGKILL, cpu_s=2.0) == RunStatus.timeout


def test_sigkill_early_with_an_oom_kill_is_a_memory_limit():
    assert status(exit_code=-signal.SIGKILL, cpu_s=0.1, oom_killed=True) == RunStatus.memory_limit


def test_allocation_failures_of_every_runtime_are_memory_limits():
    for tail in (b"MemoryError\n", b"terminate called after throwing an instance of 'std::bad_alloc'",
                 b"java.lang.OutOfMemoryError: Java heap space", b"FATAL ERROR: JavaScript heap out of memory",
                 b"fatal error: runtime: out of memory", b"memory allocation of 1048576 bytes failed"):
        assert status(exit_code=1, stderr=tail) == RunStatus.memory_limit, tail


def test_a_kill_at_the_memory_limit_without_a_counter_is_a_memory_limit():
    assert status(exit_code=-signal.SIGKILL, peak_mb=250.0) == RunStatus.memory_limit


def test_a_session_that_died_under_the_run_is_a_runtime_error_unless_memory_killed_it():
    assert status(exit_code=None) == RunStatus.runtime_error
    assert status(exit_code=None, oom_killed=True) == RunStatus.memory_limit


def test_other_signals_and_exit_codes_are_runtime_errors_naming_them():
    st, detail = classify(Facts(-signal.SIGSEGV), LIMITS)
    assert st == RunStatus.runtime_error and "SIGSEGV" in detail
    st, detail = classify(Facts(3), LIMITS)
    assert st == RunStatus.runtime_error and detail == "exit code 3"
