"""Parse a train_ppo_ray command line with OpenRLHF's own parser.

argv[1]: JSON {"argv": [flags...]}. Prints JSON: {"ok": true, "args": {dest: value}, "options": [...]}
or {"ok": false, "error": OpenRLHF's message} when the parser or its checks refuse the flags.
"""
import contextlib
import io
import json
import sys
from types import SimpleNamespace

from openrlhf_cpu import parse_cli


def flat(ns, prefix=""):
    out = {}
    for key, value in vars(ns).items():
        if isinstance(value, SimpleNamespace):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (str, int, float, bool, list, type(None))) else repr(value)
    return out


def main() -> None:
    request = json.loads(sys.argv[1])
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args, options = parse_cli(request["argv"])
    except SystemExit as e:
        print(json.dumps({"ok": False, "error": err.getvalue()[-2000:] or f"exit {e.code}"}))
        return
    except AssertionError as e:
        print(json.dumps({"ok": False, "error": f"AssertionError: {e}"}))
        return
    print(json.dumps({"ok": True, "args": flat(args), "options": sorted(options)}))


main()
