"""One call-based test in the candidate's process (RUNS INSIDE THE SANDBOX; untrusted).

Reads ``{"fn": name, "args": [...]}`` on descriptor 3, loads the solution
(``main.py``) as the module ``solution``, calls the function (top level, else
a method of ``class Solution``) and writes its return value as plain JSON on
descriptor 4. The service compares that value with the expected one outside
the sandbox; nothing written here can say "passed".
"""
import builtins
import json
import os


def _plain(v):
    """Exact JSON builtins only (tuples become lists); anything else raises."""
    t = type(v)
    if v is None or t is bool or t is int or t is float or t is str:
        return v
    if t is list or t is tuple:
        return [_plain(x) for x in v]
    if t is dict:
        out = {}
        for k, x in v.items():
            kt = type(k)
            if kt is str:
                out[k] = _plain(x)
            elif kt in (int, float, bool) or k is None:
                out[json.dumps(k)] = _plain(x)  # as json.dumps does: 1 -> "1"
            else:
                raise TypeError("dict key of type %s is not JSON" % kt.__name__)
        return out
    raise TypeError("returned a %s, not a plain JSON value" % t.__name__)


def main():
    data = b""
    while True:
        chunk = os.read(3, 1 << 20)
        if not chunk:
            break
        data += chunk
    os.close(3)
    spec = json.loads(data)
    del data
    ns = {"__name__": "solution", "__builtins__": builtins}
    with open("main.py", encoding="utf-8", errors="replace") as f:
        exec(compile(f.read(), "solution.py", "exec", dont_inherit=True), ns)
    fn = ns.get(spec["fn"])
    if fn is None:
        cls = ns.get("Solution")
        if cls is None:
            raise NameError("no function %r at top level or in class Solution" % spec["fn"])
        fn = getattr(cls(), spec["fn"])
    value = fn(*spec["args"])
    try:
        text = json.dumps(_plain(value), allow_nan=True)
    except (TypeError, ValueError, RecursionError) as e:
        os.write(2, ("bad_return: %s\n" % e).encode())
        os._exit(3)
    view = memoryview(text.encode())
    while view:
        view = view[os.write(4, view):]


main()
