"""Program synthesis: run the completion's code against tests in the sandbox.

The reward is the fraction of tests passed (ProRL's continuous code reward)
or, with ``all_or_nothing``, 1 only when every test passes. All tests of one
completion run in ONE sandbox session, built once; every verdict is computed
outside every process that ran candidate code (``_code_run`` says how).
Languages come from the sandbox's language table (``sandbox/languages.py``).
"""
from __future__ import annotations

import ast
import base64
import functools
import importlib.util
import json
import logging
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

import sandbox
from sandbox import languages
from verifiers.base import InvalidInput, TaskOptions, Verdict, json_object
from verifiers.extract import ThinkMode, last_code_block, strip_thinking
from verifiers.registry import register
from verifiers.tasks._code_asserts import prepare, prepared_source
from verifiers.tasks._code_compare import stdout_matches, value_matches
from verifiers.tasks._code_run import Checker, run_tests

PYTHON_ONLY_FORMATS = ("call", "assert")
MAGIC = importlib.util.MAGIC_NUMBER.hex()  # our bytecode's; a judge on another Python asks for source
log = logging.getLogger(__name__)
MAX_TOTAL_TIMEOUT_S = 40.0
# The executor's kill: the slowest build budget + the total test budget + slack stays below it.
TASK_TIMEOUT_S = max(lang.compile_time_s for lang in languages.LANGUAGES.values()) + MAX_TOTAL_TIMEOUT_S + 10.0
CLIP = 300

SHAPES = (
    'code ground truth must be a JSON object (or a JSON string of one) of one of these shapes: '
    '{"inputs": [...], "outputs": [...]} (stdin/stdout); the same plus "fn_name" (call-based: '
    'each input is a list of arguments); {"test": "<code defining check(candidate)>", "entry_point": "f"} '
    '(HumanEval); {"test_list": ["assert ...", ...], "test_setup_code": "..." (optional)} (MBPP); '
    'stdin/stdout tests may carry "checker": {"language": "python"|"cpp"|..., "source": "..."} '
    '(testlib-style: run with input, output and answer file paths; exit 0 = accepted)'
)


class CodeOptions(TaskOptions):
    language: Literal[tuple(languages.LANGUAGES)] = Field(  # type: ignore[valid-type]
        "python", description="Language when the code fence doesn't name one: "
                              + ", ".join(languages.LANGUAGES) + ". Call- and assert-based tests are Python only.")
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
    memory_mb: int = Field(512, ge=64, le=4096, description="Memory limit per test, in MiB (address space, or the "
                                                             "cgroup for the JVM, Go and Node.js).")


@dataclass
class Suite:
    mode: Literal["stdio", "call", "assert"]
    inputs: list[Any] = field(default_factory=list)  # stdin texts or argument lists
    expected: list[Any] = field(default_factory=list)
    fn_name: str | None = None
    asserts: list[dict[str, str | None]] = field(default_factory=list)
    checker: Checker | None = None

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
def _parse_python(source: str, what: str) -> str:
    """The test rewritten and compiled, as base64 marshal data for the judge."""
    return base64.b64encode(prepare(source, what)).decode()


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
    return Suite("stdio", inputs=[_text(x, "input") for x in inputs], expected=[_text(o, "output") for o in outputs],
                 checker=_checker(gt.get("checker")))


def _checker(spec: Any) -> Checker | None:
    if spec is None:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("source"), str) or not spec["source"].strip():
        raise InvalidInput('"checker" must be {"language": "python"|"cpp"|..., "source": "<checker program>"}')
    lang = languages.get(str(spec.get("language", "cpp"))) or languages.by_fence(str(spec.get("language", "")))
    if lang is None:
        raise InvalidInput(f"checker language {spec.get('language')!r} is not one of {', '.join(languages.LANGUAGES)}")
    missing = lang.missing()
    if missing:
        raise InvalidInput(f"checker language {lang.name} has no toolchain here (missing {', '.join(missing)})")
    return Checker(lang, spec["source"])


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
    description="Runs the last fenced code block (" + ", ".join(languages.LANGUAGES) + ") against tests in the "
                "sandbox; reward = fraction of tests passed (or all-or-nothing). Formats: stdin/stdout (every "
                "language; optional testlib-style checker), call-based (fn_name, optionally `class Solution`; "
                "Python), HumanEval check(candidate) and MBPP assert lists (Python).",
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
    # 2: verdicts computed outside the candidate (judge process, references), every language of
    # the sandbox's table, checkers. Cached rewards of version 1 are never served for it.
    # 3: fences read as CommonMark does (a longer fence holds a shorter one; an unclosed one runs on);
    # an MBPP item's asserts share one candidate process (its module state carries over, as in MBPP's harness).
    version="3",
    languages=lambda: _languages_info(),
)
def verify_code(completion: str, ground_truth: Any, options: CodeOptions, prompt: str | None = None) -> Verdict:
    suite = parse_ground_truth(ground_truth)
    response = strip_thinking(completion, options.think)
    if response is None:
        return Verdict(0.0, "ok", {"reason": "no </think> in completion and think=require", "passed": 0, "total": len(suite)})
    block = last_code_block(response)
    if block is None or not block.code.strip():
        return Verdict(0.0, "ok", {"reason": "no fenced code block in the response", "passed": 0, "total": len(suite)})
    lang = languages.by_fence(block.language) if block.language else languages.get(options.language)
    if lang is None:
        return Verdict(0.0, "ok", {"reason": f"unsupported language {block.language!r} "
                                             f"({', '.join(languages.LANGUAGES)})", "passed": 0, "total": len(suite)})
    if suite.mode in PYTHON_ONLY_FORMATS and lang.name != "python":
        why = (f"{'call' if suite.mode == 'call' else 'assert'}-based tests need a Python solution; "
               f"this one is {lang.name} (stdin/stdout tests work in every language)")
        if not block.language:  # the item's own options chose the language: the dataset's mistake
            raise InvalidInput(why)
        # The model chose the language: a wrong answer, never `invalid`, which trainers may
        # mask as "the dataset's fault" (a policy could escape a negative advantage by it).
        return Verdict(0.0, "ok", {"reason": why, "language": lang.name, "passed": 0, "total": len(suite)})
    missing = lang.missing()
    if missing:
        return Verdict(0.0, "error", {"error": f"{lang.name} toolchain not installed on this host "
                                                f"(missing {', '.join(missing)}); see GET /tasks",
                                      "language": lang.name, "passed": 0, "total": len(suite)})
    return _judge(suite, block.code, lang, options)


