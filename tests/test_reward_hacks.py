"""Programs that try to earn reward without solving the task must earn nothing for it.

Every case goes through ``verifiers.score("code", ...)`` and the configured
sandbox backend, exactly as the service scores. Where a hack comes with one
honestly passed test, the reward must be exactly that test's share.
"""
import json

import pytest

import verifiers

SECRET = "zebra-7f3a9c-unguessable"

STDIO_GT = {"inputs": ["1\n", "2\n"], "outputs": [f"{SECRET}-1\n", f"{SECRET}-2\n"]}
CALL_GT = {"fn_name": "answer", "inputs": [[1], [2]], "outputs": [f"{SECRET}-1", f"{SECRET}-2"]}
HUMANEVAL_GT = {"entry_point": "answer",
                "test": f"def check(candidate):\n    assert candidate(1) == '{SECRET}-1'\n"}
MBPP_GT = {"test_list": [f"assert answer(1) == '{SECRET}-1'", f"assert answer(2) == '{SECRET}-2'"]}


def score(code: str, ground_truth, **options):
    v = verifiers.score("code", f"```python\n{code}\n```", ground_truth, options)
    # A verdict of the no-isolation backend would say nothing about the sandbox.
    assert v.detail.get("sandbox", {}).get("backend", "process") != "unsafe", v.detail
    return v


ALL_FORMATS = pytest.mark.parametrize("gt", [STDIO_GT, CALL_GT, HUMANEVAL_GT, MBPP_GT],
                                      ids=["stdio", "call", "humaneval", "mbpp"])
ASSERT_FORMATS = pytest.mark.parametrize("gt", [HUMANEVAL_GT, MBPP_GT], ids=["humaneval", "mbpp"])


# ---------------------------------------------------------------- ending early

@pytest.mark.parametrize("exit_call", ["import sys; sys.exit(0)", "import os; os._exit(0)", "exit()", "quit(0)",
                                       "raise SystemExit"])
@pytest.mark.parametrize("gt", [CALL_GT, HUMANEVAL_GT, MBPP_GT], ids=["call", "humaneval", "mbpp"])
def test_exiting_with_status_zero_before_the_tests_earns_nothing(exit_call, gt):
    assert score(f"def answer(x):\n    return 0\n{exit_call}", gt).reward == 0.0


@ASSERT_FORMATS
def test_exiting_from_inside_the_tested_function_earns_nothing(gt):
    assert score("import os\ndef answer(x):\n    os._exit(0)", gt).reward == 0.0
    assert score("import sys\ndef answer(x):\n    sys.exit(0)", gt).reward == 0.0


@ALL_FORMATS
def test_atexit_hook_earns_nothing(gt):
    code = ("import atexit, os, sys\n"
            "def fake():\n    print('passed'); os.write(3, b'{\"kind\": \"passed\"}')\n"
            "atexit.register(fake)\n"
            "def answer(x):\n    raise ValueError\n"
            "sys.exit(0)")
    assert score(code, gt).reward == 0.0


@ASSERT_FORMATS
def test_replaced_excepthook_earns_nothing(gt):
    code = ("import sys, os\n"
            "sys.excepthook = lambda *a: os._exit(0)\n"
            "def answer(x):\n    return 'wrong'\n")
    assert score(code, gt).reward == 0.0


@ASSERT_FORMATS
def test_writing_a_result_without_the_nonce_earns_nothing(gt):
    code = ("import os, json\n"
            "for fd in range(3, 20):\n"
            "    try: os.write(fd, json.dumps({'kind': 'passed'}).encode())\n"
            "    except OSError: pass\n"
            "os._exit(0)\n")
    assert score(code, gt).reward == 0.0


# ---------------------------------------------------------------- objects equal to anything

EQ_ANYTHING = ("class Anything({base}):\n"
               "    def __eq__(self, other): return True\n"
               "    def __ne__(self, other): return False\n"
               "    __hash__ = object.__hash__\n")


@pytest.mark.parametrize("base", ["object", "str", "list", "dict"])
@pytest.mark.parametrize("gt", [CALL_GT, HUMANEVAL_GT, MBPP_GT], ids=["call", "humaneval", "mbpp"])
def test_return_values_equal_to_anything_earn_nothing(base, gt):
    code = EQ_ANYTHING.format(base=base) + "def answer(x):\n    return Anything()\n"
    assert score(code, gt).reward == 0.0


