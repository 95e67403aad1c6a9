"""The `code` task: formats, comparison, reward modes, through the configured sandbox backend."""
import json

import pytest

import verifiers

ADD_STDIO = {"inputs": ["1 2\n", "3 4\n", "10 -5\n"], "outputs": ["3\n", "7\n", "5\n"]}
ADD_PY = "a, b = map(int, input().split())\nprint(a + b)\n"


def py(code: str) -> str:
    return f"Here is my solution.\n```python\n{code}```\n"


def score(completion, ground_truth, **options):
    return verifiers.score("code", completion, ground_truth, options)


# ---------------------------------------------------------------- formats

def test_stdin_stdout_python_passes_all_tests():
    v = score(py(ADD_PY), ADD_STDIO)
    assert (v.reward, v.status) == (1.0, "ok")
    assert (v.detail["passed"], v.detail["total"], v.detail["language"]) == (3, 3, "python")


def test_stdin_stdout_cpp_compiles_once_and_passes():
    cpp = "#include <iostream>\nint main(){long long a,b;std::cin>>a>>b;std::cout<<a+b<<std::endl;}\n"
    v = score(f"```cpp\n{cpp}```", ADD_STDIO)
    assert v.reward == 1.0
    assert v.detail["language"] == "cpp"


def test_language_comes_from_options_when_the_fence_has_none():
    cpp = "#include <cstdio>\nint main(){long long a,b;scanf(\"%lld %lld\",&a,&b);printf(\"%lld\\n\",a+b);}\n"
    assert score(f"```\n{cpp}```", ADD_STDIO, language="cpp").reward == 1.0


def test_cpp_compile_error_scores_zero_with_diagnostics():
    v = score("```c++\nint main( { return 0 }\n```", ADD_STDIO)
    assert (v.reward, v.status) == (0.0, "ok")
    assert v.detail["reason"] == "compile error"
    assert "error" in v.detail["compile_output"]


def test_python_syntax_error_is_a_compile_error():
    v = score(py("def f(:\n    pass\n"), ADD_STDIO)
    assert v.reward == 0.0
    assert "SyntaxError" in v.detail["compile_output"]


def test_call_based_top_level_function():
    gt = {"fn_name": "add", "inputs": [[1, 2], [5, 5]], "outputs": [3, 10]}
    assert score(py("def add(a, b):\n    return a + b\n"), gt).reward == 1.0


def test_call_based_method_of_class_solution():
    gt = {"fn_name": "twoSum", "inputs": [[[2, 7, 11, 15], 9]], "outputs": [[0, 1]]}
    code = ("class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
            "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
            "                return [seen[target - x], i]\n            seen[x] = i\n")
    assert score(py(code), gt).reward == 1.0


def test_returned_tuple_equals_expected_list():
    gt = {"fn_name": "divmod2", "inputs": [[7, 2]], "outputs": [[3, 1]]}
    assert score(py("def divmod2(a, b):\n    return (a // b, a % b)\n"), gt).reward == 1.0


def test_ground_truth_given_as_a_json_string():
    assert score(py(ADD_PY), json.dumps(ADD_STDIO)).reward == 1.0


def test_apps_style_string_arguments_and_wrapped_outputs():
    gt = json.dumps({"fn_name": "mul", "inputs": ["[2, 3]", "[4, 5]"], "outputs": [[6], [20]]})
    assert score(py("def mul(a, b):\n    return a * b\n"), gt).reward == 1.0


def test_call_based_non_json_return_is_a_bad_return():
    gt = {"fn_name": "uniq", "inputs": [[[1, 1, 2]]], "outputs": [[1, 2]]}
    v = score(py("def uniq(xs):\n    return set(xs)\n"), gt)
    assert (v.reward, v.detail["first_failure"]["status"]) == (0.0, "bad_return")


def test_call_based_wrong_value_fails_with_got_and_expected():
    gt = {"fn_name": "add", "inputs": [[1, 2]], "outputs": [3]}
    v = score(py("def add(a, b):\n    return a - b\n"), gt)
    assert v.reward == 0.0
    f = v.detail["first_failure"]
    assert (f["status"], f["expected"], f["got"]) == ("wrong_answer", "3", "-1")


HUMANEVAL_GT = {"test": "def check(candidate):\n    assert candidate([1, 2, 3]) == 6\n    assert candidate([]) == 0\n",
                "entry_point": "total"}


