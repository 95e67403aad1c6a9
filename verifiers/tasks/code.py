"""Program synthesis: run the completion's code against tests in the sandbox.

The reward is the fraction of tests passed (ProRL's continuous code reward)
or, with ``all_or_nothing``, 1 only when every test passes. All tests of one
completion run in ONE sandbox session: the trusted harness
(``_code_harness.py``) compiles once and forks a limited child per test.
Expected outputs of stdin/stdout and call-based tests never enter the
sandbox; they are compared here.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
import json
import marshal
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

import sandbox
from sandbox.types import Limits, RunStatus
from verifiers.base import InvalidInput, TaskOptions, Verdict, json_object
from verifiers.extract import ThinkMode, last_code_block, strip_thinking
from verifiers.registry import register
from verifiers.tasks._code_asserts import prepare
from verifiers.tasks._code_compare import stdout_matches, value_matches

HARNESS_SOURCE = (Path(__file__).parent / "_code_harness.py").read_text()
# The sandbox runs this stub; it loads the harness precompiled when the sandbox's
# Python has our bytecode magic (saves compiling ~600 lines per run), else compiles it.
HARNESS_STUB = """import marshal, sys
try:
    magic = sys.modules["_frozen_importlib_external"].MAGIC_NUMBER.hex()
    with open("harness-" + magic + ".bin", "rb") as f:
        code = marshal.loads(f.read())
except Exception:
    with open("harness.py", encoding="utf-8") as f:
        code = compile(f.read(), "harness.py", "exec")