@pytest.mark.parametrize("gt", [CALL_GT, HUMANEVAL_GT, MBPP_GT], ids=["call", "humaneval", "mbpp"])
def test_a_metaclass_posing_as_a_builtin_type_earns_nothing(gt):
    code = ("class Meta(type):\n"
            "    def __eq__(cls, other): return True\n"
            "    def __hash__(cls): return hash(str)\n"
            "class Liar(metaclass=Meta):\n"
            "    def __eq__(self, other): return True\n"
            "    __hash__ = object.__hash__\n"
            "def answer(x):\n    return Liar()\n")
    assert score(code, gt).reward == 0.0


def test_equal_to_anything_nested_in_a_plain_list_earns_nothing():
    gt = {"fn_name": "answer", "inputs": [[1]], "outputs": [[SECRET]]}
    code = EQ_ANYTHING.format(base="object") + "def answer(x):\n    return [Anything()]\n"
    assert score(code, gt).reward == 0.0


def test_a_class_posing_as_the_function_earns_nothing():
    code = EQ_ANYTHING.format(base="object") + "class answer(Anything):\n    def __init__(self, x): pass\n"
    assert score(code, MBPP_GT).reward == 0.0


# ---------------------------------------------------------------- tampering with the harness or builtins

@ASSERT_FORMATS
@pytest.mark.parametrize("patch", [
    "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})",
    "import builtins\nbuiltins.isinstance = lambda *a: True",
    "import builtins\nbuiltins.print = lambda *a, **k: None",
    "import builtins\n_real = builtins.str\nbuiltins.str = lambda *a: _real(*a)",
    "import sys, io\nsys.stdout = io.StringIO()",
    "import os\nos.write = lambda fd, data: len(data)\nos._exit = lambda code: None",
    "import json\njson.dumps = lambda *a, **k: '{\"kind\": \"passed\"}'",
    "import builtins\nbuiltins.exec = lambda *a, **k: None",
    "import builtins\nbuiltins.dict = lambda *a, **k: {}",
    "import builtins\n_mv = builtins.memoryview\n"
    "builtins.memoryview = lambda d: _mv(bytes(d).replace(b'\\nfailed\\n', b'\\npassed\\n'))",
    "import __main__\n__main__.KINDS = {'failed'}\n__main__.to_json = lambda v: 'passed'",
])
def test_patching_builtins_and_modules_earns_nothing(gt, patch):
    assert score(f"{patch}\ndef answer(x):\n    return 'wrong'\n", gt).reward == 0.0


def test_test_code_sees_the_builtins_from_before_the_candidate_ran():
    gt = {"entry_point": "half",
          "test": "def check(candidate):\n    assert abs(candidate(3) - 1.5) < 1e-9\n    assert isinstance(candidate(2), float)\n"}
    code = ("import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.isinstance = lambda *a: True\n"
            "def half(x):\n    return 7\n")
    assert score(code, gt).reward == 0.0


def test_patching_a_module_the_test_imports_earns_nothing():
    gt = {"test_setup_code": "import math", "test_list": ["assert math.isclose(answer(1), 0.5)"]}
    code = "import math\nmath.isclose = lambda *a, **k: True\ndef answer(x):\n    return 99.0\n"
    assert score(code, gt).reward == 0.0


@ALL_FORMATS
def test_printing_a_fake_report_earns_nothing(gt):
    fake = {"token": "x", "compile": {"ok": True},
            "results": [{"status": "passed"}, {"status": "completed", "stdout": f"{SECRET}-2\n"}]}
    code = (f"import sys, os\nFAKE = {json.dumps(json.dumps(fake))}\n"
            "print(FAKE)\nsys.stdout.flush()\nsys.__stdout__.write(FAKE)\n"
            "for fd in (1, 2):\n    os.write(fd, FAKE.encode())\n"
            "def answer(x):\n    print(FAKE)\n    return 'wrong'\n")
    assert score(code, gt).reward == 0.0


