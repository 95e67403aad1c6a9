"""Checker-judged `code` problems, for real: the checker runs in the sandbox, testlib-style.

Ground truth ``{"inputs": [...], "outputs": [...], "checker": {"language": ..., "source": ...}}``:
the checker gets three file paths (test input, the program's output, the jury's answer) and exits
0 (accepted), 1 or 2 (wrong answer / presentation error); anything else, or a crash, means the
checker failed: that test counts as ``error`` in ``detail.statuses``, and an item whose checker
fails on every test gets status ``error`` (never a silent 0).

The problem used throughout: the input is one integer n; print two non-negative integers whose
sum is n. Many answers are right; the jury's is ``0 n``.
"""
from __future__ import annotations

import pytest

import sandbox
import verifiers
from language_programs import toolchain_missing
from sandbox.types import SandboxUnavailable

INPUTS = ["5\n", "10\n", "0\n"]
ANSWERS = ["0 5\n", "0 10\n", "0 0\n"]

# A careful checker: anything it can't parse is a wrong answer (exit 1), never a crash.
PY_CHECKER = r'''
import sys
inp, out, ans = sys.argv[1:4]
n = int(open(inp).read())
jury = list(map(int, open(ans).read().split()))
assert sum(jury) == n, "jury answer is wrong"
try:
    with open(out, "rb") as f:
        data = f.read(1 << 16)
    tokens = data.decode("ascii").split()
    if len(tokens) != 2 or not all(t.isdigit() and len(t) <= 20 for t in tokens):
        sys.exit(2)  # presentation: not two plain numbers
    a, b = map(int, tokens)
except (UnicodeDecodeError, ValueError):
    sys.exit(2)
sys.exit(0 if a + b == n else 1)
'''

CPP_CHECKER = r'''
#include <cstdio>
#include <cstring>
// checker input output answer
static bool read2(const char* path, long long& a, long long& b, bool strict) {
    FILE* f = std::fopen(path, "rb");
    if (!f) return false;
    char buf[256];
    size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    bool more = std::fgetc(f) != EOF;
    std::fclose(f);
    if (more || std::memchr(buf, 0, n)) return false;  // too long, or NUL bytes
    buf[n] = 0;
    char tail[2];
    int got = std::sscanf(buf, "%lld %lld %1s", &a, &b, tail);
    return strict ? got == 2 && a >= 0 && b >= 0 : got >= 1;
}
int main(int argc, char** argv) {
    if (argc != 4) return 3;
    long long n, a, b;
    FILE* in = std::fopen(argv[1], "r");
    if (!in || std::fscanf(in, "%lld", &n) != 1) return 3;
    std::fclose(in);
    if (!read2(argv[2], a, b, true)) return 2;
    return a + b == n ? 0 : 1;
}
'''

# Reads only the first two numbers: lenient, as many real checkers are.
LENIENT_CHECKER = r'''
import sys
n = int(open(sys.argv[1]).read())
with open(sys.argv[2], "rb") as f:
    first = f.readline(4096).split()
try:
    ok = len(first) >= 2 and int(first[0]) + int(first[1]) == n
except ValueError:
    ok = False
sys.exit(0 if ok else 1)
'''


def gt(checker_source: str = PY_CHECKER, language: str = "python", inputs=INPUTS, outputs=ANSWERS) -> dict:
    return {"inputs": inputs, "outputs": outputs, "checker": {"language": language, "source": checker_source}}


def py(code: str) -> str:
    return f"```python\n{code}```\n"


def score(completion: str, ground_truth, **options):
    return verifiers.score("code", completion, ground_truth, options)


@pytest.fixture(params=["process", "docker"], autouse=True)
def backend(request, monkeypatch):
    try:
        sandbox.get_sandbox(request.param).check()
    except SandboxUnavailable as e:
        pytest.skip(f"{request.param} sandbox unavailable: {e}")
    monkeypatch.setenv(sandbox.BACKEND_ENV, request.param)
    return request.param


def needs_cpp():
    reason = toolchain_missing("cpp")
    if reason:
        pytest.skip(reason)


# ---------------------------------------------------------------- several valid answers

