"""The candidate's side of an assert-based test (RUNS INSIDE THE SANDBOX, after wire.py; untrusted).

Runs in the candidate's own process: loads the solution (``main.py``) as the
module ``solution``, greets the judge with the names it defines, and answers
the judge's calls over descriptor 3 until the judge hangs up. Nothing here is
trusted: whatever this process sends is only the candidate's answer.
"""
import builtins
import os


def main():
    ep = Endpoint(3, trusted=False)
    ns = {"__name__": "solution", "__builtins__": builtins}
    try:
        with open("main.py", encoding="utf-8", errors="replace") as f:
            code = compile(f.read(), "solution.py", "exec", dont_inherit=True)
        exec(code, ns)
    except BaseException as e:  # noqa: BLE001
        import traceback
        ep.send({"error": "".join(traceback.format_exception_only(type(e), e))[-2000:]})
        return
    names = []
    for k, v in ns.items():
        if type(k) is not str or k.startswith("__"):
            continue
        t = type(v)
        if t in (type(None), bool, int, float, str) or t is type(os):
            names.append([k, ep.encode(v)])
        else:
            names.append([k, {"r": ep.export(v)}])
    ep.send({"hello": 1, "names": {"d": names}})
    ep.serve()


main()