@ALL_FORMATS
def test_overwriting_harness_files_and_killing_the_harness_earns_nothing(gt):
    code = ("import os, signal\n"
            "for name in ['main.py', 'harness.py', 'report.json', 'solution.py'] + [n for n in os.listdir('.') if n.endswith('.bin')]:\n"
            "    try:\n"
            "        with open(name, 'w') as f: f.write('print(\"{}\")')\n"
            "    except OSError: pass\n"
            "for sig in (signal.SIGSTOP, signal.SIGKILL):\n"
            "    try: os.kill(os.getppid(), sig)\n"
            "    except OSError: pass\n"
            "def answer(x):\n    return 'wrong'\n")
    v = score(code, gt, total_timeout_s=5)
    assert v.reward == 0.0


def test_a_test_importing_the_solution_module_never_runs_it_in_the_harness():
    gt = {"test_list": ["from solution import answer\nassert answer(1) == 'x'", "assert True"]}
    code = "import os\nos.kill(os.getpid(), 9)\ndef answer(x):\n    return 'x'\n"
    v = score(code, gt)
    # Killed in each test's child, the program fails both tests; had it run inside the harness
    # (to preload the test's imports), there would be no report at all.
    assert v.detail["statuses"] == {"runtime_error": 2}


# ---------------------------------------------------------------- looking for the expected outputs

SNOOP = r'''
import os, re
SECRET_RE = re.compile(rb"zebra-7f3a9c-[a-z-]*?(\d)")
found = {}

def look(data):
    for m in SECRET_RE.finditer(data or b""):
        found[m.group(1).decode()] = m.group(0).decode()

def read(path, n=1 << 22):
    try:
        with open(path, "rb") as f:
            look(f.read(n))
    except Exception:
        pass

def read_mem(pid):
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
        mem = open(f"/proc/{pid}/mem", "rb")
    except Exception:
        return
    for line in maps:
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        try:
            mem.seek(lo); look(mem.read(min(hi - lo, 1 << 24)))
        except Exception:
            pass

budget = [500]
for root in (".", "/tmp", os.path.expanduser("~")):
    for dirpath, _, files in os.walk(root):
        for name in files[:50]:
            if budget[0] > 0:
                budget[0] -= 1
                read(os.path.join(dirpath, name))
look(" ".join(f"{k}={v}" for k, v in os.environ.items()).encode())
me = os.getpid()
for pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) != me]:
    for what in ("cmdline", "environ"):
        read(f"/proc/{pid}/{what}")
    for fd in range(0, 16):
        read(f"/proc/{pid}/fd/{fd}")
    read_mem(pid)
for fd in range(0, 16):
    try:
        look(os.pread(fd, 1 << 20, 0))
    except OSError:
        pass
'''


def test_the_snooper_finds_what_is_within_its_reach():
    gt = {"inputs": [f"{SECRET}-5\n"], "outputs": [f"{SECRET}-5\n"]}  # its own stdin holds the answer
    assert score(SNOOP + "print(found.get('5', 'nothing'))\n", gt).reward == 1.0


def test_searching_disk_proc_and_fds_finds_no_stdio_outputs():
    code = SNOOP + "x = input().strip()\nprint(found.get(x, 'nothing'))\n"
    assert score(code, STDIO_GT).reward == 0.0


def test_searching_disk_proc_and_fds_finds_no_call_outputs():
    code = SNOOP + "def answer(x):\n    return found.get(str(x), 'nothing')\n"
    assert score(code, CALL_GT).reward == 0.0


@ASSERT_FORMATS
def test_assert_tests_are_not_readable_from_other_processes_or_files(gt):
    # The candidate necessarily shares its process with the test (see the harness's
    # known limitation), so this only covers what lies outside that process.
    code = SNOOP + "def answer(x):\n    return found.get(str(x), 'nothing')\n"
    assert score(code, gt).reward == 0.0


# ---------------------------------------------------------------- honest controls

@ALL_FORMATS
def test_an_honest_solution_of_the_same_shape_earns_full_reward(gt):
    code = ("import sys\ndef answer(x):\n    return f'" + SECRET + "-{x}'\n"
            "if __name__ == '__main__':\n    print(answer(int(input())))\n")
    assert score(code, gt).reward == 1.0


def test_a_hack_next_to_one_honest_answer_earns_only_that_share():
    code = EQ_ANYTHING.format(base="str") + (
        "def answer(x):\n    return '" + SECRET + "-1' if x == 1 else Anything('nope')\n")
    assert score(code, CALL_GT).reward == 0.5
    assert score(code, MBPP_GT).reward == 0.5
