"""Running one completion's tests in the sandbox and collecting what each test did.

Trust model: **every verdict is computed outside every process that ran
candidate code.** One sandbox session per completion (built once), then per
test:

- stdin/stdout: the program runs with the test's input; its output bytes come
  back here and are compared with the expected output here (the expected
  outputs never enter the sandbox). What it prints is only data.
- call-based: ``_code_inside/call.py`` in the candidate's process calls the
  function and writes the return value as plain JSON; it is compared here.
- assert-based (HumanEval ``check``, MBPP asserts): ``Session.pair`` runs a
  trusted judge (``_code_inside/judge.py``, never runs candidate code, holds
  the test, not dumpable) beside the candidate's process; the test calls the
  candidate's functions through references over a socket and gets plain
  values back. Objects a test genuinely shares with the candidate (a lambda it
  passes, a class from ``test_setup_code``) stay in their owner's process and
  are reached through references too, so nothing ever needs a shared
  interpreter. The judge's report is the verdict.
- checker-judged stdin/stdout: the checker runs in a *second* session that
  never runs candidate code, with the test input, the program's output and
  the jury's answer as files (testlib's argument order).

Nothing the candidate writes, on any descriptor, can turn into "passed":
there is no nonce or secret anywhere for it to find.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import sandbox
from sandbox import languages
from sandbox.types import Limits, Program, RunResult, RunStatus, compiled_python

INSIDE = Path(__file__).parent / "_code_inside"
_WIRE = (INSIDE / "wire.py").read_text()
# Precompiled: the sandbox's runs load them without compiling ~500 lines each time.
JUDGE_SOURCE = compiled_python(_WIRE + "\n" + (INSIDE / "judge.py").read_text(), "judge.py")
CANDIDATE_SOURCE = compiled_python(_WIRE + "\n" + (INSIDE / "candidate.py").read_text(), "candidate.py")
CALL_SOURCE = compiled_python((INSIDE / "call.py").read_text(), "call.py")

STDOUT_CAP = 2 << 20  # per test; more is output_limit
TOTAL_OUTPUT_CAP = 32 << 20
JUDGE_MEMORY_MB = 1024
CHECKER_TIME_S = 10.0
TESTLIB_DIR_ENV = "REWARD_SERVICE_TESTLIB_DIR"
_STATUS = {RunStatus.timeout: "timeout", RunStatus.memory_limit: "memory_limit",
           RunStatus.output_limit: "output_limit", RunStatus.runtime_error: "runtime_error",
           RunStatus.sandbox_error: "sandbox_error", RunStatus.compile_error: "runtime_error"}


@dataclass
class Checker:
    language: languages.Language
    source: str


@dataclass
class Outcome:
    """What running the tests produced: per-test raw results, or why there are none."""

    tests: list[dict]
    compile: RunResult | None = None
    error: str | None = None  # the sandbox failed: the item is `error`, never a silent 0
    wall_s: float = 0.0


def test_limits(timeout_s: float, memory_mb: int) -> Limits:
    return Limits(wall_time_s=timeout_s, cpu_time_s=timeout_s + 1, memory_mb=memory_mb, max_processes=64,
                  output_bytes=STDOUT_CAP, file_size_mb=64)


def run_tests(mode: str, language: languages.Language, code: str, tests: list[Any], *, fn_name: str | None,
              expected_for_checker: list[str] | None, checker: Checker | None, timeout_s: float, memory_mb: int,
              budget_s: float, stop: Any) -> Outcome:
    """Run every test (``stop(i, result) -> bool`` may end the run early: later tests are not run).

    ``tests``: stdin texts (stdio), argument lists (call) or judge specs (assert)."""
    t0 = time.monotonic()
    box = sandbox.get_sandbox()
    limits = test_limits(timeout_s, memory_mb)
    out = Outcome([])
    try:
        session = box.session(limits, wait_s=budget_s)
    except Exception as e:  # noqa: BLE001 - no slot, no engine: the sandbox failed, not the program
        return Outcome([], error=f"no sandbox session: {type(e).__name__}: {e}")
    checker_session = None
    try:
        with session:
            files = {language.source_file(code): code.encode()}
            if mode == "call":
                files["call.py"] = CALL_SOURCE
            elif mode == "assert":
                files["candidate.py"] = CANDIDATE_SOURCE
            session.put(files)
            if language.compile is not None:
                out.compile = session.build(language, code, limits)
                if out.compile.status == RunStatus.sandbox_error:
                    return Outcome([], error=f"sandbox failure while compiling: {out.compile.detail}")
                if out.compile.status != RunStatus.ok:
                    return out
            if checker is not None:
                checker_session, failure = _start_checker(box, checker)
                if failure is not None:
                    out.error = failure
                    return out
            program = box.program(language, code, limits)
            # The budget is the tests': waiting for a slot, starting the session and the build
            # (which has its own limit) are not the program's time.
            end = time.monotonic() + budget_s
            output_total = 0
            stopped = False
            decided: dict[int, dict] = {}
            if mode == "assert" and len(tests) > 1 and all(t.get("call") is None for t in tests):
                decided = _assert_all(session, tests, limits, timeout_s, end - time.monotonic())
                if len(decided) < len(tests):
                    session.put(files)  # the batch's pair carried the session's closing wipe
                    session.wiped = None
            for i, test in enumerate(tests):
                left = end - time.monotonic()
                if i in decided and not stopped:
                    r = decided[i]
                    out.tests.append(r)
                    stopped = stop(i, r)
                    continue
                if stopped or left < 0.05 or output_total > TOTAL_OUTPUT_CAP:
                    why = "an earlier test failed" if stopped else "the time or output budget of the whole run was spent"
                    out.tests.append({"status": "not_run", "error": why})
                    continue
                run_limits = replace(limits, wall_time_s=min(timeout_s, left))
                last = i == len(tests) - 1
                if mode == "stdio":
                    r = _stdio(session, program, test, run_limits, last)
                    if checker_session is not None and r["status"] == "completed":
                        t_check = time.monotonic()
                        r = _check(checker_session, checker, test, r, expected_for_checker[i],
                                   min(CHECKER_TIME_S, max(5.0, 2 * timeout_s)))
                        end += time.monotonic() - t_check  # the checker's time is not the program's
                    r.pop("_raw", None)
                elif mode == "call":
                    r = _call(session, fn_name, test, run_limits, last)
                else:
                    r = _assert(session, test, run_limits, last, reput=lambda: session.put(files))
                output_total += len(r.get("stdout", "")) + len(r.get("value_json", ""))
                out.tests.append(r)
                if r["status"] == "sandbox_error":
                    out.error = f"sandbox failure: {r.get('error', '')}"[:500]
                    return out
                stopped = stop(i, r)
    except Exception as e:  # noqa: BLE001 - a session that died under us
        out.error = f"sandbox failure: {type(e).__name__}: {e}"[:500]
    finally:
        if checker_session is not None:
            checker_session.close()
        out.wall_s = time.monotonic() - t0
    return out


def _base(r: RunResult) -> dict:
    d: dict = {"time_s": round(r.wall_time_s, 4), "cpu_s": round(r.cpu_time_s, 4)}
    if r.status != RunStatus.ok:
        d["status"] = _STATUS.get(r.status, "runtime_error")
        d["error"] = r.detail
        if r.stderr:
            d["stderr"] = r.stderr.decode("utf-8", "replace")[-2000:]
            if r.status == RunStatus.runtime_error:  # the program's own account (a traceback) says more
                d["error"] = f"{r.detail}: {d['stderr'][-1500:]}"
    return d


def _stdio(session, program: Program, stdin: str, limits: Limits, last: bool = False) -> dict:
    r = session.exec(program, stdin=stdin.encode(), limits=limits, last=last)
    d = _base(r)
    if "status" not in d:
        d["status"] = "completed"
        d["stdout"] = r.stdout.decode("utf-8", "replace")
        d["_raw"] = r.stdout  # a checker reads the exact bytes
    return d


def _call(session, fn_name: str, args: list, limits: Limits, last: bool = False) -> dict:
    r = session.exec(Program(python="call.py"), limits=limits, side_output=True, last=last,
                     side_input=json.dumps({"fn": fn_name, "args": args}).encode())
    d = _base(r)
    if "status" in d:
        if r.exit_code == 3 and b"bad_return:" in r.stderr:
            d["status"] = "bad_return"
        return d
    if not r.side_output:
        return dict(d, status="no_result", error="the program ended before returning a value (e.g. sys.exit)")
    return dict(d, status="completed", value_json=r.side_output.decode("utf-8", "replace"))


def _assert_all(session, specs: list[dict], limits: Limits, timeout_s: float, left_s: float) -> dict[int, dict]:
    """MBPP's asserts of one item in one judge/candidate pair (one candidate process, each test in a
    namespace of its own with its own deadline): the verdicts it reached, by test index. A test that
    killed the candidate, and every test after a timeout or a broken protocol, is left to a pair of
    its own (``_assert``), which also gives a death its exact status (memory, CPU, exit)."""
    n = len(specs)
    wall = min(n * timeout_s + 1, left_s)
    if wall < 0.05:
        return {}
    batch_limits = replace(limits, wall_time_s=wall, cpu_time_s=wall + 1)
    judge_limits = Limits(wall_time_s=wall + 1, cpu_time_s=wall + 2, memory_mb=JUDGE_MEMORY_MB, max_processes=8,
                          output_bytes=1 << 20, file_size_mb=1)

    tests = [{k: v for k, v in s.items() if k != "source"} for s in specs]
    p = session.pair(Program(python_source=JUDGE_SOURCE), Program(python="candidate.py"),
                     judge_input=json.dumps({"tests": tests, "test_timeout_s": timeout_s,
                                             "budget_s": wall - 0.25}).encode(),
                     limits=batch_limits, judge_limits=judge_limits, last=True)
    if p.report and b'"need_source"' in p.report:
        return {}  # the sandbox's Python can't load our bytecode: each test goes as source, a pair each
    if p.judge.status == RunStatus.sandbox_error or p.candidate.status == RunStatus.sandbox_error:
        return {}
    try:
        report = json.loads(p.report) if p.report else None
    except ValueError:
        report = None
    results = report.get("results") if isinstance(report, dict) else None
    if not isinstance(results, list):
        return {}  # no report (the pair's wall clock, the judge's memory): each test a pair of its own
    stderr = p.candidate.stderr.decode("utf-8", "replace")[-1000:] if p.candidate.stderr else ""
    decided: dict[int, dict] = {}
    for i, r in enumerate(results[:n]):
        status = r.get("status") if isinstance(r, dict) else None
        if status not in ("passed", "failed", "timeout"):
            break  # the candidate died under it: its own pair says how
        d = {"time_s": r.get("time_s", 0.0), "status": status}
        if status != "passed":
            d["error"] = str(r.get("error", ""))[-2000:]
            if stderr:
                d["stderr"] = stderr
        decided[i] = d
    return decided


def _assert(session, spec: dict, limits: Limits, last: bool = False, reput=None) -> dict:
    judge_limits = Limits(wall_time_s=limits.wall_time_s + 1, cpu_time_s=limits.wall_time_s + 2,
                          memory_mb=JUDGE_MEMORY_MB, max_processes=8, output_bytes=1 << 20, file_size_mb=1)
    source = spec.get("source")
    wire_spec = {k: v for k, v in spec.items() if k != "source"}
    p = session.pair(Program(python_source=JUDGE_SOURCE), Program(python="candidate.py"),
                     judge_input=json.dumps(wire_spec).encode(), limits=limits, judge_limits=judge_limits,
                     last=last)
    if p.report and b'"need_source"' in p.report and callable(source):
        # The sandbox's Python can't load our bytecode: the same test as source.
        if last and reput is not None:
            reput()  # that pair was the session's last: its wipe took the files
        wire_spec = {k: v for k, v in wire_spec.items() if k not in ("code", "magic")}
        wire_spec["steps"] = source()
        session.wiped = None
        p = session.pair(Program(python_source=JUDGE_SOURCE), Program(python="candidate.py"),
                         judge_input=json.dumps(wire_spec).encode(), limits=limits, judge_limits=judge_limits,
                         last=last)
    cand = p.candidate
    d = {"time_s": round(cand.wall_time_s, 4), "cpu_s": round(cand.cpu_time_s, 4)}
    if p.judge.status == RunStatus.sandbox_error or cand.status == RunStatus.sandbox_error:
        return dict(d, status="sandbox_error", error=p.judge.detail or cand.detail)
    try:
        report = json.loads(p.report) if p.report else None
    except ValueError:
        report = None
    if not isinstance(report, dict):
        # No report: the wall clock stopped both, or the candidate's limits took it down with the judge.
        if cand.status != RunStatus.ok:
            return dict(_base(cand), **d)
        if p.judge.status == RunStatus.timeout:
            return dict(d, status="timeout", error=p.judge.detail)
        return dict(d, status="failed", error=f"the judge produced no report ({p.judge.detail or 'no detail'})",
                    stderr=p.judge.stderr.decode("utf-8", "replace")[-1000:])
    status = report.get("status")
    if status == "passed":
        return dict(d, status="passed")
    if status == "candidate_died":
        if cand.status != RunStatus.ok:
            return dict(_base(cand), **d)
        return dict(d, status="no_result", error=str(report.get("error", ""))
                    + " (it exited before the test finished, e.g. through os._exit)")
    out = dict(d, status="failed", error=str(report.get("error", ""))[-2000:])
    if cand.stderr:
        out["stderr"] = cand.stderr.decode("utf-8", "replace")[-1000:]
    if cand.status == RunStatus.memory_limit or b"MemoryError" in cand.stderr[-4096:]:
        out["status"] = "memory_limit"
    return out


def _start_checker(box, checker: Checker):
    """A session of its own for the checker (it reads untrusted output; it must never share a
    session, and so a writable binary, with the candidate). Returns (session, failure)."""
    limits = Limits(wall_time_s=CHECKER_TIME_S, cpu_time_s=CHECKER_TIME_S, memory_mb=512, max_processes=16,
                    output_bytes=1 << 20, file_size_mb=64)
    try:
        s = box.session(limits, wait_s=60.0)
    except Exception as e:  # noqa: BLE001
        return None, f"no sandbox session for the checker: {e}"
    files = {checker.language.source_file(checker.source): checker.source.encode()}
    testlib = os.environ.get(TESTLIB_DIR_ENV)
    if testlib and os.path.isfile(os.path.join(testlib, "testlib.h")):
        with open(os.path.join(testlib, "testlib.h"), "rb") as f:
            files["testlib.h"] = f.read()
    s.put(files)
    if checker.language.compile is not None:
        built = s.build(checker.language, checker.source, limits)
        if built.status != RunStatus.ok:
            s.close()
            return None, ("the checker does not compile: " + (built.compile_output or built.detail))[:1500]
    return s, None


def _check(s, checker: Checker, stdin: str, r: dict, answer: str, time_s: float) -> dict:
    limits = Limits(wall_time_s=time_s, cpu_time_s=time_s, memory_mb=512, max_processes=16,
                    output_bytes=1 << 20, file_size_mb=64)
    s.put({"input.txt": stdin.encode(), "output.txt": r["_raw"], "answer.txt": answer.encode()})
    lang = checker.language
    if lang.fork_python:
        program = Program(python=lang.source_file(checker.source), argv=("input.txt", "output.txt", "answer.txt"))
    else:
        base = languages.Language.run_argv(lang, checker.source, limits.memory_mb)
        program = Program(tuple(base) + ("input.txt", "output.txt", "answer.txt"),
                          env=lang.environment(limits.memory_mb), rlimit_as=lang.memory == "rlimit")
    c = s.exec(program, limits=limits)
    verdict_text = (c.stdout + c.stderr).decode("utf-8", "replace")[-500:]
    if c.status == RunStatus.ok:
        return dict(r, status="passed", checker=verdict_text)
    if c.status == RunStatus.runtime_error and c.exit_code in (1, 2):
        return dict(r, status="wrong_answer", checker=verdict_text)
    if c.status == RunStatus.sandbox_error:
        return dict(r, status="sandbox_error", error=c.detail)
    return dict(r, status="error", error=f"the checker failed ({c.status.value}: {c.detail})", checker=verdict_text)
