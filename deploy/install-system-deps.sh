#!/usr/bin/env bash
# Debian/Ubuntu packages the service needs, installed only when missing.
#   serve: bubblewrap (the code sandbox), python3-venv, and the toolchain of every
#          language the code task runs (sandbox/languages.py lists their packages:
#          gcc, g++, openjdk-17-jdk-headless, nodejs, golang-go, rustc ...)
#   test:  the same plus redis-server and prometheus (real servers in tests)
#   ci:    the same plus docker.io, debootstrap, docker-compose and Debian's python3-pip
#          (docker backend, compose; the service image's wheels are built with the
#          system python, which must match the image's)
# LANGUAGES="c cpp" (names from sandbox/languages.py) installs only those toolchains.
# Sandboxed programs see only /usr: a compiler elsewhere (~/.cargo, /usr/local/go) does not count.
set -euo pipefail
profile="${1:-serve}"
here="$(cd "$(dirname "$0")" && pwd)"
# An assignment, so that set -e stops here if the table can't be read (never a silent "no toolchains").
# shellcheck disable=SC2086 # word splitting of the language list is intended
toolchain_list=$(python3 "$here/../sandbox/languages.py" packages ${LANGUAGES:-})
read -r -a toolchains <<< "$toolchain_list"
pkgs=(bubblewrap python3-venv "${toolchains[@]}")
[[ "$profile" == test || "$profile" == ci ]] && pkgs+=(redis-server prometheus)
[[ "$profile" == ci ]] && pkgs+=(docker.io debootstrap docker-compose python3-pip)
# The NeMo Gym trainer environment (tests/trainers/nemo_gym) needs a Python 3.12: the distribution's
# when it has one (Ubuntu 24.04) and none is here already (pyenv); Debian 12 has none, and the install says so.
if [[ "$profile" == ci ]] && ! command -v python3.12 >/dev/null 2>&1 \
        && ! compgen -G "${PYENV_ROOT:-$HOME/.pyenv}/versions/3.12.*" >/dev/null \
        && apt-cache show python3.12-venv >/dev/null 2>&1; then
    pkgs+=(python3.12-venv)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# A non-Debian python (pyenv, uv) brings its own venv; Debian's package is then not needed.
if python3 -c 'import ensurepip' 2>/dev/null; then
    missing=("${missing[@]/python3-venv}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
