#!/usr/bin/env bash
# OpenRLHF 0.11.2 in the venv $1, for tests/test_trainer_openrlhf.py: the trainer's own
# code (its agent executor, which calls a remote reward URL or a reward-function file,
# and its CLI's argument parser) on CPU. OpenRLHF pins GPU packages (deepspeed, vllm,
# flash-attn), so it goes in with --no-deps, followed by the packages its reward and
# argument-parsing paths import (requirements.txt); gpu_stubs.py stands in for the rest.
set -euo pipefail
venv="$1"
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$venv"
# Every step is held to the CPU torch on this machine's disk: a resolver free to pick
# `torch` would fetch a multi-GB CUDA build.
constraints="$venv/torch-constraint.txt"
echo "torch==2.13.0" > "$constraints"
pip=("$venv/bin/pip" install -q --disable-pip-version-check -c "$constraints")
"${pip[@]}" torch==2.13.0
"${pip[@]}" -r "$here/requirements.txt"
echo "(pip now lists the requirements of OpenRLHF left out on purpose: deepspeed, vllm, flash-attn, ...)"
"${pip[@]}" --no-deps openrlhf==0.11.2
"$venv/bin/python" - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert "+cpu" in torch.__version__, f"expected the CPU torch build, got {torch.__version__}"
PY
# What the drivers import, so a package missing here fails the install, not the tests.
PYTHONPATH="$here" "$venv/bin/python" -c "import openrlhf_cpu, openrlhf.cli.train_ppo_ray, openrlhf.utils.agent, openrlhf.datasets.prompts_dataset, openrlhf.trainer.ppo_utils.samples_generator"