def test_humaneval_check_passes_for_a_correct_function():
    v = score(py("def total(xs):\n    return sum(xs)\n"), HUMANEVAL_GT)
    assert (v.reward, v.detail["format"]) == (1.0, "assert")


def test_humaneval_check_fails_for_a_wrong_function():
    v = score(py("def total(xs):\n    return len(xs)\n"), HUMANEVAL_GT)
    assert v.reward == 0.0
    assert "AssertionError" in v.detail["first_failure"]["error"]


def test_mbpp_each_assert_is_one_test_and_setup_code_runs_first():
    gt = {"test_setup_code": "import math\nSCALE = 2",
          "test_list": ["assert double(2) == SCALE * 2", "assert double(3) == 6", "assert math.isclose(double(0.1), 0.3)"]}
    v = score(py("def double(x):\n    return 2 * x\n"), gt)
    assert v.reward == pytest.approx(2 / 3)
    assert v.detail["first_failure"]["test"] == 2


def test_stdio_solution_running_main_in_a_thread_is_waited_for():
    code = ("import sys, threading\n"
            "def main():\n    a, b = map(int, sys.stdin.readline().split())\n    sys.stdout.write(f'{a + b}\\n')\n"
            "threading.stack_size(1 << 26)\nsys.setrecursionlimit(10 ** 6)\n"
            "threading.Thread(target=main).start()\n")
    assert score(py(code), ADD_STDIO).reward == 1.0


def test_stdio_solution_buffering_its_own_output_is_flushed():
    code = "import io, sys\nbuf = io.StringIO()\nsys.stdout = buf\nprint(sum(map(int, input().split())))\nsys.__stdout__.write(buf.getvalue())\n"
    assert score(py(code), ADD_STDIO).reward == 1.0


def test_mbpp_row_with_extra_keys_uses_its_test_list():
    gt = {"task_id": 2, "text": "double a number", "code": "def double(x): return 2*x", "test": "",
          "test_list": ["assert double(2) == 4"], "challenge_test_list": []}
    assert score(py("def double(x):\n    return 2 * x\n"), gt).reward == 1.0


# ---------------------------------------------------------------- comparison

FLOAT_GT = {"inputs": [""], "outputs": ["0.333333333\n"]}


def test_numbers_match_within_tolerance_and_whitespace_is_ignored():
    assert score(py("print('  0.3333333 ')\n"), FLOAT_GT).reward == 1.0
    assert score(py("print(1)\nprint(2)\n"), {"inputs": [""], "outputs": ["1 2"]}).reward == 1.0


def test_integers_are_compared_exactly():
    assert score(py("print(1000000001)\n"), {"inputs": [""], "outputs": ["1000000000"]}).reward == 0.0


def test_exact_option_compares_lines_with_trailing_whitespace_trimmed():
    assert score(py("print('0.3333333')\n"), FLOAT_GT, exact=True).reward == 0.0
    assert score(py("print('1 2   ')\n"), {"inputs": [""], "outputs": ["1 2\n\n"]}, exact=True).reward == 1.0
    assert score(py("print(1)\nprint(2)\n"), {"inputs": [""], "outputs": ["1 2"]}, exact=True).reward == 0.0


# ---------------------------------------------------------------- reward modes

HALF_RIGHT = "a, b = map(int, input().split())\nprint(a + b if a < 5 else 0)\n"


def test_reward_is_the_fraction_of_tests_passed():
    v = score(py(HALF_RIGHT), ADD_STDIO)
    assert v.reward == pytest.approx(2 / 3)
    assert v.detail["statuses"] == {"passed": 2, "wrong_answer": 1}
    f = v.detail["first_failure"]
    assert (f["test"], f["input"], f["expected"], f["got"]) == (2, "10 -5\n", "5\n", "0\n")


def test_all_or_nothing_pays_only_when_every_test_passes():
    assert score(py(HALF_RIGHT), ADD_STDIO, all_or_nothing=True).reward == 0.0
    v = score(py(ADD_PY), ADD_STDIO, all_or_nothing=True)
    assert (v.reward, v.detail["reward_mode"]) == (1.0, "all_or_nothing")