exec(code)
"""
HARNESS_FILES = {
    "harness.py": HARNESS_SOURCE.encode(),
    f"harness-{importlib.util.MAGIC_NUMBER.hex()}.bin": marshal.dumps(compile(HARNESS_SOURCE, "harness.py", "exec")),
}

FENCE_LANGUAGES = {"python": "python", "py": "python", "python3": "python",
                   "cpp": "cpp", "c++": "cpp", "cc": "cpp"}
COMPILE_TIMEOUT_S = 15.0
MAX_TOTAL_TIMEOUT_S = 40.0
TASK_TIMEOUT_S = 60.0  # executor's kill: compile + total budget + slack stays below it
CLIP = 300

SHAPES = (
    'code ground truth must be a JSON object (or a JSON string of one) of one of these shapes: '
    '{"inputs": [...], "outputs": [...]} (stdin/stdout); the same plus "fn_name" (call-based: '
    'each input is a list of arguments); {"test": "<code defining check(candidate)>", "entry_point": "f"} '
    '(HumanEval); {"test_list": ["assert ...", ...], "test_setup_code": "..." (optional)} (MBPP)'
)


class CodeOptions(TaskOptions):
    language: Literal["python", "cpp"] = Field(
        "python", description="Language when the code fence doesn't name one (python/py/python3, cpp/c++/cc).")
    think: ThinkMode = Field(
        "auto", description="`require`: no `</think>` means reward 0; `auto`: code after `</think>` if present.")
    exact: bool = Field(False, description="Compare output exactly (trailing whitespace trimmed) instead of by "
                                           "tokens with numeric tolerance.")
    tolerance: float = Field(1e-6, ge=0, description="Absolute or relative tolerance for non-integer numbers.")
    all_or_nothing: bool = Field(False, description="Reward 1 only if every test passes, else 0 "
                                                    "(default: fraction of tests passed).")
    stop_on_first_failure: bool = Field(
        False, description="Tests after the first failing one count as failed (and are not run when the "
                           "harness can tell the failure itself: crash, timeout, failed assert).")
    test_timeout_s: float = Field(5.0, gt=0, le=30, description="Wall-clock limit per test (CPU limit: this + 1 s).")
    total_timeout_s: float = Field(
        30.0, gt=0, le=MAX_TOTAL_TIMEOUT_S,
        description="Budget for all tests of one completion; tests not started in it count as failed.")
    memory_mb: int = Field(512, ge=64, le=4096, description="Address-space limit per test, in MiB.")


@dataclass
class Suite:
    mode: Literal["stdio", "call", "assert"]
    inputs: list[Any] = field(default_factory=list)  # stdin texts or argument lists
    expected: list[Any] = field(default_factory=list)
    fn_name: str | None = None
    asserts: list[dict[str, str | None]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.asserts) if self.mode == "assert" else len(self.inputs)


def parse_ground_truth(gt: Any) -> Suite:
    gt = json_object(gt, SHAPES)
    if "inputs" in gt or "outputs" in gt:
        return _io_suite(gt)
    if "test" in gt and ("entry_point" in gt or "test_list" not in gt):
        test, entry = gt.get("test"), gt.get("entry_point")
        if not isinstance(test, str) or not isinstance(entry, str) or not entry.isidentifier():
            raise InvalidInput(f'"test" must be a string and "entry_point" a function name; {SHAPES}')
        _parse_python(test, "test")
        return Suite("assert", asserts=[{"setup": _setup(gt), "code": test, "call": entry}])
    if "test_list" in gt:
        tests = gt["test_list"]
        if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
            raise InvalidInput(f'"test_list" must be a non-empty list of strings; {SHAPES}')
        setup = _setup(gt)
        for t in tests:
            _parse_python(t, "test")
        return Suite("assert", asserts=[{"setup": setup, "code": t, "call": None} for t in tests])
    raise InvalidInput(SHAPES)


def _setup(gt: dict) -> str:
    setup = gt.get("test_setup_code") or ""
    imports = gt.get("test_imports") or []  # MBPP "sanitized" keeps imports apart
    if not isinstance(setup, str) or not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
        raise InvalidInput('"test_setup_code" must be a string and "test_imports" a list of strings')
    setup = "\n".join([*imports, setup]).strip()
    if setup:
        _parse_python(setup, "test_setup_code")
    return setup


@functools.lru_cache(maxsize=2048)  # GRPO groups share their ground truth
def _parse_python(source: str, what: str) -> tuple[str, frozenset[str]]:
    prepared, imports = prepare(source, what)
    return prepared, frozenset(imports)


def _stdlib_imports(code: str) -> set[str]:
    """Top-level modules the solution imports (the harness preloads the stdlib ones)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _sandbox_asserts(suite: Suite) -> tuple[list[dict], list[str]]:
    """The assert tests as the harness runs them: comparisons sanitized; the modules they import."""
    out, imports = [], set()
    for a in suite.asserts:
        entry = {"call": a["call"]}
        for part, what in (("setup", "test_setup_code"), ("code", "test")):
            if a[part]:
                entry[part], used = _parse_python(a[part], what)
                imports |= used
        out.append(entry)
    return out, sorted(imports)


def _io_suite(gt: dict) -> Suite:
    inputs, outputs = gt.get("inputs"), gt.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs) or not inputs:
        raise InvalidInput(f'"inputs" and "outputs" must be non-empty lists of the same length; {SHAPES}')
    fn_name = gt.get("fn_name")
    if fn_name:
        if not isinstance(fn_name, str) or not fn_name.isidentifier():
            raise InvalidInput(f'"fn_name" must be a function name, got {fn_name!r:.80}')
        return Suite("call", inputs=[_arguments(x) for x in inputs], expected=[_listify(o) for o in outputs],
                     fn_name=fn_name)
    return Suite("stdio", inputs=[_text(x, "input") for x in inputs], expected=[_text(o, "output") for o in outputs])


def _arguments(x: Any) -> list[Any]:
    if isinstance(x, str):  # APPS stores each argument list as JSON text
        try:
            x = json.loads(x)
        except ValueError:
            raise InvalidInput(f"call-based input {x!r:.80} is a string but not a JSON list of arguments") from None
    if not isinstance(x, list):
        raise InvalidInput(f"call-based input must be a list of arguments, got {type(x).__name__}")
    return x


def _listify(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_listify(x) for x in v]
    if isinstance(v, dict):
        return {k: _listify(x) for k, x in v.items()}
    return v


