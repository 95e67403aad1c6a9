#!/usr/bin/env bash
# Debian/Ubuntu packages the service needs, installed only when missing.
#   serve: bubblewrap (the code sandbox), g++ (C++ solutions), python3-venv
#   test:  the same plus redis-server and prometheus (real servers in tests)
#   ci:    the same plus docker.io, debootstrap, docker-compose and Debian's python3-pip
#          (docker backend, compose; the service image's wheels are built with the
#          system python, which must match the image's)
set -euo pipefail
profile="${1:-serve}"
pkgs=(bubblewrap g++ python3-venv)
[[ "$profile" == test || "$profile" == ci ]] && pkgs+=(redis-server prometheus)
[[ "$profile" == ci ]] && pkgs+=(docker.io debootstrap docker-compose python3-pip)

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
