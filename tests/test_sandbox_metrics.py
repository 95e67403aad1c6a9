"""Sandbox outcomes are exported in embedded mode too (the dashboard's sandbox panel), once per run."""
from __future__ import annotations

import httpx

try:  # tests/ as a package or as a plain directory on sys.path
    from tests.live_service import running_service
except ImportError:
    from live_service import running_service

ADD_TESTS = {"inputs": ["1 2\n"], "outputs": ["3\n"]}
ADD = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
CRASH = "```python\nraise SystemExit(3)\n```"


def runs(url: str) -> dict[str, float]:
    out = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("reward_sandbox_runs_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.removeprefix("reward_sandbox_runs_total")] = float(value)
    return out


def test_embedded_service_counts_each_sandbox_run_by_status_once():
    # The no-isolation backend: this test is about counting, and these two snippets are ours.
    with running_service(workers=1) as url:
        items = [{"task": "code", "completion": c, "ground_truth": ADD_TESTS} for c in (ADD, ADD, CRASH)]
        body = httpx.post(f"{url}/score", json={"items": items}, timeout=60).json()
        assert [r["reward"] for r in body["results"]] == [1.0, 1.0, 0.0]
        counted = runs(url)
    # Three items, two sandbox sessions (the duplicate ADD was merged), both of which ran to the end
    # (the sandbox's status; the program's own exit is in the item's `statuses`).
    assert counted == {'{backend="unsafe",status="ok"}': 2.0}
