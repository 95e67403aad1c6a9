#!/usr/bin/env bash
# Build the service image (API and workers) without network access during the
# image build: wheels and .deb files are fetched on the host first (pip wheel,
# apt-get download) into a temporary build context.
#
#   deploy/build-images.sh [--force] [--standins]
#
#   --force     rebuild images even if they match the checkout (each image is
#               labelled with a hash of its sources and the base image, and
#               rebuilt only when that changes)
#   --standins  also build local stand-ins for the redis and prometheus images
#               (for machines that can't pull the upstream ones; see
#               deploy/standins/)
#
# Environment: BASE_IMAGE (default reward-service-base:bookworm, built with
# deploy/base/build-base-image.sh if missing), SERVICE_IMAGE (default
# reward-service:latest), REDIS_STANDIN_IMAGE (reward-service-redis:local),
# PROMETHEUS_STANDIN_IMAGE (reward-service-prometheus:local), PYTHON (a host
# python of exactly the base image's version, with pip; found if unset).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=deploy/lib.sh
source "$HERE/lib.sh"
REPO="$(cd "$HERE/.." && pwd)"
BASE_IMAGE="${BASE_IMAGE:-reward-service-base:bookworm}"
SERVICE_IMAGE="${SERVICE_IMAGE:-reward-service:latest}"
REDIS_STANDIN_IMAGE="${REDIS_STANDIN_IMAGE:-reward-service-redis:local}"
PROMETHEUS_STANDIN_IMAGE="${PROMETHEUS_STANDIN_IMAGE:-reward-service-prometheus:local}"
FORCE=0
STANDINS=0

while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1 ;;
        --standins) STANDINS=1 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

require_docker
ensure_base_image "$BASE_IMAGE"

WORK=$(mktemp -d /tmp/rs-image-build.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# apt-get download drops privileges to _apt, which must be able to write here.
chmod 755 "$WORK"

# Images carry a hash of what they were built from, so a changed checkout
# rebuilds them and an unchanged one doesn't.
LABEL=org.reward-service.source-hash

source_hash() {  # PATH... (relative to the repo)
    (cd "$REPO" && find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 2>/dev/null \
        | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

needs_build() {  # IMAGE HASH
    [ "$FORCE" = 1 ] && return 0
    [ "$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null)" != "$2" ]
}

fetch_debs() {  # DIR PACKAGE...
    local dir="$1"; shift
    mkdir -p "$dir" && chmod 777 "$dir"
    (cd "$dir" && apt-get download "$@")
}

build() {  # IMAGE CONTEXT HASH
    local old_id
    old_id=$(docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true)
    # The classic builder needs no buildx plugin and never pulls a FROM that is local.
    DOCKER_BUILDKIT=0 docker build --pull=false --force-rm --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --label "$LABEL=$3" -t "$1" "$2"
    # The image this one replaces would otherwise pile up as <none> after each change.
    if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect -f '{{.Id}}' "$1")" ]; then
        docker rmi "$old_id" >/dev/null 2>&1 || true
    fi
    echo "built $1"
}

base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")
service_hash=$(echo "$base_id $(source_hash pyproject.toml reward_service verifiers sandbox deploy/service)" | sha256sum | cut -c1-16)
if needs_build "$SERVICE_IMAGE" "$service_hash"; then
    # Wheels built here must fit the image's interpreter, down to the patch
    # level: dependency markers such as python_full_version < "3.11.3" are
    # evaluated by the host's pip. On a Debian bookworm host /usr/bin/python3 fits.
    pyver='import sys; print("%d.%d.%d" % sys.version_info[:3])'
    image_py=$(docker run --rm --entrypoint python3 "$BASE_IMAGE" -c "$pyver")
    if [ -z "${PYTHON:-}" ]; then
        for candidate in python3 /usr/bin/python3; do
            if command -v "$candidate" >/dev/null && [ "$("$candidate" -c "$pyver")" = "$image_py" ] \
               && "$candidate" -m pip --version >/dev/null 2>&1; then
                PYTHON="$candidate"; break
            fi
        done
    fi
    if [ -z "${PYTHON:-}" ] || [ "$("$PYTHON" -c "$pyver")" != "$image_py" ]; then
        echo "error: need a python $image_py with pip on the host (the base image's version); set PYTHON" >&2
        exit 1
    fi
    ctx="$WORK/service"
    mkdir -p "$ctx/src"
    cp "$HERE/service/Dockerfile" "$HERE/service/entrypoint.sh" "$ctx/"
    # Build from a copy so the checkout gets no build/ or *.egg-info.
    parts=(pyproject.toml reward_service verifiers sandbox)
    [ -f "$REPO/README.md" ] && parts+=(README.md)
    tar -C "$REPO" --exclude=__pycache__ --exclude='*.egg-info' -c "${parts[@]}" | tar -C "$ctx/src" -x
    # pyproject names README.md as the long description; a checkout may not have it yet.
    [ -f "$ctx/src/README.md" ] || echo "# verifiable-reward-service" > "$ctx/src/README.md"
    echo "pip wheel: the project and its dependencies"
    "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$ctx/wheels" "$ctx/src"
    rm -rf "$ctx/src"
    mkdir -p "$ctx/project"
    mv "$ctx"/wheels/verifiable_reward_service-*.whl "$ctx/project/"
    echo "apt-get download: bubblewrap (the process code sandbox)"
    fetch_debs "$ctx/debs" bubblewrap
    build "$SERVICE_IMAGE" "$ctx" "$service_hash"
else
    echo "$SERVICE_IMAGE is up to date with the checkout; not rebuilding (use --force to rebuild)"
fi

if [ "$STANDINS" = 1 ]; then
    redis_hash=$(echo "$base_id $(source_hash deploy/standins/redis)" | sha256sum | cut -c1-16)
    if needs_build "$REDIS_STANDIN_IMAGE" "$redis_hash"; then
        ctx="$WORK/redis"
        mkdir -p "$ctx"
        cp "$HERE/standins/redis/Dockerfile" "$ctx/"
        # redis-server and what it needs beyond the base image.
        fetch_debs "$ctx/debs" redis-server redis-tools libjemalloc2 liblzf1 lsb-base
        build "$REDIS_STANDIN_IMAGE" "$ctx" "$redis_hash"
    else
        echo "$REDIS_STANDIN_IMAGE exists; not rebuilding"
    fi
    prometheus_hash=$(echo "$base_id $(source_hash deploy/standins/prometheus)" | sha256sum | cut -c1-16)
    if needs_build "$PROMETHEUS_STANDIN_IMAGE" "$prometheus_hash"; then
        ctx="$WORK/prometheus"
        mkdir -p "$ctx"
        cp "$HERE/standins/prometheus/Dockerfile" "$ctx/"
        fetch_debs "$ctx/debs" prometheus
        build "$PROMETHEUS_STANDIN_IMAGE" "$ctx" "$prometheus_hash"
    else
        echo "$PROMETHEUS_STANDIN_IMAGE exists; not rebuilding"
    fi
fi
