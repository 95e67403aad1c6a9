"""The judge of assert-based tests (RUNS INSIDE THE SANDBOX, after wire.py; stdlib only).

A fork of the session's supervisor that never runs candidate code: it holds
the test (read from descriptor 4, which only it has), runs it with the
candidate's functions as ``Remote`` references over descriptor 3, and writes
ONE JSON report on the descriptor that was its stdout. Comparisons in the
test were rewritten by the service to pass through ``__rs_plain__``, which
accepts only plain values: a reference to a candidate's object can't be
compared, so no ``__eq__`` of the candidate's decides anything. Not dumpable
(inherited from the supervisor), so the candidate beside it can't ptrace it
or open its /proc entries.

One test (a HumanEval ``check``), or several (MBPP's asserts, ``{"tests": [...]}``)
against the same candidate process, each in a namespace of its own and with a
deadline of its own, one report each, until a test leaves the candidate unusable
(a timeout, its death, a broken protocol): the service judges the rest a pair each.
"""
import builtins as _builtins

_REPORT_FD = None


def _make_plain_operand():
    """The comparison-operand sanitizer: plain values pass (containers are rebuilt through the
    base type's own methods, so a namedtuple or Counter compares by content); anything else,
    a candidate's object above all, raises."""
    _type, _issubclass = type, issubclass
    scalars = (type(None), bool, int, float, complex, str, bytes, range, type)
    tuple_iter, dict_items = tuple.__iter__, dict.items

    def plain(v):
        t = _type(v)
        for s in scalars:
            if t is s:
                return v
        if t is list:
            return [plain(x) for x in v]
        if t is set or t is frozenset:
            return t(plain(x) for x in v)
        if t is tuple or _issubclass(t, tuple):
            return tuple([plain(x) for x in tuple_iter(v)])
        if t is dict or _issubclass(t, dict):
            return {plain(k): plain(x) for k, x in dict_items(v)}
        if t is Remote:
            raise TypeError("a comparison operand is a candidate's object, not a plain value")
        raise TypeError("comparison operand of type %s is not a plain value" % t.__name__)

    return plain


def _names_used(code):
    """Every global name the test's code (and the functions it defines) may look up."""
    out, stack = set(), [code]
    while stack:
        c = stack.pop()
        out.update(c.co_names)
        stack.extend(k for k in c.co_consts if isinstance(k, type(c)))
    return out


