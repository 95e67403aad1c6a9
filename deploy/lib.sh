# Shared by the image build scripts: source it, then call the functions.

# Exit with a clear message when no Docker engine answers.
require_docker() {
    if ! docker info >/dev/null 2>&1; then
        echo "error: no Docker engine answers; run deploy/start-dockerd.sh first" >&2
        exit 1
    fi
}

BASE_PACKAGES_LABEL=org.reward-service.packages

# Debian packages of the local base image, comma-separated (debootstrap --include):
# every language toolchain from the language table, then what installing the service needs.
base_packages() {
    local repo
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    echo "$(python3 "$repo/sandbox/languages.py" packages) python3-venv python3-pip ca-certificates" | tr ' ' ','
}

# The package list image $1 was built with (empty if missing or built before the label existed).
base_image_packages() {
    docker image inspect -f "{{index .Config.Labels \"$BASE_PACKAGES_LABEL\"}}" "$1" 2>/dev/null || true
}

# Make sure base image $1 exists: the default one is built locally (debootstrap) and rebuilt when
# the language table's packages change; another must be given.
ensure_base_image() {
    local base="$1"
    if [ "$base" = "reward-service-base:bookworm" ]; then
        [ "$(base_image_packages "$base")" = "$(base_packages)" ] && return 0
        "$(dirname "${BASH_SOURCE[0]}")/base/build-base-image.sh" "$base"
        return 0
    fi
    docker image inspect "$base" >/dev/null 2>&1 && return 0
    echo "error: base image $base is missing" >&2
    exit 1
}
