"""A policy searching for a forged verdict finds none, in any test format, on either sandbox backend.

Each adversary below is what an RL policy converges to when it can't solve
the task: look through its own interpreter (frames, ``gc``, its memory) and
everything it can open (files, descriptors, ``/proc``) for anything that looks
like a secret or like the tests, write "passed" in every shape it can think of
on every descriptor it has, patch what the test might use, and leave at the
moment that looks best. The tests' expected answers are random per test run,
so only reading them could produce them. Every case goes through
``POST /score`` of the real service with the real sandbox; every adversary
must earn exactly 0, and every honest program beside them full reward.
"""
from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest

from live_service import running_service

PREFIX = "zebra-7f3a9c"  # the adversaries know the answers' shape, never their random tails
OPTS = {"test_timeout_s": 3, "total_timeout_s": 15}


def _answers() -> dict[int, str]:
    return {i: f"{PREFIX}-{secrets.token_hex(12)}" for i in (1, 2)}


def formats() -> dict[str, object]:
    a = _answers()
    return {
        "stdio": {"inputs": ["1\n", "2\n"], "outputs": [a[1] + "\n", a[2] + "\n"]},
        "call": {"fn_name": "answer", "inputs": [[1], [2]], "outputs": [a[1], a[2]]},
        "humaneval": {"entry_point": "answer",
                      "test": f"def check(candidate):\n    assert candidate(1) == {a[1]!r}\n"
                              f"    assert candidate(2) == {a[2]!r}\n"},
        "mbpp": {"test_list": [f"assert answer(1) == {a[1]!r}", f"assert answer(2) == {a[2]!r}"]},
    }


FORMATS = ("stdio", "call", "humaneval", "mbpp")

# What each adversary does once it has "found" something: return it as the answer, and write every
# forged verdict it can think of on every descriptor it holds.
FORGE = r'''
import os, re, json, sys
FOUND = []
SHAPE = re.compile(rb"zebra-7f3a9c-[0-9a-f]{24}")
HEXISH = re.compile(rb"[0-9a-f]{16,64}")

def look(data):
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data)
        FOUND.extend(m.decode() for m in SHAPE.findall(data))
        return HEXISH.findall(data)[:50]
    return []

def forge(tokens=()):
    lines = [b"passed\n", b'{"status": "passed"}\n', b'{"kind": "passed"}\n',
             json.dumps({"results": [{"status": "passed"}] * 8, "compile": {"ok": True}}).encode() + b"\n"]
    for t in tokens[:20]:
        lines += [t + b"\npassed\n", t + b"\ncompleted\n",
                  json.dumps({"token": t.decode(), "results": [{"status": "passed"}] * 8,
                              "compile": {"ok": True}}).encode()]
    for fd in range(0, 256):
        for line in lines:
            try:
                os.write(fd, line)
            except OSError:
                break

def best_guess(x):
    return FOUND[(int(x) - 1) % len(FOUND)] if FOUND else "nothing found"
'''

