#!/usr/bin/env bash
# Build the docker sandbox image (default reward-service-sandbox:latest) from
# the local base image, building that first if it is missing.
#
#   deploy/sandbox/build-image.sh [--force] [IMAGE_NAME]
#
# BASE_IMAGE (env) picks another base; it must provide python3 and g++.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=deploy/lib.sh
source "$HERE/../lib.sh"
IMAGE="reward-service-sandbox:latest"
BASE_IMAGE="${BASE_IMAGE:-reward-service-base:bookworm}"
FORCE=0

while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) IMAGE="$1" ;;
    esac
    shift
done

require_docker

ensure_base_image "$BASE_IMAGE"

if [ "$FORCE" = 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE exists; not rebuilding (use --force to rebuild)"
    exit 0
fi

# The classic builder needs no buildx plugin and no registry access for a FROM
# that is already local.
DOCKER_BUILDKIT=0 docker build --pull=false --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -t "$IMAGE" -f "$HERE/Dockerfile" "$HERE"
echo "built $IMAGE"