def test_stop_on_first_failure_credits_nothing_after_it():
    gt = {"inputs": ["10 1\n", "1 2\n", "3 4\n"], "outputs": ["11\n", "3\n", "7\n"]}
    assert score(py(HALF_RIGHT), gt).reward == pytest.approx(2 / 3)
    v = score(py(HALF_RIGHT), gt, stop_on_first_failure=True)
    assert v.reward == 0.0
    assert v.detail["first_failure"]["test"] == 0


def test_stop_on_first_failure_skips_tests_after_a_crash():
    v = score(py("x = int(input())\nassert x != 0\nprint(x)\n"),
              {"inputs": ["0\n", "1\n"], "outputs": ["0\n", "1\n"]}, stop_on_first_failure=True)
    assert v.detail["statuses"] == {"runtime_error": 1, "not_run": 1}


def test_a_timeout_on_one_test_keeps_credit_for_the_others():
    code = "n = int(input())\nwhile n == 0:\n    pass\nprint(n)\n"
    gt = {"inputs": ["1\n", "0\n", "2\n"], "outputs": ["1\n", "0\n", "2\n"]}
    v = score(py(code), gt, test_timeout_s=1)
    assert v.reward == pytest.approx(2 / 3)
    assert v.detail["first_failure"]["status"] == "timeout"


def test_cpp_timeout_and_crash_cost_only_their_own_tests():
    cpp = ("#include <cstdio>\n#include <cstdlib>\nint main(){long long a,b;scanf(\"%lld %lld\",&a,&b);\n"
           "if(a==3) for(;;){}\nif(a==10) abort();\nprintf(\"%lld\\n\",a+b);}\n")
    v = score(f"```cpp\n{cpp}```", ADD_STDIO, test_timeout_s=1)
    assert v.reward == pytest.approx(1 / 3)
    assert v.detail["statuses"] == {"passed": 1, "timeout": 1, "runtime_error": 1}


def test_memory_limit_is_reported():
    v = score(py("x = bytearray(400 << 20)\nprint(1)\n"), {"inputs": [""], "outputs": ["1"]}, memory_mb=128)
    assert v.reward == 0.0
    assert v.detail["first_failure"]["status"] == "memory_limit"


def test_flooding_stdout_is_an_output_limit():
    v = score(py("import sys\nsys.stdout.write('x' * (8 << 20))\n"), {"inputs": [""], "outputs": ["x"]})
    assert v.detail["first_failure"]["status"] == "output_limit"


def test_runtime_error_shows_the_traceback():
    v = score(py("print(1 // 0)\n"), {"inputs": [""], "outputs": ["1"]})
    f = v.detail["first_failure"]
    assert f["status"] == "runtime_error"
    assert "ZeroDivisionError" in f["error"]


# ---------------------------------------------------------------- extraction and bad input

def test_no_code_block_scores_zero_with_ok_status():
    v = score("The answer is to add the numbers.", ADD_STDIO)
    assert (v.reward, v.status) == (0.0, "ok")
    assert "no fenced code block" in v.detail["reason"]


def test_only_code_after_think_counts():
    completion = f"<think>\n```python\n{ADD_PY}```\n</think>\nI'm not sure."
    assert score(completion, ADD_STDIO).reward == 0.0
    assert score(f"<think>draft</think>{py(ADD_PY)}", ADD_STDIO).reward == 1.0


def test_unsupported_fence_language_scores_zero():
    v = score("```haskell\nmain = interact id\n```", ADD_STDIO)
    assert (v.reward, v.status) == (0.0, "ok")
    assert "unsupported language" in v.detail["reason"]


@pytest.mark.parametrize("gt", [
    {"cases": []},
    "not json",
    [1, 2],
    {"inputs": ["1"], "outputs": []},
    {"test": "def check(c): pass"},
    {"test_list": ["assert ("]},
])
def test_unusable_ground_truth_is_invalid_and_names_the_shapes(gt):
    v = score(py(ADD_PY), gt)
    assert (v.reward, v.status) == (0.0, "invalid")
    assert "error" in v.detail


def test_invalid_shape_message_lists_the_accepted_shapes():
    msg = score(py(ADD_PY), {"cases": []}).detail["error"]
    for key in ('"inputs"', '"fn_name"', '"entry_point"', '"test_list"'):
        assert key in msg


def test_unknown_option_is_rejected():
    assert score(py(ADD_PY), ADD_STDIO, timeout=3).status == "invalid"
