#!/usr/bin/env bash
# Start Mooring on a fresh clone with one command: the hub and an agent.
#
#   scripts/run.sh
#
# Builds the hub and the agent, finds a Docker socket (/var/run/docker.sock
# when it answers, else the test rig's private dockerd, installed and started
# with tests/rig/rig.sh when needed), prepares the embedded SQLite store in
# ./mooring-data (environment "local" for that socket, an edge environment
# "remote" with a fresh agent token), prints the exact mooring-agent command
# line for a remote host, then runs the hub and one mooring-agent attached to
# "remote" (on this host's Docker, through the hub's agent endpoint, exactly
# as a remote host would). On first start the hub prints the admin API key
# once. Ctrl-C stops both. MOORING_NO_AGENT=1 runs the hub alone.
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
            if ! command -v dockerd >/dev/null 2>&1; then
                tests/rig/rig.sh install >&2
            fi
            tests/rig/rig.sh up >&2
        fi
        # shellcheck disable=SC1091
        . /tmp/mr/rig.env
        MOORING_DOCKER_SOCKET="$MOORING_RIG_DOCKER_SOCK"
    fi
fi
export MOORING_DOCKER_SOCKET

echo "run.sh: building mooring-hub and mooring-agent ($PROFILE)" >&2
if [ "$PROFILE" = release ]; then
    cargo build --release -p mooring-hub -p mooring-agent >&2
    HUB=target/release/mooring-hub
    AGENT=target/release/mooring-agent
else
    cargo build -p mooring-hub -p mooring-agent >&2
    HUB=target/debug/mooring-hub
    AGENT=target/debug/mooring-agent
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

if [ "${MOORING_NO_AGENT:-0}" = 1 ]; then
    exec "$HUB" serve
fi

pids=()
# shellcheck disable=SC2317 # invoked by the traps
stop() {
    trap - INT TERM EXIT
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$HUB" serve &
pids+=("$!")
for _ in $(seq 1 100); do
    curl -fsS --max-time 1 "http://$MOORING_LISTEN/api/health" >/dev/null 2>&1 && break
    kill -0 "${pids[0]}" 2>/dev/null || { echo "run.sh: the hub exited" >&2; exit 1; }
    sleep 0.1
done
echo "run.sh: starting a mooring-agent for environment \"$EDGE_ENV\" on this host's Docker" >&2
DOCKHAND_SERVER_URL="$PUBLIC_URL/api/hawser/connect" TOKEN="$TOKEN" \
    DOCKER_SOCKET="$MOORING_DOCKER_SOCKET" AGENT_NAME="$(hostname)-agent" PORT="${MOORING_AGENT_PORT:-2376}" \
    MOORING_STATE_DIR="$MOORING_DATA_DIR/agent-state" "$AGENT" &
pids+=("$!")
wait -n "${pids[@]}"
