#!/usr/bin/env bash
# Mooring test rig: real services for the end-to-end tests.
#
#   rig.sh install   apt-get install what the rig and the tests need (root)
#   rig.sh up        start dockerd + two registries, import test images, write rig.env
#   rig.sh down      stop everything, unmount, wipe state (logs are kept)
#   rig.sh status    show what runs
#   rig.sh env       print the env file
#
# Everything lives under $MOORING_RIG_DIR (default /tmp/mr). Keep that path
# short: unix socket paths must stay under 108 bytes.
# MOORING_RIG_BIG=1 also builds rig/big:1 (~200 MB of random data) for benchmarks.
set -euo pipefail

DIR="${MOORING_RIG_DIR:-/tmp/mr}"
DIR="${DIR%/}"
DK="$DIR/dk"
SOCK="$DIR/docker.sock"
REG="$DIR/reg"
LOGS="$DIR/logs"
ENV_FILE="$DIR/rig.env"
IMAGE="rig/busybox:1"
BIG_IMAGE="rig/big:1"
AUTH_USER="mooring"
# containerd namespace of the rig's dockerd: never collides with a system dockerd
NS="mooring-rig"

# Packages for the rig and for tests (CI's network only reaches package registries).
RIG_PACKAGES=(docker.io docker-registry apache2-utils busybox-static iproute2 iptables curl)
TEST_PACKAGES=(chromium chromium-driver shellcheck systemd openssl python3)

export DOCKER_HOST="unix://$SOCK"
export DOCKER_CONFIG="$DIR/cli"

log() { printf 'rig: %s\n' "$*" >&2; }
die() { printf 'rig: error: %s\n' "$*" >&2; exit 1; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        die "'$1' needs root (dockerd and apt-get run as root); re-run with sudo"
    fi
}

# ---------------------------------------------------------------- processes

# pid_alive PID: running and not a zombie
pid_alive() {
    local pid="$1" state
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state="$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
    [ "$state" != "Z" ] && [ "$state" != "X" ]
}

# pid_of PIDFILE: the pid in PIDFILE if that process runs and belongs to this rig
pid_of() {
    local file="$1" pid
    [ -s "$file" ] || return 1
    pid="$(tr -dc '0-9' <"$file")"
    pid_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR/" || return 1
    printf '%s\n' "$pid"
}

# stop_pid PID NAME [SECONDS]: SIGTERM, wait with a deadline, then SIGKILL
stop_pid() {
    local pid="$1" name="$2" secs="${3:-20}" i
    pid_alive "$pid" || return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    log "$name (pid $pid) ignored SIGTERM for ${secs}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    log "warning: $name (pid $pid) still alive after SIGKILL"
}

# rig_leftovers: pids of rig daemons (by executable name) whose command line names $DIR
rig_leftovers() {
    local pid comm
    for pid in $(pgrep -f -- "$DIR/" || true); do
        [ "$pid" = "$$" ] && continue
        comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
        case "$comm" in
            dockerd | containerd | containerd-shim* | docker-registry | registry | docker-proxy | runc)
                pid_alive "$pid" && printf '%s\n' "$pid"
                ;;
        esac
    done
}

# start_daemon PIDFILE LOGFILE CMD...: start CMD detached, in its own session
start_daemon() {
    local pidfile="$1" logfile="$2"
    shift 2
    setsid "$@" </dev/null >"$logfile" 2>&1 &
    printf '%s\n' "$!" >"$pidfile"
}

tail_log() {
    printf -- '----- last lines of %s -----\n' "$1" >&2
    tail -n "${2:-40}" "$1" >&2 2>/dev/null || true
    printf -- '-----\n' >&2
}

# ------------------------------------------------------------------- dockerd

docker_ready() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

dockerd_healthy() { pid_of "$DK/pid" >/dev/null && docker_ready; }

