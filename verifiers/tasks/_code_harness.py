"""Trusted test harness: the main program of every ``code`` sandbox session.

Run by the verifier as ``sandbox.run("python", <this file>, stdin=<spec JSON>,
files={"solution.py" | "solution.cpp": ...})``; standard library only.
It compiles the solution once, then runs each test in a fresh child
(a fork of this process for Python, the binary for C++) under a per-test
CPU rlimit, a wall-clock kill and an address-space limit, and finally
prints ONE JSON report on its own stdout.

Trust model. This process is trusted; the solution never runs in it.
Children get their own pipes for stdin/stdout/stderr and a result pipe,
every other descriptor closed, no capabilities, and inherit "not dumpable"
(so ``/proc/<harness>/mem``, ``environ``, ``fd/*`` are closed to them).
A test counts as run to the end only when the harness code in the child
sends a message starting with that test's random nonce over the result
pipe after the test finished: exiting with status 0, ``os._exit``,
``atexit`` hooks or a replaced ``sys.excepthook`` never produce one.
For stdin/stdout and call-based tests the expected outputs are not in
this session at all: the verifier compares outside, so the child's output
is only data. Call-based return values are converted to plain JSON
builtins with exact type checks before leaving the child.

Assert-based tests (HumanEval ``check``, MBPP ``assert``) must run in the
same interpreter as the candidate. They get a ``builtins`` snapshot and
shallow copies of the modules they import, both taken before the
candidate ran, and every operand of a comparison in the test code (except
``is``/``is not``) is rebuilt from plain builtins with exact type checks,
so objects whose ``__eq__`` always says True fail.
KNOWN LIMITATION: code in the same process can still introspect: a
candidate can walk ``sys._getframe()`` to the caller's constants, find the
test source or this test's nonce with ``gc.get_objects()`` or by reading
``/proc/self/mem``, install ``sys.settrace`` hooks or patch the internals
of modules the test uses. Closing that needs the assertions to run out of
process, which the HumanEval/MBPP formats don't allow.
"""
from __future__ import annotations

import ast
import builtins
import ctypes
import json
import os
import resource
import selectors
import signal
import sys
import time
import types

RESULT_FD = 3
STDOUT_CAP = 2 << 20  # per test; more is output_limit
TOTAL_OUTPUT_CAP = 32 << 20  # over the whole report
RESULT_CAP = 8 << 20
STDERR_TAIL = 2000

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS = 28, 38


# ---------------------------------------------------------------- child side

def _drop_privileges() -> None:
    """No capabilities, and none regained on exec (matters when the sandbox runs us as root)."""
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _libc.prctl(PR_SET_SECUREBITS, 0x2F, 0, 0, 0)  # NOROOT, NO_SETUID_FIXUP, both locked
    for cap in range(64):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _libc.capset(header, data)