def _text(x: Any, what: str) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, list) and all(isinstance(line, str) for line in x):  # some sets store lines
        return "\n".join(x) + "\n"
    raise InvalidInput(f"stdin/stdout {what} must be text (or a list of lines), got {type(x).__name__}")


def _clip(v: Any, n: int = CLIP) -> Any:
    text = v if isinstance(v, str) else json.dumps(v)
    return text if len(text) <= n else text[:n] + f"... ({len(text)} chars)"


@register(
    "code",
    description="Runs the last fenced code block (Python or C++) against tests in the sandbox; reward = fraction "
                "of tests passed (or all-or-nothing). Formats: stdin/stdout, call-based (fn_name, optionally "
                "`class Solution`), HumanEval check(candidate), MBPP assert lists.",
    ground_truth=[
        '{"inputs": ["1 2\\n"], "outputs": ["3\\n"]}',
        '{"fn_name": "add", "inputs": [[1, 2]], "outputs": [3]}',
        '{"test": "def check(candidate):\\n    assert candidate(1, 2) == 3", "entry_point": "add"}',
        '{"test_list": ["assert add(1, 2) == 3"], "test_setup_code": ""}',
        "any of these as a JSON string",
    ],
    options=CodeOptions,
    timeout_s=TASK_TIMEOUT_S,
    family="code",
)
def verify_code(completion: str, ground_truth: Any, options: CodeOptions, prompt: str | None = None) -> Verdict:
    suite = parse_ground_truth(ground_truth)
    response = strip_thinking(completion, options.think)
    if response is None:
        return Verdict(0.0, "ok", {"reason": "no </think> in completion and think=require", "passed": 0, "total": len(suite)})
    block = last_code_block(response)
    if block is None or not block.code.strip():
        return Verdict(0.0, "ok", {"reason": "no fenced code block in the response", "passed": 0, "total": len(suite)})
    language = FENCE_LANGUAGES.get(block.language, options.language if not block.language else None)
    if language is None:
        return Verdict(0.0, "ok", {"reason": f"unsupported language {block.language!r} (python or cpp)",
                                   "passed": 0, "total": len(suite)})
    if suite.mode == "assert" and language != "python":
        return Verdict(0.0, "ok", {"reason": "assert-based tests need a Python solution", "language": language,
                                   "passed": 0, "total": len(suite)})
    return _judge(suite, block.code, language, options)


def _judge(suite: Suite, code: str, language: str, options: CodeOptions) -> Verdict:
    token = secrets.token_hex(8)
    # Per-test limits are the harness's; the session's wall limit only backs it up.
    budget = min(options.total_timeout_s, len(suite) * (options.test_timeout_s + 0.5))
    asserts, imports = _sandbox_asserts(suite) if suite.mode == "assert" else ([], [])
    spec = {
        "token": token, "language": language, "mode": suite.mode, "fn_name": suite.fn_name,
        "tests": suite.inputs, "asserts": asserts, "imports": imports, "timeout_s": options.test_timeout_s,
        "memory_mb": options.memory_mb, "budget_s": budget,
        "stop_on_failure": options.stop_on_first_failure or options.all_or_nothing,
        "compile_timeout_s": COMPILE_TIMEOUT_S,
        # Never a module of the session's own directory (e.g. `solution`): that would run the
        # candidate inside the trusted harness.
        "preload": sorted((set(imports) | (_stdlib_imports(code) if language == "python" and len(suite) > 1
                                           else set())) & sys.stdlib_module_names),
    }
    wall = budget + (COMPILE_TIMEOUT_S if language == "cpp" else 0) + 3.0
    limits = Limits(wall_time_s=wall, cpu_time_s=2 * wall, memory_mb=options.memory_mb + 512, max_processes=64,
                    output_bytes=48 << 20, file_size_mb=64)
    box = sandbox.get_sandbox()
    filename = "solution.py" if language == "python" else "solution.cpp"
    # marshal: the harness decodes it without importing json (and re) on every run.
    run = box.run("python", HARNESS_STUB, stdin=marshal.dumps(spec, 4), limits=limits,
                  files={**HARNESS_FILES, filename: code.encode()})
    detail: dict[str, Any] = {"language": language, "format": suite.mode, "passed": 0, "total": len(suite),
                              "sandbox": {"backend": box.name, "status": run.status.value,
                                          "wall_time_s": round(run.wall_time_s, 3)}}
    if run.status == RunStatus.sandbox_error:
        detail["error"] = f"sandbox failure: {run.detail}"[:500]
        return Verdict(0.0, "error", detail)
    report = _report(run.stdout, token)
    if report is None:
        # The harness never crashes on a bad program, so a missing report means the
        # session was killed or tampered with: nothing is credited.
        detail["reason"] = f"the test harness produced no report (sandbox status {run.status.value})"
        if run.stderr:
            detail["stderr"] = _clip(run.stderr.decode(errors="replace")[-2000:], 1000)
        return Verdict(0.0, "ok", detail)
    compiled = report.get("compile") or {}
    if not compiled.get("ok"):
        detail["reason"] = "compile error"
        detail["compile_output"] = _clip(str(compiled.get("output", "")), 2000)
        return Verdict(0.0, "ok", detail)
    return _score(suite, report["results"], options, detail)