start_dockerd() {
    local long="$DK/exec/containerd/containerd.sock.ttrpc" pid deadline
    [ "${#long}" -lt 108 ] || die "MOORING_RIG_DIR '$DIR' is too long: '$long' must stay under 108 bytes"
    if dockerd_healthy; then
        log "dockerd already up (pid $(pid_of "$DK/pid"))"
        return 0
    fi
    # a dead or unhealthy dockerd: clear it out first
    if pid="$(pid_of "$DK/pid")"; then stop_pid "$pid" dockerd; fi
    rm -f "$SOCK" "$DK/pid"
    mkdir -p "$DK/data" "$DK/exec" "$LOGS" "$DOCKER_CONFIG"
    printf '{}\n' >"$DK/daemon.json"
    log "starting dockerd on $SOCK"
    # dockerd starts and supervises its own containerd under --exec-root
    # (unless a system containerd already runs at /run/containerd: then it uses
    # that, in its own namespace $NS).
    start_daemon "$DK/dockerd.pid" "$LOGS/dockerd.log" dockerd \
        --host "unix://$SOCK" \
        --config-file "$DK/daemon.json" \
        --data-root "$DK/data" \
        --exec-root "$DK/exec" \
        --pidfile "$DK/pid" \
        --containerd-namespace "$NS" \
        --containerd-plugins-namespace "$NS-plugins" \
        --iptables=false --ip-masq=false --bridge=none
    pid="$(cat "$DK/dockerd.pid")"
    deadline=$((SECONDS + 60))
    until docker_ready; do
        if ! pid_alive "$pid"; then
            tail_log "$LOGS/dockerd.log"
            die "dockerd exited during startup (log: $LOGS/dockerd.log)"
        fi
        if ((SECONDS >= deadline)); then
            tail_log "$LOGS/dockerd.log"
            stop_pid "$pid" dockerd
            die "dockerd did not answer 'docker version' within 60s (log: $LOGS/dockerd.log)"
        fi
        sleep 0.2
    done
    log "dockerd up (pid $pid, $(docker version --format '{{.Server.Version}}'))"
}

# ---------------------------------------------------------------- registries

# free_port: a loopback TCP port nobody listens on
free_port() {
    local port i
    for ((i = 0; i < 200; i++)); do
        port=$((20000 + RANDOM % 40000))
        if command -v ss >/dev/null 2>&1; then
            [ -z "$(ss -Htan "sport = :$port" 2>/dev/null)" ] || continue
        fi
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    die "no free loopback port found"
}