def test_an_answer_other_than_the_jurys_is_accepted():
    v = score(py("n = int(input())\nprint(n // 2, n - n // 2)\n"), gt())
    assert (v.reward, v.status) == (1.0, "ok"), v.detail
    assert v.detail.get("statuses", {}) == {"passed": 3}


def test_the_jurys_own_answer_is_accepted():
    assert score(py("n = int(input())\nprint(0, n)\n"), gt()).reward == 1.0


def test_different_valid_answers_on_different_tests_are_all_accepted():
    code = "n = int(input())\nprint(*((n, 0) if n % 2 else (0, n)))\n"
    assert score(py(code), gt()).reward == 1.0


def test_exact_comparison_alone_would_reject_what_the_checker_accepts():
    code = "n = int(input())\nprint(n, 0)\n"
    plain = {"inputs": INPUTS, "outputs": ANSWERS}
    assert score(py(code), plain).reward < 1.0
    assert score(py(code), gt()).reward == 1.0


# ---------------------------------------------------------------- invalid answers

def test_a_wrong_sum_is_rejected():
    v = score(py("n = int(input())\nprint(n, 1)\n"), gt())
    assert (v.reward, v.status) == (0.0, "ok")
    assert "error" not in v.detail.get("statuses", {})


def test_a_presentation_error_counts_as_wrong_not_as_a_checker_failure():
    v = score(py("n = int(input())\nprint('answer:', 0, n)\n"), gt())
    assert (v.reward, v.status) == (0.0, "ok")
    assert "error" not in v.detail.get("statuses", {})


def test_partial_credit_counts_the_tests_the_checker_accepted():
    v = score(py("n = int(input())\nprint(0, n if n != 10 else 3)\n"), gt())
    assert v.reward == pytest.approx(2 / 3)


def test_a_program_that_crashes_is_not_passed_to_the_checker_as_accepted():
    v = score(py("n = int(input())\nprint(0, n)\nraise SystemExit(1)\n"), gt())
    assert v.reward == 0.0
    assert "passed" not in v.detail.get("statuses", {})


def test_a_compiled_solution_is_judged_by_the_checker_too():
    needs_cpp()
    cpp = "#include <cstdio>\nint main(){long long n;scanf(\"%lld\",&n);printf(\"%lld %lld\\n\",n/2,n-n/2);}\n"
    assert score(f"```cpp\n{cpp}```", gt()).reward == 1.0


# ---------------------------------------------------------------- C++ checkers

def test_a_cpp_checker_accepts_several_valid_answers():
    needs_cpp()
    assert score(py("n = int(input())\nprint(n // 2, n - n // 2)\n"), gt(CPP_CHECKER, "cpp")).reward == 1.0


def test_a_cpp_checker_rejects_an_invalid_answer():
    needs_cpp()
    v = score(py("n = int(input())\nprint(n, 1)\n"), gt(CPP_CHECKER, "cpp"))
    assert (v.reward, v.status) == (0.0, "ok")


def test_a_cpp_checker_that_does_not_compile_is_an_error_not_a_zero():
    needs_cpp()
    v = score(py("n = int(input())\nprint(0, n)\n"), gt("int main( {", "cpp"))
    assert v.status == "error"


# ---------------------------------------------------------------- the checker fails

def test_a_checker_crash_on_every_test_makes_the_item_an_error():
    crash = "import os\nos.abort()\n"
    v = score(py("n = int(input())\nprint(0, n)\n"), gt(crash))
    assert v.status == "error"
    assert v.detail.get("statuses", {}) == {"error": 3}


def test_a_checker_exit_status_other_than_0_1_2_is_a_checker_failure():
    v = score(py("n = int(input())\nprint(0, n)\n"), gt("import sys\nsys.exit(3)\n"))
    assert v.status == "error"
    assert v.detail.get("statuses", {}) == {"error": 3}


def test_a_checker_failing_on_some_tests_reports_them_and_scores_the_rest():
    flaky = ("import os, sys\nn = int(open(sys.argv[1]).read())\nif n == 10:\n    os.abort()\n"
             "a, b = map(int, open(sys.argv[2]).read().split())\nsys.exit(0 if a + b == n else 1)\n")
    v = score(py("n = int(input())\nprint(0, n)\n"), gt(flaky))
    assert v.status == "ok"
    assert v.detail.get("statuses", {}) == {"passed": 2, "error": 1}
    assert v.reward == pytest.approx(2 / 3)


