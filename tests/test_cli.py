"""The reward-service command line, run as a user would."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cli(*args, **env):
    return subprocess.run([sys.executable, "-m", "reward_service.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=180, env={**os.environ, "PYTHONPATH": str(REPO), **env})


def test_score_file_in_process_writes_results_in_order(tmp_path):
    items = [{"id": "1", "task": "math", "completion": r"\boxed{2}", "ground_truth": "2"},
             {"id": "2", "task": "mcq", "completion": "Answer: A", "ground_truth": "B"},
             {"id": "3", "task": "nope", "completion": "x"}]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    proc = cli("score", str(src), "-o", str(out), "--workers", "1", REWARD_SERVICE_SANDBOX_REQUIRED="false")
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["reward"], r["status"]) for r in results] == [("1", 1.0, "ok"), ("2", 0.0, "ok"), ("3", 0.0, "invalid")]


def test_score_prints_summary_table_by_task_and_status(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"task": "math", "completion": r"\boxed{2}", "ground_truth": "2"}) + "\n")
    proc = cli("score", str(src), "--workers", "1", REWARD_SERVICE_SANDBOX_REQUIRED="false")
    assert proc.returncode == 0, proc.stderr
    assert "mean reward" in proc.stderr and "math" in proc.stderr and "1.000" in proc.stderr


def test_score_rejects_a_bad_line_naming_it(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"task": "math", "completion": "x"}\n{"completion": "no task"}\n')
    proc = cli("score", str(src), REWARD_SERVICE_SANDBOX_REQUIRED="false")
    assert proc.returncode != 0 and "in.jsonl:2" in proc.stderr


def test_tasks_lists_registered_tasks():
    proc = cli("tasks")
    assert proc.returncode == 0 and {"math", "mcq"} <= {line.split()[0] for line in proc.stdout.splitlines() if line[:1].strip()}


def test_config_prints_every_setting():
    proc = cli("config")
    assert "REWARD_SERVICE_WORKERS" in proc.stdout and "REWARD_SERVICE_API_KEY" in proc.stdout