http_code() { curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$@" 2>/dev/null || true; }

# registry_healthy NAME EXPECTED_CODE
registry_healthy() {
    local d="$REG/$1" port
    pid_of "$d/pid" >/dev/null || return 1
    [ -s "$d/port" ] || return 1
    port="$(cat "$d/port")"
    [ "$(http_code "http://127.0.0.1:$port/v2/")" = "$2" ]
}

write_registry_config() {
    local d="$1" port="$2" auth="$3"
    cat >"$d/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $d/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: $(head -c 24 /dev/urandom | base64)
  headers:
    X-Content-Type-Options: [nosniff]
EOF
    if [ "$auth" = 1 ]; then
        cat >>"$d/config.yml" <<EOF
auth:
  htpasswd:
    realm: mooring-rig
    path: $d/htpasswd
EOF
    fi
}

# start_registry NAME AUTH(0|1): an open (200) or basic-auth (401) registry
start_registry() {
    local name="$1" auth="$2" d="$REG/$1" want=200 pid port attempt deadline code
    [ "$auth" = 1 ] && want=401
    if registry_healthy "$name" "$want"; then
        log "registry $name already up on 127.0.0.1:$(cat "$d/port")"
        return 0
    fi
    if pid="$(pid_of "$d/pid")"; then stop_pid "$pid" "registry $name"; fi
    rm -rf "$d"
    mkdir -p "$d/data" "$LOGS"
    if [ "$auth" = 1 ]; then
        head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$d/password"
        chmod 600 "$d/password"
        htpasswd -Bbn "$AUTH_USER" "$(cat "$d/password")" >"$d/htpasswd"
    fi
    for attempt in 1 2 3; do
        port="$(free_port)"
        write_registry_config "$d" "$port" "$auth"
        log "starting registry $name on 127.0.0.1:$port"
        # Debian's docker-registry is the upstream 'registry' binary: 'serve CONFIG'
        start_daemon "$d/pid" "$LOGS/registry-$name.log" docker-registry serve "$d/config.yml"
        pid="$(cat "$d/pid")"
        deadline=$((SECONDS + 20))
        while pid_alive "$pid" && ((SECONDS < deadline)); do
            code="$(http_code "http://127.0.0.1:$port/v2/")"
            if [ "$code" = "$want" ]; then
                printf '%s\n' "$port" >"$d/port"
                log "registry $name up (pid $pid, /v2/ -> $code)"
                return 0
            fi
            sleep 0.1
        done
        tail_log "$LOGS/registry-$name.log" 15
        stop_pid "$pid" "registry $name" 5
        log "registry $name did not come up on port $port (attempt $attempt)"
    done
    die "registry $name failed to start (log: $LOGS/registry-$name.log)"
}

# -------------------------------------------------------------------- images

busybox_path() {
    local p out
    for p in /bin/busybox /usr/bin/busybox; do
        if [ -x "$p" ]; then
            # the image has no libc: the binary must be static (ldd exits 1 on those)
            out="$(LC_ALL=C ldd "$p" 2>&1 || true)"
            if [[ "$out" == *"not a dynamic executable"* || "$out" == *"statically linked"* ]]; then
                printf '%s\n' "$p"
                return 0
            fi
        fi
    done
    die "no static busybox found: run 'tests/rig/rig.sh install' (package busybox-static)"
}

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null; }

# make_rootfs DIR: busybox with all its applets in /bin
make_rootfs() {
    local root="$1" bb applet
    bb="$(busybox_path)"
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/data"
    chmod 1777 "$root/tmp"
    cp "$bb" "$root/bin/busybox"
    for applet in $("$bb" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
}

build_images() {
    local build="$DIR/build" id
    if id="$(image_id "$IMAGE")"; then
        log "image $IMAGE present ($id)"
    else
        rm -rf "$build" && mkdir -p "$build"
        make_rootfs "$build/root"
        log "importing $IMAGE"
        tar -C "$build/root" -c . | docker import \
            --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' - "$IMAGE" >/dev/null
        rm -rf "$build"
        id="$(image_id "$IMAGE")" || die "import of $IMAGE failed"
        docker run --rm --network none "$IMAGE" /bin/echo ok >/dev/null ||
            die "$IMAGE does not run"
        log "image $IMAGE imported ($id)"
    fi
    if [ "${MOORING_RIG_BIG:-0}" = 1 ]; then
        if id="$(image_id "$BIG_IMAGE")"; then
            log "image $BIG_IMAGE present ($id)"
        else
            rm -rf "$build" && mkdir -p "$build"
            make_rootfs "$build/root"
            log "writing 200 MB of random data for $BIG_IMAGE"
            dd if=/dev/urandom of="$build/root/data/random.bin" bs=1M count=200 status=none
            tar -C "$build/root" -c . | docker import \
                --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' - "$BIG_IMAGE" >/dev/null
            rm -rf "$build"
            id="$(image_id "$BIG_IMAGE")" || die "import of $BIG_IMAGE failed"
            log "image $BIG_IMAGE imported ($id)"
        fi
    fi
}

# ----------------------------------------------------------------------- env

# env_line NAME VALUE: 'export NAME=VALUE', single-quoted unless plain
env_line() {
    local v="$2"
    if [[ "$v" =~ ^[A-Za-z0-9_./:@+,=-]*$ ]]; then
        printf 'export %s=%s\n' "$1" "$v"
    else
        printf "export %s='%s'\n" "$1" "${v//\'/\'\\\'\'}"
    fi
}

write_env() {
    local tmp="$ENV_FILE.tmp"
    {
        env_line MOORING_RIG_DIR "$DIR"
        env_line MOORING_RIG_DOCKER_SOCK "$SOCK"
        env_line MOORING_RIG_DOCKER_HOST "unix://$SOCK"
        env_line MOORING_RIG_REGISTRY "127.0.0.1:$(cat "$REG/open/port")"
        env_line MOORING_RIG_AUTH_REGISTRY "127.0.0.1:$(cat "$REG/auth/port")"
        env_line MOORING_RIG_AUTH_USER "$AUTH_USER"
        env_line MOORING_RIG_AUTH_PASSWORD "$(cat "$REG/auth/password")"
        env_line MOORING_RIG_IMAGE "$IMAGE"
        env_line MOORING_RIG_IMAGE_ID "$(image_id "$IMAGE")"
        env_line MOORING_RIG_DOCKER_VERSION "$(docker version --format '{{.Server.Version}}')"
        if image_id "$BIG_IMAGE" >/dev/null; then
            env_line MOORING_RIG_BIG_IMAGE "$BIG_IMAGE"
        fi
    } >"$tmp"
    chmod 600 "$tmp"
    mv "$tmp" "$ENV_FILE"
    cat "$ENV_FILE"
}

# ------------------------------------------------------------------ commands

cmd_install() {
    need_root install
    local p missing=()
    for p in "${RIG_PACKAGES[@]}" "${TEST_PACKAGES[@]}"; do
        if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]; then
            missing+=("$p")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "all packages present"
        return 0
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [ "${MOORING_APT_UPDATED:-0}" != 1 ]; then
        apt-get update
    fi
    apt-get install -y --no-install-recommends "${missing[@]}"
}

cmd_up() {
    need_root up
    local t
    for t in dockerd docker docker-registry htpasswd curl setsid; do
        command -v "$t" >/dev/null 2>&1 || die "'$t' not found: run 'tests/rig/rig.sh install'"
    done
    mkdir -p "$DIR" "$LOGS"
    start_dockerd
    start_registry open 0
    start_registry auth 1
    # the credentials must work, not just the 401
    [ "$(http_code -u "$AUTH_USER:$(cat "$REG/auth/password")" \
        "http://127.0.0.1:$(cat "$REG/auth/port")/v2/")" = 200 ] ||
        die "auth registry rejects the rig's credentials"
    build_images
    write_env
}

# unmount_all: lazily unmount everything under $DIR, deepest first
unmount_all() {
    local m
    awk -v d="$DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do
            m="${m//\\040/ }" # mountinfo escapes spaces as \040
            umount -R "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
                log "warning: could not unmount $m"
        done
}

cmd_down() {
    local pid name i
    if [ ! -d "$DIR" ]; then
        log "nothing to stop ($DIR does not exist)"
        return 0
    fi
    need_root down
    for name in open auth; do
        if pid="$(pid_of "$REG/$name/pid")"; then stop_pid "$pid" "registry $name" 10; fi
    done
    if pid="$(pid_of "$DK/pid")"; then
        # remove leftover containers while dockerd still answers
        local ids
        ids="$(timeout 20 docker ps -aq 2>/dev/null || true)"
        if [ -n "$ids" ]; then
            log "removing leftover containers"
            # shellcheck disable=SC2086 # word splitting of ids is intended
            timeout 60 docker rm -f $ids >/dev/null 2>&1 || true
        fi
        stop_pid "$pid" dockerd 30
    fi
    # anything of ours still running (supervised containerd, shims, orphans)
    for ((i = 0; i < 3; i++)); do
        pid="$(rig_leftovers | head -n 1)"
        [ -n "$pid" ] || break
        for pid in $(rig_leftovers); do
            stop_pid "$pid" "$(cat "/proc/$pid/comm" 2>/dev/null || echo process)" 10
        done
    done
    unmount_all
    rm -f "$ENV_FILE" "$SOCK"
    if awk -v d="$DIR/" 'index($5, d) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
        log "warning: mounts remain under $DIR: state not wiped"
    else
        rm -rf "$DK" "$REG" "$DIR/build" "$DOCKER_CONFIG"
    fi
    if [ -n "$(rig_leftovers)" ]; then
        log "warning: processes remain: $(rig_leftovers | tr '\n' ' ')"
        exit 1
    fi
    log "down (logs kept in $LOGS)"
}

cmd_status() {
    local pid name want up=1
    if pid="$(pid_of "$DK/pid")"; then
        if docker_ready; then
            echo "dockerd:         running (pid $pid) on $SOCK, $(docker version --format '{{.Server.Version}}')"
        else
            echo "dockerd:         pid $pid but NOT answering on $SOCK"
            up=0
        fi
    else
        echo "dockerd:         stopped"
        up=0
    fi
    for name in open auth; do
        want=200
        [ "$name" = auth ] && want=401
        if pid="$(pid_of "$REG/$name/pid")"; then
            if registry_healthy "$name" "$want"; then
                printf 'registry %-6s  running (pid %s) on 127.0.0.1:%s\n' "$name" "$pid" "$(cat "$REG/$name/port")"
            else
                printf 'registry %-6s  pid %s but NOT answering\n' "$name" "$pid"
                up=0
            fi
        else
            printf 'registry %-6s  stopped\n' "$name"
            up=0
        fi
    done
    if [ -n "$(rig_leftovers)" ]; then
        echo "rig processes:   $(rig_leftovers | tr '\n' ' ')"
    fi
    if [ "$up" = 1 ] && [ -f "$ENV_FILE" ]; then
        echo "rig:             up ($ENV_FILE)"
    else
        echo "rig:             down"
        return 3
    fi
}

cmd_env() {
    [ -f "$ENV_FILE" ] || die "no $ENV_FILE: run 'tests/rig/rig.sh up'"
    cat "$ENV_FILE"
}

case "${1:-}" in
    install) cmd_install ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *)
        echo "usage: $0 install|up|down|status|env" >&2
        exit 2
        ;;
esac