def _python_syntax_error(code: str) -> str | None:
    """Python's own verdict on the source, before any sandbox time is spent on it. Only the
    compiler runs here (no code of the solution), bounded by the scoring worker's limits."""
    try:
        with warnings.catch_warnings():  # the program's own business (invalid escapes and such)
            warnings.simplefilter("ignore")
            compile(code, "solution.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        return f"{type(e).__name__}: {e}"
    except (RecursionError, MemoryError) as e:
        return f"{type(e).__name__}: the source is too deeply nested to compile"
    return None


def _judge(suite: Suite, code: str, lang: languages.Language, options: CodeOptions) -> Verdict:
    if lang.name == "python":
        error = _python_syntax_error(code)
        if error is not None:
            return Verdict(0.0, "ok", {"language": lang.name, "format": suite.mode, "passed": 0, "total": len(suite),
                                       "reason": "compile error", "compile_output": _clip(error, 2000)})
    budget = min(options.total_timeout_s, len(suite) * (options.test_timeout_s + 0.5))
    if suite.mode == "assert":
        parts = [[(part, what) for part, what in ((a["setup"], "test_setup_code"), (a["code"], "test")) if part]
                 for a in suite.asserts]
        tests = [{"code": [_parse_python(part, what) for part, what in p], "magic": MAGIC,
                  "source": lambda p=p: [prepared_source(part, what) for part, what in p],
                  "call": a["call"], "name": str(i)} for i, (a, p) in enumerate(zip(suite.asserts, parts))]
    else:
        tests = suite.inputs
    halt = options.stop_on_first_failure or options.all_or_nothing

    def stop(i: int, r: dict) -> bool:
        return halt and _test_status(suite, i, r, options) != "passed"

    def attempt():
        return run_tests(suite.mode, lang, code, tests, fn_name=suite.fn_name,
                         expected_for_checker=suite.expected if suite.checker else None, checker=suite.checker,
                         timeout_s=options.test_timeout_s, memory_mb=options.memory_mb, budget_s=budget, stop=stop)

    ran = attempt()
    if ran.error and not (ran.compile is not None and ran.compile.status.value != "ok"):
        # The sandbox failed, not the program: once more in a fresh session before answering `error`.
        log.warning("code item: sandbox failure (%s); retrying once in a fresh session", ran.error)
        ran = attempt()
    detail: dict[str, Any] = {"language": lang.name, "format": suite.mode, "passed": 0, "total": len(suite),
                              "sandbox": {"backend": sandbox.get_sandbox().name,
                                          "status": "error" if ran.error else "ok",
                                          "wall_time_s": round(ran.wall_s, 3)}}
    if suite.checker is not None:
        detail["checker"] = suite.checker.language.name
    if ran.error:
        detail["error"] = ran.error
        return Verdict(0.0, "error", detail)
    if ran.compile is not None:
        detail["compile_time_s"] = round(ran.compile.wall_time_s, 3)
        if ran.compile.status.value != "ok":
            detail["reason"] = "compile error"
            detail["compile_output"] = _clip(ran.compile.compile_output or ran.compile.detail, 2000)
            detail["compile_status"] = ran.compile.detail
            return Verdict(0.0, "ok", detail)
    verdict = _score(suite, ran.tests, options, detail)
    if suite.checker is not None and ran.tests and all(
            r.get("status") in ("error", "not_run") for r in ran.tests) and any(r.get("status") == "error" for r in ran.tests):
        # The checker failed on every test it judged: that is not the program's 0.
        detail["error"] = "the checker failed on every test; see first_failure"
        return Verdict(0.0, "error", detail)
    return verdict


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
    if suite.mode == "assert" or status == "passed":  # a judge's or a checker's verdict
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


def _languages_info() -> dict[str, Any]:
    """For GET /tasks: each language, its fences and formats, and whether this host can run it."""
    out = {}
    for lang in languages.LANGUAGES.values():
        missing = lang.missing()
        out[lang.name] = {"fences": list(lang.aliases), "compiled": lang.compile is not None,
                          "formats": ["stdio", "call", "assert"] if lang.name == "python" else ["stdio"],
                          "memory_limit": "address space (RLIMIT_AS)" if lang.memory == "rlimit"
                          else "cgroup + the runtime's own heap flag",
                          "available": not missing, **({"missing": missing} if missing else {})}
    return out