def _report(stdout: bytes, token: str) -> dict | None:
    try:
        report = json.loads(stdout)
    except ValueError:
        return None
    if not isinstance(report, dict) or report.get("token") != token or not isinstance(report.get("results"), list):
        return None
    return report


def _score(suite: Suite, results: list[dict], options: CodeOptions, detail: dict) -> Verdict:
    total = len(suite)
    results = (results + [{"status": "not_run", "error": "missing from the harness report"}] * total)[:total]
    passed = 0
    counts: dict[str, int] = {}
    first_failure = None
    for i, r in enumerate(results):
        status = _test_status(suite, i, r, options)
        if first_failure is not None and options.stop_on_first_failure and status == "passed":
            status = "not_counted"  # after the first failure nothing is credited
        counts[status] = counts.get(status, 0) + 1
        if status == "passed":
            passed += 1
        elif first_failure is None:
            first_failure = _failure(suite, i, r, status)
    reward = passed / total
    if options.all_or_nothing:
        reward = 1.0 if passed == total else 0.0
    detail.update(passed=passed, statuses=counts, reward_mode="all_or_nothing" if options.all_or_nothing else "fraction")
    if first_failure is not None:
        detail["first_failure"] = first_failure
    return Verdict(reward, "ok", detail)


def _test_status(suite: Suite, i: int, r: dict, options: CodeOptions) -> str:
    status = r.get("status")
    if suite.mode == "assert":
        return "passed" if status == "passed" else str(status)
    if status != "completed":
        return str(status)
    if suite.mode == "stdio":
        ok = stdout_matches(str(r.get("stdout", "")), suite.expected[i], exact=options.exact,
                            tolerance=options.tolerance)
    else:
        try:
            value = json.loads(r.get("value_json", ""))
        except ValueError:
            return "bad_return"
        ok = value_matches(value, suite.expected[i], exact=options.exact, tolerance=options.tolerance)
    return "passed" if ok else "wrong_answer"


def _failure(suite: Suite, i: int, r: dict, status: str) -> dict[str, Any]:
    out: dict[str, Any] = {"test": i, "status": status}
    if suite.mode == "assert":
        a = suite.asserts[i]
        out["test_code"] = _clip(a["code"] if a["call"] is None else f"check({a['call']})")
    else:
        out["input"] = _clip(suite.inputs[i])
        out["expected"] = _clip(suite.expected[i])
        if "stdout" in r:
            out["got"] = _clip(r["stdout"])
        elif "value_json" in r:
            out["got"] = _clip(str(r["value_json"]))
    for key in ("error", "stderr"):
        if r.get(key):
            out[key] = _clip(str(r[key])[-1000:], 1000)
    if "time_s" in r:
        out["time_s"] = r["time_s"]
    return out
