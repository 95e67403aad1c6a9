#!/usr/bin/env bash
# Make sure a Docker engine answers; start dockerd in the background if none does.
# CI and developer machines without a system service call this before the docker
# sandbox tests. Exits non-zero, saying why, if no engine can be reached.
set -euo pipefail

LOG="${DOCKERD_LOG:-/tmp/dockerd.log}"
WAIT_S="${DOCKERD_WAIT_S:-60}"

if docker info >/dev/null 2>&1; then
    echo "docker engine already running"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    echo "error: no Docker engine answers and dockerd is not installed (apt-get install docker.io)" >&2
    exit 1
fi

# setsid: the engine must outlive this script and its caller's process group.
setsid dockerd >"$LOG" 2>&1 < /dev/null &
echo "started dockerd (pid $!), log in $LOG"

for _ in $(seq 1 "$WAIT_S"); do
    if docker info >/dev/null 2>&1; then
        echo "docker engine ready"
        exit 0
    fi
    if ! kill -0 "$!" 2>/dev/null; then
        echo "error: dockerd exited during startup; last log lines:" >&2
        tail -n 20 "$LOG" >&2
        exit 1
    fi
    sleep 1
done

echo "error: dockerd did not answer 'docker info' within ${WAIT_S}s; see $LOG" >&2
exit 1
