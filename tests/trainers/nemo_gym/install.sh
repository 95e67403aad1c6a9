#!/usr/bin/env bash
# NeMo Gym's client side, in a Python 3.12 venv at $1 (nemo-gym needs Python >= 3.12).
# The newest nemo-gym pip offers here is 0.4.0 (0.7 is not in the registry this machine
# reaches), so that is what tests/test_trainer_nemo_gym.py runs. Its full requirement set
# pulls ray[default], mlflow, datasets...: only the pinned packages the client path imports
# are installed (requirements.txt, --no-deps), which keeps this under two minutes.
set -euo pipefail
venv="$1"
here="$(cd "$(dirname "$0")" && pwd)"

is_312() { [[ -n "$1" ]] && "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; }

py=""
candidates=("${NEMO_GYM_PYTHON:-}")
command -v python3.12 >/dev/null 2>&1 && candidates+=("$(command -v python3.12)")
pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
shopt -s nullglob
for d in "$pyenv_root"/versions/3.12.* /root/.pyenv/versions/3.12.* /usr/local/bin /usr/bin; do
    [[ -x "$d/bin/python3" ]] && candidates+=("$d/bin/python3")
    [[ -x "$d/python3.12" ]] && candidates+=("$d/python3.12")
done
shopt -u nullglob
for c in "${candidates[@]}"; do
    if is_312 "$c"; then py="$c"; break; fi
done
if [[ -z "$py" ]]; then
    echo "nemo_gym: no Python 3.12 found (tried: ${candidates[*]:-nothing}); nemo-gym needs >= 3.12." >&2
    echo "Install one (pyenv install 3.12, or apt-get install python3.12-venv) or set NEMO_GYM_PYTHON." >&2
    exit 1
fi
echo "nemo_gym: using $py ($("$py" -V 2>&1))"

"$py" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$here/requirements.txt"
# Fail here, not in the test, when the client path can't be imported.
"$venv/bin/python" - <<'EOF'
import nemo_gym.server_utils, nemo_gym.rollout_collection, nemo_gym.base_resources_server
import responses_api_agents.simple_agent.app
from importlib.metadata import version
print("nemo_gym", version("nemo-gym"), "client path imports")
EOF
