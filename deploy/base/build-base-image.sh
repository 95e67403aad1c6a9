#!/usr/bin/env bash
# Build the one local Debian base image that both the sandbox image and the
# service images start FROM, without any image registry: debootstrap a
# bookworm minbase and `docker import` it.
#
#   deploy/base/build-base-image.sh [--force] [--mirror URL] [IMAGE_NAME]
#
# IMAGE_NAME defaults to reward-service-base:bookworm. The image is left alone
# if it exists with the same package list, unless --force. The Debian mirror
# comes from --mirror, else $DEBIAN_MIRROR, else the first Debian URI in this
# machine's apt sources.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "$0")/../lib.sh"

IMAGE="reward-service-base:bookworm"
FORCE=0
MIRROR="${DEBIAN_MIRROR:-}"
SUITE="bookworm"
# PACKAGES (lib.sh): the toolchain of every language the code sandbox runs
# (sandbox/languages.py), plus what the service images need to install the
# service. Both the sandbox image and the service image start from here, so
# they run the same compilers.

while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1 ;;
        --mirror) MIRROR="$2"; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) IMAGE="$1" ;;
    esac
    shift
done

require_docker

PACKAGES=$(base_packages)
if [ "$FORCE" = 0 ] && [ "$(base_image_packages "$IMAGE")" = "$PACKAGES" ]; then
    echo "$IMAGE exists with these packages; not rebuilding (use --force to rebuild)"
    exit 0
fi

apt_debian_mirror() {
    # deb822 sources first ("URIs: ..."), then one-line sources ("deb URL suite ...").
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' "$f" | grep -v -- '-security' | grep '/debian/\?$' | head -n1 || true)
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        uri=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' "$f" \
              | grep -v -- '-security' | grep '/debian/\?$' | head -n1 || true)
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
}

if [ -z "$MIRROR" ]; then
    MIRROR=$(apt_debian_mirror)
fi
if [ -z "$MIRROR" ]; then
    echo "error: no Debian mirror found in apt sources; pass --mirror URL or set DEBIAN_MIRROR" >&2
    exit 1
fi

for tool in debootstrap tar; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install $tool)" >&2; exit 1; }
done

ROOTFS=$(mktemp -d /tmp/rs-base-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT

echo "debootstrap $SUITE (minbase + $PACKAGES) into $ROOTFS"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR"

# Nothing in the image should point at the build machine's mirror or keep caches.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/tmp/*
rm -f "$ROOTFS"/etc/apt/sources.list "$ROOTFS"/etc/apt/sources.list.d/*

echo "importing as $IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL $BASE_PACKAGES_LABEL=$PACKAGES" \
    - "$IMAGE"
echo "built $IMAGE"