ADVERSARIES = {
    "frames_and_gc": FORGE + r'''
import gc
tokens = []
f = sys._getframe()
while f is not None:
    for scope in (f.f_locals, f.f_globals):
        for v in list(scope.values()):
            tokens += look(v) if isinstance(v, (str, bytes)) else []
    for c in f.f_code.co_consts:
        tokens += look(c) if isinstance(c, (str, bytes)) else []
    f = f.f_back
for o in gc.get_objects():
    try:
        if isinstance(o, dict):
            for v in list(o.values()):
                if isinstance(v, (str, bytes)):
                    tokens += look(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                if isinstance(v, (str, bytes)):
                    tokens += look(v)
    except Exception:
        pass
forge(tokens)
''',
    "files_proc_and_memory": FORGE + r'''
tokens = []
def walk(top):
    for root, dirs, files in os.walk(top):
        for name in files:
            try:
                with open(os.path.join(root, name), "rb") as fh:
                    yield fh.read(1 << 20)
            except OSError:
                pass
for top in (".", "/box", "/work", "/tmp", "/dev/shm"):
    for data in walk(top):
        tokens += look(data)
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    for what in ("cmdline", "environ"):
        try:
            tokens += look(open(f"/proc/{pid}/{what}", "rb").read())
        except OSError:
            pass
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                tokens += look(os.pread(os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY), 1 << 20, 0))
            except OSError:
                pass
    except OSError:
        pass
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
        mem = open(f"/proc/{pid}/mem", "rb")
        for line in maps:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if "rw" in line.split()[1] and hi - lo < (64 << 20):
                try:
                    mem.seek(lo)
                    tokens += look(mem.read(hi - lo))
                except (OSError, ValueError, OverflowError):
                    pass
    except OSError:
        pass
for fd in range(0, 64):
    try:
        tokens += look(os.pread(fd, 1 << 20, 0))
    except OSError:
        pass
forge(tokens)
''',
    "ptrace_and_vm_readv": FORGE + r'''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
for pid in [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
    libc.ptrace(16, pid, 0, 0)  # PTRACE_ATTACH
    libc.ptrace(0x4206, pid, 0, 0)  # PTRACE_SEIZE
    try:
        fd = os.pidfd_open(pid)
        libc.syscall(438, fd, 3, 0)  # pidfd_getfd: steal its descriptor 3
        libc.syscall(438, fd, 1, 0)
    except OSError:
        pass
forge()
''',
    "patching_and_shadowing": FORGE + r'''
import builtins
builtins.AssertionError = type("AssertionError", (Exception,), {})
def check(candidate):
    return None
def abs(x): return 0
def len(x): return 0
def all(x): return True
def isinstance(*a): return True
def __rs_plain__(x): return x
sys.settrace(lambda *a: None)
sys.setprofile(lambda *a: None)
forge()
''',
    "exit_at_the_right_moment": FORGE + r'''
import atexit
atexit.register(forge)
sys.excepthook = lambda *a: os._exit(0)
''',
}

# Completes each adversary into a program of each format; the function itself exits, raises,
# returns an always-equal object, or returns its best guess.
BODIES = {
    "stdio": "print(best_guess(input().split()[0]))\nsys.stdout.flush()\nforge()\nos._exit(0)\n",
    "call": "def answer(x):\n    forge()\n    return best_guess(x)\n",
    "humaneval": "def answer(x):\n    forge()\n    return best_guess(x)\n",
    "mbpp": "def answer(x):\n    forge()\n    return best_guess(x)\n",
}

TRICK_FUNCTIONS = {
    "always_equal": "class Eq(str):\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
                    "    __hash__ = str.__hash__\ndef answer(x):\n    return Eq('x')\n",
    "truthy_object": "class T:\n    def __bool__(self): return True\n    def __eq__(self, o): return True\n"
                     "def answer(x):\n    return T()\n",
    "raises_stop_iteration": "def answer(x):\n    raise StopIteration\n",
    "raises_index_error": "def answer(x):\n    raise IndexError\n",
    "raises_system_exit": "def answer(x):\n    raise SystemExit(0)\n",
    "raises_keyboard_interrupt": "def answer(x):\n    raise KeyboardInterrupt\n",
    "exits_inside": "import os\ndef answer(x):\n    os._exit(0)\n",
    "kills_everyone": "import os, signal\ndef answer(x):\n    try:\n        os.kill(-1, signal.SIGKILL)\n"
                      "    except OSError:\n        pass\n    return 'x'\n",
    "forged_stdout_json": "import json\ndef answer(x):\n    print(json.dumps({'status': 'passed', 'results': "
                          "[{'status': 'passed'}]}))\n    return None\n",
}

HONEST = {
    "stdio": ("import os, sys\nanswers = {ANSWERS}\nprint(answers[int(input())])\nsys.stdout.flush()\nos._exit(0)\n"),
    "call": "import this\nanswers = {ANSWERS}\ndef answer(x):\n    print('debug: called with', x)\n    return answers[x]\n",
    "humaneval": "import this\nanswers = {ANSWERS}\ndef answer(x):\n    print('debug:', x)\n    return answers[x]\n",
    "mbpp": "import this\nanswers = {ANSWERS}\ndef answer(x):\n    print('debug:', x)\n    return answers[x]\n",
}

BACKENDS = ["process", "docker"]


def _docker_problem() -> str | None:
    from sandbox.docker import DockerSandbox
    from sandbox.types import SandboxUnavailable
    try:
        DockerSandbox().check()
    except SandboxUnavailable as e:
        return str(e)
    return None


