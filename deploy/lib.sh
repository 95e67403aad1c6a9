# Shared by the image build scripts: source it, then call the functions.

# Exit with a clear message when no Docker engine answers.
require_docker() {
    if ! docker info >/dev/null 2>&1; then
        echo "error: no Docker engine answers; run deploy/start-dockerd.sh first" >&2
        exit 1
    fi
}

# Make sure base image $1 exists: the default one is built locally (debootstrap), another must be given.
ensure_base_image() {
    local base="$1"
    docker image inspect "$base" >/dev/null 2>&1 && return 0
    if [ "$base" = "reward-service-base:bookworm" ]; then
        "$(dirname "${BASH_SOURCE[0]}")/base/build-base-image.sh" "$base"
    else
        echo "error: base image $base is missing" >&2
        exit 1
    fi
}
