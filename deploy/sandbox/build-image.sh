#!/usr/bin/env bash
# Build the docker sandbox image (default reward-service-sandbox:latest) from
# the local base image, building that first if it is missing or its package
# list is not the language table's.
#
#   deploy/sandbox/build-image.sh [--force] [IMAGE_NAME]
#
# BASE_IMAGE (env) picks another base; it must provide the language toolchains
# (sandbox/languages.py). The image is rebuilt when its base image changed.
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
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) IMAGE="$1" ;;
    esac
    shift
done

require_docker

ensure_base_image "$BASE_IMAGE"

BASE_LABEL=org.reward-service.base-image
base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")
if [ "$FORCE" = 0 ] && [ "$(docker image inspect -f "{{index .Config.Labels \"$BASE_LABEL\"}}" "$IMAGE" 2>/dev/null)" = "$base_id" ]; then
    echo "$IMAGE exists on the current $BASE_IMAGE; not rebuilding (use --force to rebuild)"
    exit 0
fi

# The classic builder needs no buildx plugin and no registry access for a FROM
# that is already local.
DOCKER_BUILDKIT=0 docker build --pull=false --build-arg "BASE_IMAGE=$BASE_IMAGE" --label "$BASE_LABEL=$base_id" \
    -t "$IMAGE" -f "$HERE/Dockerfile" "$HERE"
# A base image without some toolchain would make that language's items fail at run time; say so now.
# shellcheck disable=SC2046 # one word per executable
missing=$(docker run --rm --network none --entrypoint sh "$IMAGE" -c \
    'for e in "$@"; do command -v "$e" >/dev/null || echo "$e"; done' sh \
    $(python3 "$HERE/../../sandbox/languages.py" requires) | tr '\n' ' ')
if [ -n "$missing" ]; then
    echo "warning: $IMAGE lacks $missing(those languages will report their toolchain missing)" >&2
fi
echo "built $IMAGE"