def test_a_checker_that_never_ends_fails_instead_of_hanging_the_item():
    v = score(py("n = int(input())\nprint(0, n)\n"), gt("while True:\n    pass\n"), test_timeout_s=1)
    assert v.status == "error"
    assert v.detail.get("statuses", {}) == {"error": 3}


def test_a_cpp_checker_that_segfaults_is_a_checker_failure():
    needs_cpp()
    segv = "int main(){ volatile int* p = nullptr; return *p; }\n"
    v = score(py("n = int(input())\nprint(0, n)\n"), gt(segv, "cpp"))
    assert v.status == "error"


def test_a_checker_in_an_unknown_language_is_invalid_ground_truth():
    v = score(py("print(1)\n"), gt("whatever", "cobol"))
    assert v.status == "invalid"


# ---------------------------------------------------------------- hostile program output

def test_nul_bytes_reach_the_checker_unchanged_and_are_not_accepted():
    # Were NULs dropped on the way, "0\0 5" would read as a valid "0 5".
    code = "import sys\nn = int(input())\nsys.stdout.buffer.write(b'0\\x00 ' + str(n).encode() + b'\\n')\n"
    for checker, language in ((PY_CHECKER, "python"), (CPP_CHECKER, "cpp")):
        if language == "cpp" and toolchain_missing("cpp"):
            continue
        v = score(py(code), gt(checker, language))
        assert (v.reward, v.status) == (0.0, "ok"), (language, v.detail)
        assert "error" not in v.detail.get("statuses", {}), language


def test_gigantic_numbers_are_not_accepted():
    # 10**6 digits: more than any 64-bit or 4300-digit parse accepts, and no checker may wrap around.
    code = "n = int(input())\nprint('1' + '0' * 1000000, n)\n"
    for checker, language in ((PY_CHECKER, "python"), (CPP_CHECKER, "cpp")):
        if language == "cpp" and toolchain_missing("cpp"):
            continue
        v = score(py(code), gt(checker, language))
        assert (v.reward, v.status) == (0.0, "ok"), (language, v.detail)


def test_a_wrapping_overflow_does_not_fool_a_cpp_checker_into_accepting():
    needs_cpp()
    # 2**64 + 5 and 0: a checker using unsigned wrap-around would see 5.
    code = "n = int(input())\nprint(2**64 + n, 0)\n"
    assert score(py(code), gt(CPP_CHECKER, "cpp")).reward == 0.0


def test_endless_output_is_not_accepted_even_by_a_lenient_checker():
    # The first line is right; the program then never stops printing. Output past the limit must
    # fail the test on its own, not be cut and handed to a checker that reads only the first line.
    code = "n = int(input())\nwhile True:\n    print(0, n)\n"
    v = score(py(code), gt(LENIENT_CHECKER), test_timeout_s=2)
    assert (v.reward, v.status) == (0.0, "ok"), v.detail
    assert "passed" not in v.detail.get("statuses", {})


def test_endless_lines_without_newlines_do_not_hang_the_checker():
    code = "import sys\nn = int(input())\nwhile True:\n    sys.stdout.write('0' * 65536)\n"
    v = score(py(code), gt(LENIENT_CHECKER), test_timeout_s=2)
    assert (v.reward, v.status) == (0.0, "ok"), v.detail


def test_output_that_mimics_a_checker_verdict_is_just_output():
    # The program can't speak for the checker: printing "ok" / exit codes in its output changes nothing.
    code = "print('ok accepted')\nprint(0)\nimport sys\nsys.exit(0)\n"
    assert score(py(code), gt()).reward == 0.0


def test_gigantic_numbers_without_a_checker_score_zero_not_error():
    # The plain comparison too: int() refuses > 4300 digits, which must not turn a 0 into an error.
    v = score(py("print('1' + '0' * 1000000)\n"), {"inputs": ["\n"], "outputs": ["1\n"]})
    assert (v.reward, v.status) == (0.0, "ok"), v.detail
