#!/usr/bin/env bash
# Mooring's test command: install what the rig needs, build the tests, start
# the real-Docker rig, run every test, and always take the rig down again.
#
#   scripts/test.sh [extra nextest/cargo-test filter args]
#
# MOORING_SKIP_INSTALL=1  skip 'rig.sh install' (apt-get)
# MOORING_TEST_THREADS=N  test threads (default 2)
# CI=true                 a missing rig fails the rig tests instead of skipping them
set -euo pipefail

cd "$(dirname "$0")/.."
RIG=tests/rig/rig.sh
THREADS="${MOORING_TEST_THREADS:-2}"
say() { printf '==> %s\n' "$*" >&2; }

is_root=0
[ "$(id -u)" -eq 0 ] && is_root=1

# 1. packages
missing=()
for t in dockerd docker docker-registry htpasswd curl; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if [ "${MOORING_SKIP_INSTALL:-0}" = 1 ]; then
    say "skipping package install (MOORING_SKIP_INSTALL=1)"
elif [ "$is_root" = 1 ]; then
    say "installing packages"
    "$RIG" install
elif [ "${#missing[@]}" -gt 0 ]; then
    say "missing: ${missing[*]}; install them as root: sudo $RIG install"
fi

# 2. test runner
if command -v cargo-nextest >/dev/null 2>&1; then
    runner=nextest
else
    say "cargo-nextest not found: falling back to cargo test"
    runner=cargo
fi

# 3. build every test binary once, before the rig runs
say "building tests"
if [ "$runner" = nextest ]; then
    cargo nextest run --workspace --no-run
else
    cargo test --workspace --no-run
fi

# 4. the rig (needs root for dockerd); always taken down again
rig_up=0
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local status=$?
    if [ "$rig_up" = 1 ]; then
        say "stopping the rig"
        "$RIG" down || status=1
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$is_root" = 1 ]; then
    say "starting the rig"
    rig_up=1
    "$RIG" up >/dev/null
    # shellcheck disable=SC1091 # written by rig.sh up
    . "${MOORING_RIG_DIR:-/tmp/mr}/rig.env"
else
    say "not root: the rig (dockerd) cannot start; rig tests will skip (CI=true: fail)"
fi

# 5. the tests
say "running tests"
status=0
if [ "$runner" = nextest ]; then
    # nextest does not run doctests: run them first, so nextest's summary ends the log
    cargo test --workspace --doc --no-fail-fast -- --test-threads "$THREADS" || status=$?
    cargo nextest run --workspace --no-fail-fast --test-threads "$THREADS" "$@" || status=$?
else
    cargo test --workspace --no-fail-fast -- --test-threads "$THREADS" "$@" || status=$?
fi
exit "$status"