def _enter_child(stdin_fd: int, out_fd: int, err_fd: int, res_fd: int | None, limits: dict) -> None:
    os.setsid()
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.dup2(stdin_fd, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    keep = 3
    if res_fd is not None:
        os.dup2(res_fd, RESULT_FD)
        keep = RESULT_FD + 1
    os.closerange(keep, 1 << 16)
    cpu = int(limits["timeout_s"]) + 1
    mem = limits["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _, stack_hard = resource.getrlimit(resource.RLIMIT_STACK)
    stack = mem if stack_hard == resource.RLIM_INFINITY else min(mem, stack_hard)
    try:  # deep recursion is common in Python solutions
        resource.setrlimit(resource.RLIMIT_STACK, (stack, stack_hard))
    except (ValueError, OSError):
        pass
    _drop_privileges()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def _plain_json(value, _type=type, _int=int, _float=float, _str=str, _bool=bool, _list=list,
                _tuple=tuple, _dict=dict, _none=type(None), _TypeError=TypeError):
    """A copy made only of exact JSON builtins (tuples become lists); anything else raises."""
    t = _type(value)
    if t is _none or t is _bool or t is _int or t is _float or t is _str:
        return value
    if t is _list or t is _tuple:
        return [_plain_json(v) for v in value]
    if t is _dict:
        out = {}
        for k, v in value.items():
            kt = _type(k)
            if kt is _str:
                key = k
            elif kt is _int or kt is _float or kt is _bool or kt is _none:
                key = _json_key(k)
            else:
                raise _TypeError(f"dict key of type {kt.__name__} is not JSON")
            out[key] = _plain_json(v)
        return out
    raise _TypeError(f"returned a {t.__name__}, not a plain JSON value")


def _json_key(k) -> str:
    return json.dumps(k) if not isinstance(k, str) else k


def _make_plain_operand():
    """Comparison-operand sanitizer for assert tests, bound to pristine builtins."""
    import collections

    _type, _TypeError = type, TypeError
    scalars = {type(None), bool, int, float, complex, str, bytes, range}
    seqs = {list: list, tuple: tuple, set: set, frozenset: frozenset}
    dicts = {dict, collections.Counter, collections.OrderedDict, collections.defaultdict}

    def plain(v):
        t = _type(v)
        if t in scalars:
            return v
        if t is type:  # a class with the default metaclass compares by identity
            return v
        if t in seqs:
            return seqs[t]([plain(x) for x in v])
        if t in dicts:
            return {plain(k): plain(x) for k, x in dict.items(v)}
        raise _TypeError(f"comparison operand of type {t.__name__} is not a plain value")

    return plain


def _send(nonce: bytes, message: dict, _write=os.write, _dumps=json.dumps) -> None:
    data = nonce + b"\n" + _dumps(message).encode()
    view = memoryview(data)
    while view:
        n = _write(RESULT_FD, view)
        view = view[n:]


def _python_child(spec: dict, code, test, nonce: bytes, prepared: dict) -> None:
    # Everything the harness needs after the candidate ran is bound here first,
    # so patching builtins, os, sys or json from the candidate changes nothing.
    _exit, _BaseException, _SystemExit, _type, _int = os._exit, BaseException, SystemExit, type, int
    _format_exc = _format_exception
    send, plain_json = _send, _plain_json
    mode = spec["mode"]
    if mode == "stdio":
        sys.stdin = open(0, "r", encoding="utf-8", errors="replace", closefd=False)
        sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False, buffering=1)
    out, err = sys.stdout, sys.stderr

    if mode == "assert":
        snapshot = dict(builtins.__dict__)
        clones = _clone_modules(prepared["imports"])
        plain_operand = _make_plain_operand()

    ns = {"__name__": "__main__" if mode == "stdio" else "solution", "__builtins__": builtins}
    message = None
    try:
        exec(code, ns)
    except _SystemExit as e:
        c = e.code
        if mode == "stdio" and (c is None or (_type(c) is _int and c == 0)):
            message = {"kind": "completed"}
        else:
            message = {"kind": "runtime_error", "error": f"exited (SystemExit {c!r:.100}) before the tests ran"
                       if mode != "stdio" else f"exit status {c!r:.100}"}
    except _BaseException as e:
        message = {"kind": "runtime_error", "error": _format_exc(e)}
    else:
        if mode == "stdio":
            message = {"kind": "completed"}
    if message is not None:
        try:
            out.flush()
        except _BaseException:
            pass
        try:
            err.flush()
        except _BaseException:
            pass
        send(nonce, message)
        _exit(0)

    if mode == "call":
        try:
            fn = _find_function(ns, spec["fn_name"])
            value = fn(*test)
        except _SystemExit as e:
            message = {"kind": "runtime_error", "error": f"SystemExit {e.code!r:.100} inside the function"}
        except _BaseException as e:
            message = {"kind": "runtime_error", "error": _format_exc(e)}
        else:
            try:
                message = {"kind": "completed", "value": plain_json(value)}
            except _BaseException as e:
                message = {"kind": "bad_return", "error": f"{_type(e).__name__}: {e}"[:500]}
    else:
        test_builtins = dict(snapshot)
        real_import = snapshot["__import__"]

        def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
            if level == 0 and name in clones:
                return clones[name]
            return real_import(name, globals, locals, fromlist, level)

        test_builtins["__import__"] = guarded_import
        test_ns = {k: v for k, v in ns.items() if not k.startswith("__")}
        test_ns.update({"__name__": "__test__", "__builtins__": test_builtins, "__rs_plain__": plain_operand})
        try:
            for step in prepared["tests"][test]:
                exec(step, test_ns)
            call = spec["asserts"][test].get("call")
            if call:
                if call not in ns:
                    raise NameError(f"entry point {call!r} is not defined")
                check = test_ns.get("check")
                if check is None:
                    raise NameError("the test code defines no check(candidate)")
                check(ns[call])
            message = {"kind": "passed"}
        except _BaseException as e:
            message = {"kind": "failed", "error": _format_exc(e)}
    send(nonce, message)
    _exit(0)


def _find_function(ns: dict, name: str):
    fn = ns.get(name)
    if fn is not None:
        return fn
    cls = ns.get("Solution")
    if cls is not None:
        return getattr(cls(), name)
    raise NameError(f"no function {name!r} at top level or in class Solution")


def _format_exception(e: BaseException) -> str:
    try:
        import traceback

        tb = e.__traceback__
        if tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            e = e.with_traceback(tb.tb_next)  # the harness frame is noise to the reader
        return "".join(traceback.format_exception(e))[-STDERR_TAIL:]
    except BaseException:
        return "an exception that could not be formatted"


def _clone_modules(names: list[str]) -> dict:
    clones = {}
    for name in names:
        try:
            mod = __import__(name)
        except BaseException:
            continue
        clone = types.ModuleType(name)
        clone.__dict__.update(mod.__dict__)
        clones[name] = clone
    return clones


# --------------------------------------------------------------- parent side

class _PlainCompare(ast.NodeTransformer):
    """Route every value compared by ``==``, ``<``, ``in``... through ``__rs_plain__``."""

    def visit_Compare(self, node: ast.Compare) -> ast.Compare:
        self.generic_visit(node)
        operands = [node.left, *node.comparators]
        identity = [isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops]
        wrapped = []
        for i, operand in enumerate(operands):
            neighbours = identity[max(i - 1, 0): i + 1]
            if all(neighbours):
                wrapped.append(operand)
            else:
                wrapped.append(ast.copy_location(
                    ast.Call(ast.Name("__rs_plain__", ast.Load()), [operand], []), operand))
        node.left, node.comparators = wrapped[0], wrapped[1:]
        return node


def _compile_test_code(source: str, label: str):
    tree = _PlainCompare().visit(ast.parse(source))
    ast.fix_missing_locations(tree)
    imports = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.update(a.name.split(".")[0] for a in node.names if "." not in a.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if "." not in node.module:
                imports.add(node.module)
    return compile(tree, label, "exec", dont_inherit=True), imports


def _collect(pid: int, fds: dict[str, int], timeout_s: float, caps: dict[str, int]) -> dict:
    """Read the child's pipes until it exits or the wall limit; kill its process group after."""
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    bufs = {name: bytearray() for name in fds}
    sel = selectors.DefaultSelector()
    for name, fd in fds.items():
        sel.register(fd, selectors.EVENT_READ, name)
    try:
        pidfd = os.pidfd_open(pid)
        sel.register(pidfd, selectors.EVENT_READ, None)
    except (AttributeError, OSError):
        pidfd = None  # then the end of all pipes stands for the end of the child
    timed_out = over = False

    def read(key) -> None:
        nonlocal over
        data = os.read(key.fd, 1 << 16)
        if not data:
            sel.unregister(key.fd)
            return
        room = caps[key.data] - len(bufs[key.data])
        if len(data) > room and key.data == "stdout":
            over = True
        bufs[key.data] += data[:max(room, 0)]

    exited = False
    while not exited and not over:
        if pidfd is None and len(sel.get_map()) == 0:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for key, _ in sel.select(remaining):
            if key.data is None:
                exited = True
            else:
                read(key)
    try:  # the child and anything it started
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - t0
    if pidfd is not None:
        sel.unregister(pidfd)
        os.close(pidfd)
    # What the child wrote just before it ended; a straggler outside its group can't hold us long.
    drain_until = time.monotonic() + 0.2
    while sel.get_map() and not over:
        events = sel.select(max(0.0, drain_until - time.monotonic()))
        if not events:
            break
        for key, _ in events:
            read(key)
    sel.close()
    for fd in fds.values():
        os.close(fd)
    return {"bufs": bufs, "status": status, "timed_out": timed_out, "over": over, "wall": wall,
            "cpu": usage.ru_utime + usage.ru_stime}


def _run_one(spec: dict, index: int, code, prepared: dict) -> dict:
    mode, language = spec["mode"], spec["language"]
    timeout_s = prepared["timeout_now"]
    stdin_fd = _stdin_for(spec["tests"][index] if mode == "stdio" else None)
    out_r, out_w = os.pipe() if mode == "stdio" else (None, os.open(os.devnull, os.O_WRONLY))
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe() if language == "python" else (None, None)
    nonce = os.urandom(16).hex().encode()
    limits = {"timeout_s": timeout_s, "memory_mb": spec["memory_mb"]}
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            for fd in (out_r, err_r, res_r):
                if fd is not None:
                    os.close(fd)
            _enter_child(stdin_fd, out_w, err_w, res_w, limits)
            if language == "cpp":
                os.execv(prepared["binary"], [prepared["binary"]])
            test = spec["tests"][index] if mode == "call" else index
            _python_child(spec, code, test, nonce, prepared)
        finally:
            os._exit(127)
    for fd in (stdin_fd, out_w, err_w, res_w):
        if fd is not None:
            os.close(fd)
    fds = {"stderr": err_r}
    caps = {"stderr": 1 << 16, "stdout": STDOUT_CAP, "result": RESULT_CAP}
    if out_r is not None:
        fds["stdout"] = out_r
    if res_r is not None:
        fds["result"] = res_r
    got = _collect(pid, fds, timeout_s, caps)
    return _outcome(spec, got, nonce, timeout_s)


def _stdin_for(text: str | None) -> int:
    if text is None:
        return os.open(os.devnull, os.O_RDONLY)
    data = text.encode()
    try:
        fd = os.memfd_create("stdin", 0)
    except (AttributeError, OSError):
        import tempfile

        fd = os.dup(tempfile.TemporaryFile().fileno())
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _outcome(spec: dict, got: dict, nonce: bytes, timeout_s: float) -> dict:
    bufs, status = got["bufs"], got["status"]
    stderr = bytes(bufs["stderr"]).decode(errors="replace")[-STDERR_TAIL:]
    out = {"time_s": round(got["wall"], 4), "cpu_s": round(got["cpu"], 4)}
    message = None
    raw = bytes(bufs.get("result", b""))
    if raw.startswith(nonce + b"\n"):
        try:
            message = json.loads(raw[len(nonce) + 1:])
        except ValueError:
            message = None
    signalled = os.WIFSIGNALED(status)
    sig = os.WTERMSIG(status) if signalled else None
    if got["timed_out"] or sig == signal.SIGXCPU or (sig == signal.SIGKILL and got["cpu"] >= timeout_s):
        out.update(status="timeout", error=f"exceeded the {timeout_s:g} s limit")
    elif got["over"]:
        out.update(status="output_limit", error=f"more than {STDOUT_CAP} bytes of output")
    elif spec["language"] == "cpp":
        if signalled:
            out.update(status="runtime_error", error=f"killed by signal {sig}")
        elif os.WEXITSTATUS(status) != 0:
            out.update(status="runtime_error", error=f"exit status {os.WEXITSTATUS(status)}")
        else:
            out.update(status="completed")
    elif message is None or type(message) is not dict or message.get("kind") not in _KINDS:
        how = f"killed by signal {sig}" if signalled else f"exit status {os.WEXITSTATUS(status)}"
        out.update(status="no_result", error=f"the program ended ({how}) before the test finished")
    else:
        out["status"] = message["kind"]
        if "error" in message:
            out["error"] = str(message["error"])[-STDERR_TAIL:]
        if "value" in message:
            out["value"] = message["value"]
    if out["status"] in ("runtime_error", "no_result", "failed") and (
            "MemoryError" in stderr or "std::bad_alloc" in stderr or "MemoryError" in out.get("error", "")):
        out["status"] = "memory_limit"
    if spec["mode"] == "stdio" and out["status"] == "completed":
        out["stdout"] = bytes(bufs["stdout"]).decode(errors="replace")
    if stderr and out["status"] not in ("completed", "passed"):
        out["stderr"] = stderr
    return out


_KINDS = {"completed", "passed", "failed", "runtime_error", "bad_return"}


def _compile_cpp(spec: dict, workdir: str) -> tuple[dict, str | None]:
    import subprocess

    binary = os.path.join(workdir, "solution.bin")
    t0 = time.monotonic()
    try:
        cc = subprocess.run(["g++", "-O2", "-std=gnu++17", "-pipe", "-o", binary, "solution.cpp"],
                            cwd=workdir, capture_output=True, timeout=spec["compile_timeout_s"],
                            stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"ok": False, "output": "compilation timed out"}, None
    except OSError as e:
        return {"ok": False, "output": f"cannot run g++: {e}"}, None
    info = {"ok": cc.returncode == 0, "time_s": round(time.monotonic() - t0, 3),
            "output": cc.stderr.decode(errors="replace")[-4000:]}
    return info, binary if cc.returncode == 0 else None


def _workdir() -> str:
    here = os.getcwd()
    if os.access(here, os.W_OK):
        return here
    import tempfile

    return tempfile.mkdtemp()


def run(spec: dict) -> dict:
    report: dict = {"token": spec["token"], "results": []}
    workdir = os.getcwd()
    prepared: dict = {}
    code = None
    if spec["language"] == "python":
        try:
            with open(os.path.join(workdir, "solution.py"), encoding="utf-8", errors="replace") as f:
                source = f.read()
            code = compile(source, "solution.py", "exec", dont_inherit=True)
            report["compile"] = {"ok": True}
        except (SyntaxError, ValueError) as e:
            report["compile"] = {"ok": False, "output": f"{type(e).__name__}: {e}"}
            return report
    else:
        src = os.path.join(workdir, "solution.cpp")
        build = _workdir()
        if build != workdir:
            with open(src, "rb") as f, open(os.path.join(build, "solution.cpp"), "wb") as g:
                g.write(f.read())
        report["compile"], prepared["binary"] = _compile_cpp(spec, build)
        if prepared["binary"] is None:
            return report
    if spec["mode"] == "assert":
        imports: set[str] = set()
        prepared["tests"] = []
        for i, t in enumerate(spec["asserts"]):
            steps = []
            for part in ("setup", "code"):
                if t.get(part):
                    compiled, used = _compile_test_code(t[part], f"test_{i}_{part}")
                    steps.append(compiled)
                    imports |= used
            prepared["tests"].append(steps)
        prepared["imports"] = sorted(imports)
        spec["tests"] = spec["asserts"]

    budget_end = time.monotonic() + spec["budget_s"]
    output_total = 0
    stop = False
    for i in range(len(spec["tests"])):
        remaining = budget_end - time.monotonic()
        if stop or remaining < 0.05 or output_total > TOTAL_OUTPUT_CAP:
            why = "an earlier test failed" if stop else "the time or output budget of the whole run was spent"
            report["results"].append({"status": "not_run", "error": why})
            continue
        prepared["timeout_now"] = min(spec["timeout_s"], remaining)
        r = _run_one(spec, i, code, prepared)
        output_total += len(r.get("stdout", "")) + (len(json.dumps(r["value"])) if "value" in r else 0)
        report["results"].append(r)
        if spec["stop_on_failure"] and r["status"] not in ("completed", "passed"):
            stop = True
    return report


def main() -> None:
    # Children must not read this process's memory, fds or environment through /proc.
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    spec = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    t0 = time.monotonic()
    report = run(spec)
    report["harness_time_s"] = round(time.monotonic() - t0, 4)
    data = json.dumps(report).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]


if __name__ == "__main__":
    main()
