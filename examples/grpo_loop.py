"""A GRPO-shaped training loop on a CPU, with the reward service as the only judge.

The "policy" is a softmax over answer styles (right and boxed, wrong, right but
unboxed, hedged between two answers, no answer). Each step it writes a group of
completions per prompt and sends them in one request with a ``group`` per prompt
and a ``prompt_id``; the service scores them and returns each completion's GRPO
advantage ``(r - mean) / (std + 1e-6)`` within its group, plus per-group
statistics. Groups the service flags ``zero_variance`` (every sample scored the
same: no signal) are dropped, as in DAPO's dynamic sampling, and a
policy-gradient step moves probability toward the styles that beat their group.
The mean reward climbs step by step -- the service's verdicts are all that drives
it; this script does no reward arithmetic of its own. At the end it prints the
service's running pass rate of each prompt (``POST /prompts/stats``).

    python examples/grpo_loop.py                          # starts an embedded service
    python examples/grpo_loop.py --url http://127.0.0.1:8000 --api-key "$KEY"

Without ``--url`` it serves ``reward_service.api:create_app`` itself on a free
loopback port for the duration of the run (one scoring worker).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from reward_service.client import RewardClient  # noqa: E402

PROBLEMS = [
    ("Natalia sold clips to 48 friends in April, and half as many in May. How many in total?", "72"),
    ("Weng earns $12 an hour. She babysat for 50 minutes. How much did she earn?", "10"),
    ("What is the sum of the first 10 positive integers?", "55"),
    ("Solve for x: 3x + 7 = 22.", "5"),
    ("What is 1/2 + 1/3?", "\\frac{5}{6}"),
    ("How many positive divisors does 36 have?", "9"),
]


def wrong(answer: str) -> str:
    return str(int(answer) + 1) if answer.isdigit() else "\\frac{1}{6}"


# Answer styles the policy chooses among; each writes a completion for a problem.
STYLES = {
    "boxed_right": lambda a: f"Let me work it out step by step. The answer is \\boxed{{{a}}}.",
    "boxed_wrong": lambda a: f"Working quickly, I get \\boxed{{{wrong(a)}}}.",
    "hedged": lambda a: f"It is either \\boxed{{{a}}} or \\boxed{{{wrong(a)}}}.",
    "unboxed": lambda a: f"I think it is about {wrong(a)} or so.",
    "no_answer": lambda a: "This problem is interesting, but I am not sure how to proceed.",
}
NAMES = list(STYLES)


class StylePolicy:
    """Softmax over styles; starts biased toward bad habits so there is something to learn."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.logits = {"boxed_right": -1.0, "boxed_wrong": 0.5, "hedged": 0.5, "unboxed": 0.5, "no_answer": 0.0}

    def probs(self) -> dict[str, float]:
        top = max(self.logits.values())
        exp = {k: math.exp(v - top) for k, v in self.logits.items()}
        total = sum(exp.values())
        return {k: v / total for k, v in exp.items()}

    def sample(self) -> str:
        p = self.probs()
        return self.rng.choices(NAMES, weights=[p[n] for n in NAMES])[0]

    def update(self, styles: list[str], advantages: list[float], lr: float) -> None:
        # REINFORCE on a softmax: d log pi(s) / d logit_k = 1[k == s] - pi(k).
        p = self.probs()
        grad = {k: 0.0 for k in NAMES}
        for s, adv in zip(styles, advantages):
            for k in NAMES:
                grad[k] += adv * ((k == s) - p[k])
        for k in NAMES:
            self.logits[k] += lr * grad[k] / len(styles)


def train(client: RewardClient, steps: int, group_size: int, lr: float, seed: int) -> list[float]:
    policy = StylePolicy(random.Random(seed))
    history = []
    for step in range(1, steps + 1):
        styles, items = [], []
        for index, (question, answer) in enumerate(PROBLEMS):
            for _ in range(group_size):
                style = policy.sample()
                styles.append(style)
                items.append({"task": "math", "prompt": question, "completion": STYLES[style](answer),
                              "ground_truth": answer, "group": f"step{step}-q{index}", "prompt_id": f"q{index}"})
        # one batch per step, as a trainer would; the service does the group arithmetic
        response = client.score_response(items, advantage="grpo")
        keep = [i for i, (item, r) in enumerate(zip(items, response.results))
                if not response.groups[item["group"]].zero_variance and r.advantage is not None]
        if keep:
            policy.update([styles[i] for i in keep], [response.results[i].advantage for i in keep], lr)
        mean = response.summary.mean_reward
        history.append(mean)
        dropped = sum(g.zero_variance for g in response.groups.values())
        p = policy.probs()
        print(f"step {step:3d}  mean reward {mean:.3f}  groups without signal {dropped}/{len(response.groups)}  "
              f"p(boxed_right)={p['boxed_right']:.2f}  "
              + " ".join(f"{k}={v:.2f}" for k, v in p.items() if k != "boxed_right"), flush=True)
    stats = client.prompt_stats(f"q{i}" for i in range(len(PROBLEMS)))
    print("pass rate per prompt (the service's running counts): "
          + "  ".join(f"{pid}={s.solved:.2f}/{s.samples}" for pid, s in sorted(stats.items())))
    return history


@contextlib.contextmanager
def embedded_service() -> Iterator[str]:
    import uvicorn

    from reward_service.api import create_app
    from reward_service.config import Settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Math only: don't refuse to start where no code sandbox is available.
    settings = Settings(host="127.0.0.1", port=port, workers=1, sandbox_required=False)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise SystemExit("embedded reward service failed to start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="reward service URL; omitted: start an embedded service")
    ap.add_argument("--api-key", default=os.environ.get("REWARD_SERVICE_API_KEY"))
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--group-size", type=int, default=8, help="completions per prompt (GRPO's G)")
    ap.add_argument("--lr", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    service = contextlib.nullcontext(args.url) if args.url else embedded_service()
    with service as url, RewardClient(url, args.api_key) as client:
        history = train(client, args.steps, args.group_size, args.lr, args.seed)
    print(f"mean reward: first step {history[0]:.3f} -> last step {history[-1]:.3f}")


if __name__ == "__main__":
    main()
