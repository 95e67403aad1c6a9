"""The trainers' own environments (``.trainers/NAME``, made by ``deploy/install-trainers.sh``).

A trainer test runs the trainer's own reward code in that environment's Python, in
a subprocess, against a live service started by the test in this one: the trainer's
pinned libraries never meet the service's.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
TRAINERS = REPO / ".trainers"


def trainer_python(name: str) -> Path:
    """The Python of trainer ``name``'s environment, or a skip saying how to make it."""
    python = TRAINERS / name / "bin" / "python"
    if not (TRAINERS / name / ".installed").is_file() or not python.exists():
        pytest.skip(f"{name} is not installed here: run `bash deploy/install-trainers.sh {name}` (CI does)")
    return python


def run_driver(name: str, driver: str, args: dict[str, Any], *, env: dict[str, str] | None = None,
               timeout: float = 600) -> Any:
    """Run ``tests/trainers/NAME/DRIVER`` in the trainer's Python; its last stdout line is JSON, returned.

    ``args`` reach the driver as JSON in its first argument. Its stderr is shown when it fails.
    """
    python = trainer_python(name)
    child_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # The trainer imports reward_service from this checkout, as a user's PYTHONPATH or
    # `pip install` would give it: the service's code, never a copy.
    child_env.update({"PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}, **(env or {}))
    proc = subprocess.run(
        [str(python), str(REPO / "tests" / "trainers" / name / driver), json.dumps(args)],
        cwd=REPO, env=child_env, capture_output=True, text=True, timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"{name}/{driver} exited {proc.returncode}:\n{proc.stderr[-6000:]}\n{proc.stdout[-2000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"{name}/{driver} printed nothing:\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1])
