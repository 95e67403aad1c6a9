#!/usr/bin/env bash
# verl 0.9.1's reward loop in a venv of its own ($1), CPU only: torch 2.13.0 first (a CPU
# build this machine kind keeps on disk; letting pip resolve plain `torch` would fetch a
# multi-GB CUDA build), then verl without its pinned GPU dependencies, then the
# pure-Python packages its reward loop imports (requirements.txt).
set -euo pipefail
venv="$1"
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install "torch==2.13.0"
# The constraint keeps every later resolution on the torch just installed.
constraint="$venv/torch-constraint.txt"
echo "torch==2.13.0" > "$constraint"
"${pip[@]}" install --no-deps "verl==0.9.1"
# pip then reports verl's other requirements (datasets, peft, wandb, ...) as "not installed":
# expected, the reward loop doesn't import them.
"${pip[@]}" install -c "$constraint" -r "$here/requirements.txt"
# Fail here, not in the tests, if the reward loop can't be imported.
"$venv/bin/python" -c "import verl.experimental.reward_loop, torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
