"""A reproducible, realistic mix of math items, shaped like a GRPO step: groups
of 16 samples per prompt share a gold answer; answers of many types, right
and wrong, boxed and not, each behind its own chain of thought. Every item
is unique (no two completions are equal), so merging duplicates gains nothing."""
from __future__ import annotations

import json
import random
from pathlib import Path

REGRESSIONS = Path(__file__).resolve().parent.parent / "tests" / "data" / "math_verify_regressions.jsonl"

FILLER = ("Let me think about this step by step. First we rewrite the expression, then substitute "
          "the known values and simplify. Checking the edge cases, nothing changes. ")


def _answers(rng: random.Random, i: int) -> tuple[str, str, str]:
    """(gold, right answer as a model might write it, wrong answer)"""
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    kind = i % 9
    if kind == 0:
        return str(a * b + i), str(a * b + i), str(a * b + i + 1)
    if kind == 1:
        return rf"\frac{{{a}}}{{{a + b}}}", rf"\dfrac{{{2 * a}}}{{{2 * (a + b)}}}", rf"\frac{{{a + 1}}}{{{a + b}}}"
    if kind == 2:
        return f"{a / 4:g}", rf"\frac{{{a}}}{{4}}", f"{a / 4 + 0.5:g}"
    if kind == 3:
        return rf"\{{{a}, {b + 100}\}}", rf"\{{{b + 100}, {a}\}}", rf"\{{{a}, {b}\}}"
    if kind == 4:
        return f"[{a}, {a + b})", f"[{a},{a + b})", f"({a}, {a + b}]"
    if kind == 5:
        return rf"{a}\sqrt{{{b}}}", rf"\sqrt{{{a * a * b}}}", rf"{a + 1}\sqrt{{{b}}}"
    if kind == 6:
        return f"x^2 + {a}x + {b}", f"{b} + {a}x + x^2", f"x^2 + {b}x + {a}"
    if kind == 7:
        return rf"\begin{{pmatrix}} {a} & {b} \\ {b} & {a} \end{{pmatrix}}", \
            rf"\begin{{pmatrix}}{a}&{b}\\{b}&{a}\end{{pmatrix}}", rf"\begin{{pmatrix}}{b}&{a}\\{a}&{b}\end{{pmatrix}}"
    return f"{a}\\%", f"{a}\\%", f"{a + 3}\\%"


def make_items(n: int = 3000, seed: int = 0, group: int = 16) -> list[dict]:
    rng = random.Random(seed)
    regress = [json.loads(line) for line in REGRESSIONS.open()]
    items = []
    for i in range(n):
        prompt = i // group
        if prompt % 10 == 9:  # a tenth of the prompts come from Math-Verify's regression suite
            row = regress[prompt % len(regress)]
            gold, completion = row["gold"], f"<think>{FILLER * (1 + i % 3)} (attempt {i})</think>\n{row['pred']}"
        else:
            gold, right, wrong = _answers(random.Random(seed * 1_000_003 + prompt), prompt)
            answer = right if rng.random() < 0.6 else wrong
            style = rng.random()
            if style < 0.75:
                tail = f"So the final answer is $\\boxed{{{answer}}}$."
            elif style < 0.9:
                tail = f"The answer is ${answer}$."
            else:
                tail = f"Therefore we obtain ${answer}$"
            completion = f"<think>{FILLER * rng.randint(1, 6)} (item {i})</think>\n{FILLER}{tail}"
        items.append({"id": str(i), "task": "math", "completion": completion, "ground_truth": gold})
    return items