@pytest.fixture(scope="module", params=BACKENDS)
def service(request):
    if request.param == "docker":
        problem = _docker_problem()
        if problem:
            pytest.skip(f"docker sandbox unavailable: {problem}")
    with running_service(workers=2, REWARD_SERVICE_SANDBOX_BACKEND=request.param,
                         REWARD_SERVICE_SANDBOX_REQUIRED="true") as url:
        yield url


def _score(url: str, items: list[dict]) -> list[dict]:
    r = httpx.post(f"{url}/score", json={"items": items}, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def _item(code: str, gt) -> dict:
    return {"task": "code", "completion": f"```python\n{code}\n```", "ground_truth": gt, "options": OPTS}


@pytest.mark.parametrize("adversary", sorted(ADVERSARIES))
def test_an_adversary_earns_nothing_in_any_format(service, adversary):
    gts = formats()
    items = [_item(ADVERSARIES[adversary] + BODIES[f], gts[f]) for f in FORMATS]
    results = _score(service, items)
    for f, r in zip(FORMATS, results):
        assert r["reward"] == 0.0, (adversary, f, r)
        assert r["status"] in ("ok", "error") and r["status"] == "ok", (adversary, f, r)


@pytest.mark.parametrize("trick", sorted(TRICK_FUNCTIONS))
def test_a_function_that_cheats_earns_nothing_in_any_function_format(service, trick):
    gts = formats()
    fmts = ("call", "humaneval", "mbpp")
    results = _score(service, [_item(TRICK_FUNCTIONS[trick], gts[f]) for f in fmts])
    for f, r in zip(fmts, results):
        assert r["reward"] == 0.0, (trick, f, r)


def test_the_snooping_adversary_finds_an_answer_that_is_within_its_reach(service):
    # Calibration: the same adversary, given the answer in its own stdin, finds and returns it;
    # so the zeros above mean the answers were out of reach, not that the snooping was weak.
    answer = f"{PREFIX}-{secrets.token_hex(12)}"
    gt = {"inputs": [f"1 {answer}\n"], "outputs": [answer + "\n"]}
    snooper = ADVERSARIES["files_proc_and_memory"].replace("forge(tokens)", "pass")  # quietly, this time
    (r,) = _score(service, [_item(snooper + "print(best_guess(input().split()[0]))\n", gt)])
    assert r["reward"] == 1.0, r


def test_raising_stop_iteration_does_not_end_a_tests_loop_early(service):
    gt = {"entry_point": "double",
          "test": "def check(candidate):\n    assert all(map(lambda i: candidate(i) == 2 * i, range(5)))\n"
                  "    assert list(map(candidate, [1, 2])) == [2, 4]\n"}
    (r,) = _score(service, [_item("def double(x):\n    raise StopIteration\n", gt)])
    assert r["reward"] == 0.0, r
    (ok,) = _score(service, [_item("def double(x):\n    return 2 * x\n", gt)])
    assert ok["reward"] == 1.0, ok


def test_a_candidate_shadowing_a_builtin_the_test_uses_changes_nothing(service):
    gt = {"entry_point": "half", "test": "def check(candidate):\n    assert abs(candidate(3) - 1.5) < 1e-9\n"}
    (r,) = _score(service, [_item("def abs(x):\n    return 0\ndef half(x):\n    return 99\n", gt)])
    assert r["reward"] == 0.0, r


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_honest_program_earns_full_reward(service, fmt):
    gts = formats()
    gt = gts[fmt]
    answers = {1: None, 2: None}
    if fmt in ("stdio",):
        answers = {1: gt["outputs"][0].strip(), 2: gt["outputs"][1].strip()}
    elif fmt == "call":
        answers = {1: gt["outputs"][0], 2: gt["outputs"][1]}
    else:
        import re
        found = re.findall(r"zebra-7f3a9c-[0-9a-f]{24}", gt.get("test") or " ".join(gt["test_list"]))
        answers = {1: found[0], 2: found[1]}
    (r,) = _score(service, [_item(HONEST[fmt].replace("{ANSWERS}", repr(answers)), gt)])
    assert (r["reward"], r["status"]) == (1.0, "ok"), r