def _format(e):
    lines = []
    tb = e.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.startswith("test"):
            lines.append('  File "%s", line %d, in %s' % (code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    try:
        text = str(e)
    except BaseException:  # noqa: BLE001
        text = "<unprintable>"
    name = type(e).__name__
    if isinstance(e, CandidateError):
        name = "candidate raised " + name
    head = "Traceback (most recent call last):\n" + "\n".join(lines[-8:]) + "\n" if lines else ""
    return (head + name + (": " + text if text else ""))[-2000:]


class _Deadline(BaseException):
    """A test ran past its time: raised by the alarm wherever the judge is, a read included."""


def _greet(ep):
    """(the names the solution offers, None), or (None, the report of every test) when there are none."""
    try:
        ep.allow_modules = True
        hello = ep.recv()
        if "error" in hello:
            return None, {"status": "failed", "error": "the solution failed to load:\n" + str(hello["error"])[-2000:]}
        offered = ep.decode(hello.get("names", {"d": []}))
        ep.allow_modules = False
        if type(offered) is not dict:
            raise ProtocolError("bad greeting")
    except PeerGone:
        return None, {"status": "candidate_died", "error": "the program ended before the test started"}
    except ProtocolError as e:
        return None, {"status": "failed", "error": "the program broke the test protocol: %s" % e, "stop": 1}
    return offered, None


def judge(spec, ep):
    offered, failure = _greet(ep)
    if failure is not None:
        failure.pop("stop", None)
        return failure
    return _run(spec, offered, ep)


def judge_all(spec, ep):
    import signal
    import time

    def alarm(signum, frame):
        raise _Deadline()

    tests, limit, budget = spec["tests"], float(spec["test_timeout_s"]), float(spec["budget_s"])
    timeout = {"status": "timeout", "error": "the test ran past its %g s" % limit, "stop": 1}
    signal.signal(signal.SIGALRM, alarm)
    start = time.monotonic()
    try:  # loading the solution is the first test's time, as it is in a pair of its own
        signal.setitimer(signal.ITIMER_REAL, min(limit, budget))
        try:
            offered, failure = _greet(ep)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Deadline:
        offered, failure = None, timeout
    if failure is not None:
        # a solution that doesn't load fails every test the same way; anything else ends the batch
        return {"results": [failure] * (len(tests) if failure["status"] == "failed" and "stop" not in failure else 1)}
    results = []
    for test in tests:
        t0 = time.monotonic()
        left = budget - (t0 - start)  # the item's budget, which ends the pair: report before it does
        if left < 0.05:
            break
        try:
            signal.setitimer(signal.ITIMER_REAL, min(left, max(0.001, limit - (t0 - start)) if not results else limit))
            try:
                r = _run(test, offered, ep)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _Deadline:
            r = dict(timeout)
        if r["status"] == "need_source":
            return r
        r["time_s"] = round(time.monotonic() - (start if not results else t0), 4)
        results.append(r)
        if "stop" in r or r["status"] not in ("passed", "failed"):
            break
    return {"results": results}


def _run(spec, offered, ep):
    if "code" in spec:  # compiled by the service, when our bytecode is its
        import base64
        import marshal
        import sys
        if spec.get("magic") != sys.modules["_frozen_importlib_external"].MAGIC_NUMBER.hex():
            return {"status": "need_source"}
        steps = [marshal.loads(base64.b64decode(c)) for c in spec["code"]]
    else:
        steps = [compile(src, "test_%s_%d" % (spec.get("name", "0"), k), "exec", dont_inherit=True)
                 for k, src in enumerate(spec["steps"])]
    used = set()
    for code in steps:
        used |= _names_used(code)
    call = spec.get("call")
    # Only what the test looks up: a candidate's `abs` or `len` must never stand in for the real one
    # in the test's own arithmetic. A builtin's name is the candidate's only when it is the one name
    # of the candidate the test uses (MBPP's `assert sum(10, 15) == 25` tests a function named sum):
    # then it decides nothing but its own answer.
    builtin_names = set(dir(_builtins))
    reserved = {"__rs_plain__"} | ({"check"} if call else set())
    wanted = {k for k in offered if type(k) is str and k in used and k not in reserved}
    mine = wanted - builtin_names
    if not call and not mine and len(wanted) == 1:
        mine = wanted
    ns = {k: offered[k] for k in mine}
    ns.update({"__name__": "__test__", "__builtins__": _builtins, "__rs_plain__": _make_plain_operand()})
    try:
        for code in steps:
            exec(code, ns)
        if call:
            entry = offered.get(call)
            if entry is None:
                raise NameError("entry point %r is not defined by the solution" % call)
            check = ns.get("check")
            if check is None:
                raise NameError("the test code defines no check(candidate)")
            check(entry)
        return {"status": "passed"}
    except PeerGone:
        return {"status": "candidate_died", "error": "the program ended during the test"}
    except ProtocolError as e:
        return {"status": "failed", "error": "the program broke the test protocol: %s" % e, "stop": 1}
    except _Deadline:
        raise
    except BaseException as e:  # noqa: BLE001 - a failed assert, or anything else the test raised
        return {"status": "failed", "error": _format(e)}


def main():
    import json
    import os
    report = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # what the test prints goes nowhere; the report has its own descriptor
    os.close(devnull)
    data = b""
    while True:
        chunk = os.read(4, 1 << 20)
        if not chunk:
            break
        data += chunk
    os.close(4)
    spec = json.loads(data)
    del data
    ep = Endpoint(3, trusted=True)
    out = judge_all(spec, ep) if "tests" in spec else judge(spec, ep)
    view = memoryview(json.dumps(out).encode())
    while view:
        view = view[os.write(report, view):]


main()
