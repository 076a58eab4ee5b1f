#!/usr/bin/env bash
# Start mooring-hub on a fresh clone with one command.
#
#   scripts/run.sh
#
# Builds the hub, finds a Docker socket (/var/run/docker.sock when it answers,
# else the test rig's private dockerd, started with tests/rig/rig.sh up when
# needed), prepares the embedded SQLite store in ./mooring-data (environment
# "local" for that socket, an edge environment "remote" with a fresh agent
# token), prints the exact mooring-agent command line for a remote host, and
# runs the hub in the foreground. On first start the hub prints the admin API
# key once. Ctrl-C stops it.
#
# Environment: MOORING_DATA_DIR (./mooring-data), MOORING_LISTEN
# (127.0.0.1:3000), MOORING_DOCKER_SOCKET (auto), MOORING_PUBLIC_URL (the
# ws:// or wss:// address agents dial; default ws://$MOORING_LISTEN),
# MOORING_EDGE_ENV (remote), MOORING_PROFILE (dev | release).
set -euo pipefail
cd "$(dirname "$0")/.."

export MOORING_DATA_DIR="${MOORING_DATA_DIR:-./mooring-data}"
export MOORING_LISTEN="${MOORING_LISTEN:-127.0.0.1:3000}"
EDGE_ENV="${MOORING_EDGE_ENV:-remote}"
PROFILE="${MOORING_PROFILE:-dev}"

docker_answers() {
    curl -fsS --max-time 3 --unix-socket "$1" http://docker/_ping >/dev/null 2>&1
}

if [ -z "${MOORING_DOCKER_SOCKET:-}" ]; then
    if docker_answers /var/run/docker.sock; then
        MOORING_DOCKER_SOCKET=/var/run/docker.sock
    else
        if [ ! -f /tmp/mr/rig.env ]; then
            echo "run.sh: no Docker at /var/run/docker.sock; starting the rig's dockerd (tests/rig/rig.sh up)" >&2
            tests/rig/rig.sh up >&2
        fi
        # shellcheck disable=SC1091
        . /tmp/mr/rig.env
        MOORING_DOCKER_SOCKET="$MOORING_RIG_DOCKER_SOCK"
    fi
fi
export MOORING_DOCKER_SOCKET

echo "run.sh: building mooring-hub ($PROFILE)" >&2
if [ "$PROFILE" = release ]; then
    cargo build --release -p mooring-hub >&2
    HUB=target/release/mooring-hub
else
    cargo build -p mooring-hub >&2
    HUB=target/debug/mooring-hub
fi

# Opening the store creates and migrates it, and on first open creates
# environment "local" for the Docker socket.
"$HUB" env list >/dev/null
if ! "$HUB" --json env list | grep -q "\"name\":\"$EDGE_ENV\""; then
    "$HUB" env create "$EDGE_ENV" --type edge >&2
fi
TOKEN="$("$HUB" token create --env "$EDGE_ENV" --expires 7d | tail -n1)"
PUBLIC_URL="${MOORING_PUBLIC_URL:-ws://$MOORING_LISTEN}"

cat <<MSG

Mooring hub: http://$MOORING_LISTEN  (store: $MOORING_DATA_DIR, local Docker: $MOORING_DOCKER_SOCKET)

To attach a remote Docker host to environment "$EDGE_ENV", run there (token valid 7 days):

  DOCKHAND_SERVER_URL=$PUBLIC_URL/api/hawser/connect TOKEN=$TOKEN mooring-agent

(The hub listens on $MOORING_LISTEN; for remote hosts set MOORING_LISTEN=0.0.0.0:3000 and
MOORING_PUBLIC_URL=ws://<this host>:3000, or serve TLS with --tls-cert/--tls-key.)
The admin API key is printed below on the first start only; later, create one with:
  $HUB apikey create admin2 -p '*'

MSG
exec "$HUB" serve
