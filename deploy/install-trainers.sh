#!/usr/bin/env bash
# The trainers' own packages, each in a virtual environment of its own under
# .trainers/NAME, for the tests that run a trainer's reward code against a live
# service (tests/test_trainer_*.py). Trainers pin conflicting versions of the same
# libraries (transformers, ray, pydantic), so they never share the service's venv.
#   bash deploy/install-trainers.sh            every trainer with tests/trainers/NAME/install.sh
#   bash deploy/install-trainers.sh verl       just those named
# Each tests/trainers/NAME/install.sh gets the venv's directory as $1 and installs into it;
# a trainer whose script did not change since its last successful install is skipped.
# A trainer that can't be installed here fails this script: CI must not pass by skipping.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then
    shopt -s nullglob
    for f in tests/trainers/*/install.sh; do names+=("$(basename "$(dirname "$f")")"); done
fi
for name in "${names[@]}"; do
    script="tests/trainers/$name/install.sh"
    [[ -f "$script" ]] || { echo "no $script" >&2; exit 2; }
    venv=".trainers/$name"
    stamp="$venv/.installed"
    want=$(sha256sum "$script" "tests/trainers/$name"/*.txt 2>/dev/null | sha256sum | cut -c1-16)
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        continue
    fi
    echo "installing trainer environment: $name"
    rm -rf "$venv"
    t0=$(date +%s)
    bash "$script" "$root/$venv"
    echo "$want" > "$stamp"
    echo "trainer environment $name ready in $(( $(date +%s) - t0 )) s"
done
