#!/bin/bash
# Entrypoint of the service image: always runs reward-service as uid 10000
# with no capabilities at all.
#
# Started as root (docker-compose.yml does, with cap_add SYS_ADMIN, SETUID,
# SETGID, SETPCAP only), it first makes the process code sandbox possible and
# then drops every privilege before the service starts:
#   - bubblewrap mounts a fresh /proc for each sandbox, and the kernel allows
#     that only if a fully visible procfs exists in the mount namespace; Docker
#     masks parts of /proc, so an unmasked one is mounted at /run/sandbox-proc
#     (only the service's own pid namespace shows there);
#   - bwrap --disable-userns writes the sandbox's own user-namespace limit in
#     /proc/sys/user, which Docker mounts read-only.
# The root-owned files these expose stay unwritable for uid 10000.
# Started as non-root, it just runs the service.
set -euo pipefail

SERVICE_UID=10000

if [ "$(id -u)" != 0 ]; then
    exec reward-service "$@"
fi

if [ "${REWARD_SERVICE_SANDBOX_BACKEND:-process}" = process ]; then
    prepared=1
    if ! mountpoint -q /run/sandbox-proc; then
        mkdir -p /run/sandbox-proc
        mount -t proc -o nosuid,nodev,noexec proc /run/sandbox-proc 2>/dev/null || prepared=0
    fi
    if mountpoint -q /proc/sys; then
        mount -o remount,bind,rw /proc/sys 2>/dev/null || prepared=0
    fi
    if [ "$prepared" = 0 ]; then
        echo "entrypoint: could not prepare /proc for the process sandbox: the container needs cap_add" \
             "SYS_ADMIN and a seccomp/AppArmor profile that allows mount (see docker-compose.yml)" >&2
    fi
fi

exec setpriv --reuid="$SERVICE_UID" --regid="$SERVICE_UID" --clear-groups \
    --inh-caps=-all --bounding-set=-all --no-new-privs -- reward-service "$@"
