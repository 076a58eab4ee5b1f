#!/bin/sh
# Mooring agent installer, served by the hub at GET /install.sh:
#
#   curl -fsSL https://HUB/install.sh | sudo sh -s -- --token TOKEN
#
# Downloads mooring-agent for this machine's architecture from the hub,
# checks its SHA-256, installs it, writes /etc/mooring/agent.env and starts
# the systemd service. Safe to run again: that upgrades in place and keeps
# AGENT_ID, the state directory and any settings you added to agent.env.
# Run with --help for the options.
#
# The hub fills in its own URL on the next line when it serves this file.
MOORING_HUB_URL="${MOORING_HUB_URL:-__MOORING_HUB_URL__}"

set -eu

PROG=mooring-install
UNIT_NAME=mooring-agent.service

usage() {
    cat <<'EOF'
Install or upgrade the Mooring agent and enroll it with a hub.

usage: install.sh --token TOKEN [options]
  (typically: curl -fsSL https://HUB/install.sh | sudo sh -s -- --token TOKEN)

  --token TOKEN     enrollment token from the hub (kept from agent.env on upgrade)
  --hub URL         hub URL, http(s)://host[:port] (default: the hub that served this script)
  --ca-cert FILE    PEM CA certificate that signed the hub's certificate (copied to etc/mooring/ca.pem)
  --name NAME       agent name shown in the hub (default: the hostname)
  --docker-socket PATH
                    Docker socket the agent uses (default: /var/run/docker.sock)
  --prefix DIR      install under DIR instead of / (no root needed; requires --no-systemd)
  --no-systemd      do not install a systemd service; print how to run the agent
  --foreground      install, then run the agent in the foreground (implies --no-systemd)
  --insecure        do not verify the hub's TLS certificate (testing only)
  -h, --help        show this help
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed: $2"
}

# Value of KEY in an env file (last assignment wins, as for the agent), or nothing.
env_get() {
    [ -f "$2" ] || return 0
    sed -n "s/^$1=//p" "$2" | tail -n 1
}

# New value of a key this installer manages; status 1 when the key is not
# managed or has no new value (then an existing line is kept as it is).
managed_value() {
    case $1 in
        DOCKHAND_SERVER_URL) value=$WS_URL ;;
        TOKEN) value=$TOKEN ;;
        CA_CERT) [ -n "$CA_CERT" ] || return 1; value=$CA_DEST ;;
        AGENT_NAME) [ -n "$NAME" ] || return 1; value=$NAME ;;
        DOCKER_SOCKET) [ -n "$DOCKER_SOCK" ] || return 1; value=$DOCKER_SOCK ;;
        TLS_SKIP_VERIFY) [ "$INSECURE" = 1 ] || return 1; value=true ;;
        MOORING_STATE_DIR) value=$STATE_DIR ;;
        *) return 1 ;;
    esac
    printf '%s\n' "$value"
}

MANAGED_KEYS="DOCKHAND_SERVER_URL TOKEN CA_CERT AGENT_NAME DOCKER_SOCKET TLS_SKIP_VERIFY MOORING_STATE_DIR"

# Writes $ENV_FILE atomically (mode 0600): existing lines are kept, a managed
# key is replaced where it first appears (later duplicates dropped), and keys
# not present yet are appended.
write_env() {
    tmp_env="$ETC_DIR/.agent.env.$$"
    (umask 077 && : >"$tmp_env") || die "cannot write $tmp_env"
    done_keys=" "
    if [ -f "$ENV_FILE" ]; then
        while IFS= read -r line || [ -n "$line" ]; do
            case $line in
                [A-Za-z_]*=*)
                    key=${line%%=*}
                    if value=$(managed_value "$key"); then
                        case $done_keys in
                            *" $key "*) ;;
                            *)
                                printf '%s=%s\n' "$key" "$value" >>"$tmp_env"
                                done_keys="$done_keys$key "
                                ;;
                        esac
                        continue
                    fi
                    ;;
            esac
            printf '%s\n' "$line" >>"$tmp_env"
        done <"$ENV_FILE"
    else
        {
            echo "# mooring-agent configuration, written by install.sh."
            echo "# Every variable is described in agent.env.example (deploy/ in the Mooring sources)."
        } >>"$tmp_env"
    fi
    for key in $MANAGED_KEYS; do
        case $done_keys in *" $key "*) continue ;; esac
        if value=$(managed_value "$key"); then
            printf '%s=%s\n' "$key" "$value" >>"$tmp_env"
        fi
    done
    chmod 600 "$tmp_env"
    mv -f "$tmp_env" "$ENV_FILE" || die "cannot replace $ENV_FILE"
}

# Fetches URL into FILE with the TLS options in force.
fetch() {
    # shellcheck disable=SC2086 # CURL_TLS holds options, split on purpose
    curl -fsSL --retry 3 --connect-timeout 15 --max-time 600 $CURL_PROTO $CURL_TLS \
        -o "$2" "$1" || die "cannot download $1 (curl exit $?): check --hub, the hub's TLS certificate (--ca-cert) and that the hub is reachable"
}

# The systemd unit, identical to deploy/systemd/mooring-agent.service.
unit_text() {
    cat <<'MOORING_UNIT'
# Mooring edge agent: holds an outbound WebSocket to the hub and relays the
# hub's requests to the local Docker Engine API.
#
#   Binary:  /usr/local/bin/mooring-agent
#   Config:  /etc/mooring/agent.env          (see deploy/agent.env.example)
#   State:   /var/lib/mooring/agent          (stable agent id; MOORING_STATE_DIR)
#
# The service runs as an unprivileged dynamic user with the supplementary
# group "docker", which is what /var/run/docker.sock (root:docker 0660) asks
# for. Access to the Docker socket is root-equivalent on the host whatever
# this unit says; the sandbox below limits what the agent process itself can
# touch. If your Docker socket belongs to another group, override it with
# `systemctl edit mooring-agent` (SupplementaryGroups=thatgroup).

[Unit]
Description=Mooring edge agent (Hawser-compatible)
Documentation=file:///usr/local/share/doc/mooring/README.md
Wants=network-online.target
After=network-online.target docker.service
ConditionPathExists=/etc/mooring/agent.env

[Service]
Type=simple
Environment=MOORING_STATE_DIR=/var/lib/mooring/agent
Environment=HOME=/var/lib/mooring/agent
# Read after Environment=: values in the file win.
EnvironmentFile=/etc/mooring/agent.env
ExecStart=/usr/local/bin/mooring-agent
Restart=on-failure
RestartSec=5s
# SIGTERM lets the agent finish or cancel in-flight requests and close the link.
KillSignal=SIGTERM
TimeoutStopSec=30s

DynamicUser=yes
User=mooring-agent
SupplementaryGroups=docker
StateDirectory=mooring/agent
StateDirectoryMode=0700
UMask=0077

# Sandbox
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
# The only writable path is the StateDirectory= above (/var/lib/mooring/agent,
# kept in /var/lib/private by DynamicUser=): systemd opens it up itself. A
# ReadWritePaths= line for it would point at the symlink, not the directory.
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# Host metrics come from /proc/stat, /proc/meminfo and /proc/net/dev:
# hide other users' processes, but keep the system-wide files.
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
CapabilityBoundingSet=
AmbientCapabilities=
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
MOORING_UNIT
}

install_service() {
    unit_dir=/etc/systemd/system
    unit_file="$unit_dir/$UNIT_NAME"
    upgrade=0
    [ -f "$unit_file" ] && upgrade=1
    {
        unit_text >"$unit_dir/.$UNIT_NAME.$$" && chmod 644 "$unit_dir/.$UNIT_NAME.$$" &&
            mv -f "$unit_dir/.$UNIT_NAME.$$" "$unit_file"
    } || die "cannot write $unit_file"

    # The unit grants the group "docker"; follow the socket if Docker uses another one.
    dropin_dir="$unit_dir/$UNIT_NAME.d"
    dropin="$dropin_dir/10-docker-group.conf"
    sock=$(env_get DOCKER_SOCKET "$ENV_FILE")
    sock=${sock:-/var/run/docker.sock}
    sock_group=
    [ -S "$sock" ] && sock_group=$(stat -c %G "$sock" 2>/dev/null || true)
    if [ -n "$sock_group" ] && [ "$sock_group" != docker ] && [ "$sock_group" != UNKNOWN ]; then
        mkdir -p "$dropin_dir"
        printf '# Written by install.sh: %s belongs to group %s.\n[Service]\nSupplementaryGroups=\nSupplementaryGroups=%s\n' \
            "$sock" "$sock_group" "$sock_group" >"$dropin"
        say "the Docker socket belongs to group '$sock_group': wrote $dropin"
    elif [ -z "$sock_group" ] && ! getent group docker >/dev/null 2>&1; then
        mkdir -p "$dropin_dir"
        printf '# Written by install.sh: no docker group on this host.\n[Service]\nSupplementaryGroups=\n' >"$dropin"
        warn "no Docker socket at $sock and no docker group: the agent will report Docker unreachable until Docker runs (then rerun this script)"
    else
        rm -f "$dropin"
    fi

    systemctl daemon-reload || die "systemctl daemon-reload failed"
    systemctl enable "$UNIT_NAME" >/dev/null 2>&1 || die "systemctl enable $UNIT_NAME failed"
    # restart = start when stopped, and picks up the new binary on an upgrade.
    systemctl restart "$UNIT_NAME" ||
        die "the service did not start: see 'systemctl status mooring-agent' and 'journalctl -u mooring-agent'"
    if [ "$upgrade" = 1 ]; then
        say "upgraded and restarted $UNIT_NAME"
    else
        say "installed, enabled and started $UNIT_NAME"
    fi
    say "status: systemctl status mooring-agent; logs: journalctl -u mooring-agent -f"
}

main() {
    TOKEN=
    HUB=$MOORING_HUB_URL
    CA_CERT=
    NAME=
    DOCKER_SOCK=
    PREFIX=
    SYSTEMD=1
    FOREGROUND=0
    INSECURE=0
    while [ $# -gt 0 ]; do
        opt=$1
        case $opt in
            --*=*)
                shift
                set -- "${opt%%=*}" "${opt#*=}" "$@"
                continue
                ;;
            --token | --hub | --ca-cert | --name | --docker-socket | --prefix)
                [ $# -ge 2 ] || die "$opt needs a value (see --help)"
                case $opt in
                    --token) TOKEN=$2 ;;
                    --hub) HUB=$2 ;;
                    --ca-cert) CA_CERT=$2 ;;
                    --name) NAME=$2 ;;
                    --docker-socket) DOCKER_SOCK=$2 ;;
                    --prefix) PREFIX=$2 ;;
                esac
                shift 2
                ;;
            --no-systemd) SYSTEMD=0; shift ;;
            --foreground) FOREGROUND=1; SYSTEMD=0; shift ;;
            --insecure) INSECURE=1; shift ;;
            -h | --help) usage; exit 0 ;;
            *) die "unknown option '$opt' (see --help)" ;;
        esac
    done

    # Hub URL: the hub writes its own into MOORING_HUB_URL when serving this file.
    case $HUB in
        __*__ | "") die "no hub URL: pass --hub https://your-hub (or download this script from your hub's /install.sh)" ;;
    esac
    HUB=${HUB%/}
    case $HUB in
        https://?*) WS_URL="wss://${HUB#https://}/api/hawser/connect"; CURL_PROTO="--proto =https" ;;
        http://?*)
            WS_URL="ws://${HUB#http://}/api/hawser/connect"; CURL_PROTO="--proto =http,https"
            warn "the hub URL is plain http: the token and the agent's traffic are not encrypted"
            ;;
        *) die "hub URL must start with http:// or https://, got '$HUB'" ;;
    esac
    case $HUB in
        *[[:space:]\"\'\\]*) die "hub URL contains spaces or quotes: '$HUB'" ;;
    esac

    # Paths. "/" and "" both mean the real root.
    PREFIX=${PREFIX%/}
    if [ -n "$PREFIX" ]; then
        case $PREFIX in
            /*) ;;
            *) PREFIX="$(pwd)/$PREFIX" ;;
        esac
        case $PREFIX in *[\'\"]*) die "--prefix must not contain quotes: '$PREFIX'" ;; esac
        [ "$SYSTEMD" = 0 ] || die "--prefix installs outside /, where systemd will not look: add --no-systemd"
    fi
    BIN_DIR="$PREFIX/usr/local/bin"
    BIN="$BIN_DIR/mooring-agent"
    ETC_DIR="$PREFIX/etc/mooring"
    ENV_FILE="$ETC_DIR/agent.env"
    CA_DEST="$ETC_DIR/ca.pem"
    STATE_DIR="$PREFIX/var/lib/mooring/agent"
    if [ -z "$PREFIX" ] && [ "$(id -u)" != 0 ]; then
        die "installing to / needs root: pipe into 'sudo sh -s -- ...', or use --prefix DIR --no-systemd"
    fi

    # Token: required on a first install, kept from agent.env on an upgrade.
    [ -n "$TOKEN" ] || TOKEN=$(env_get TOKEN "$ENV_FILE")
    [ -n "$TOKEN" ] || die "--token is required (create one on the hub: mooring-hub token create --env ID)"
    case $TOKEN in
        *[!A-Za-z0-9._~+/=:-]*) die "the token contains characters a hub token never has (spaces, quotes?): copy it again" ;;
    esac
    case $NAME in
        *[!A-Za-z0-9._@-]*) die "--name may only use letters, digits and . _ @ -, got '$NAME'" ;;
    esac
    if [ -n "$DOCKER_SOCK" ]; then
        case $DOCKER_SOCK in
            /*) ;;
            *) die "--docker-socket must be an absolute path, got '$DOCKER_SOCK'" ;;
        esac
        case $DOCKER_SOCK in
            *[[:space:]\"\'\\]*) die "--docker-socket must not contain spaces or quotes: '$DOCKER_SOCK'" ;;
        esac
        [ -S "$DOCKER_SOCK" ] ||
            warn "no socket at $DOCKER_SOCK yet: the agent reports Docker unreachable until it exists"
        if [ "$SYSTEMD" = 1 ]; then
            case $DOCKER_SOCK in
                /home/* | /root/* | /run/user/*)
                    warn "the service cannot reach $DOCKER_SOCK (ProtectHome=yes hides /home, /root and /run/user): use a system socket, or override ProtectHome with 'systemctl edit mooring-agent'"
                    ;;
            esac
        fi
    fi
    if [ -n "$CA_CERT" ]; then
        [ -r "$CA_CERT" ] || die "cannot read the CA certificate '$CA_CERT'"
        grep -q -- '-----BEGIN CERTIFICATE-----' "$CA_CERT" ||
            die "'$CA_CERT' is not a PEM certificate (no BEGIN CERTIFICATE line)"
    fi

    [ "$(uname -s)" = Linux ] || die "mooring-agent runs on Linux only, this is $(uname -s)"
    machine=$(uname -m)
    case $machine in
        x86_64 | amd64) ARCH=x86_64 ;;
        aarch64 | arm64) ARCH=aarch64 ;;
        *) die "unsupported architecture '$machine': Mooring ships agents for x86_64 and aarch64" ;;
    esac

    need curl "install it with your package manager (e.g. apt-get install curl)"
    need sha256sum "it comes with coreutils (or busybox)"
    if [ "$SYSTEMD" = 1 ]; then
        need systemctl "on a host without systemd, rerun with --no-systemd"
        [ -d /run/systemd/system ] || die "systemd is not running on this host: rerun with --no-systemd"
    fi

    CURL_TLS=
    if [ "$INSECURE" = 1 ]; then
        CURL_TLS="--insecure"
        warn "--insecure: the hub's certificate is not checked, for the download nor by the agent (TLS_SKIP_VERIFY=true)"
    elif [ -n "$CA_CERT" ]; then
        CURL_TLS="--cacert $CA_CERT"
        case $CA_CERT in *[[:space:]]*) die "the CA certificate path must not contain spaces: '$CA_CERT'" ;; esac
    fi

    # 1. Download and verify, outside the install tree: a failure leaves nothing behind.
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/mooring-install.XXXXXX") || die "cannot create a temporary directory"
    trap 'rm -rf "$WORK"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    say "downloading mooring-agent ($ARCH) from $HUB"
    fetch "$HUB/api/agent/binary?arch=$ARCH" "$WORK/mooring-agent"
    fetch "$HUB/api/agent/binary.sha256?arch=$ARCH" "$WORK/sha256"
    expected=$(tr -d '\r' <"$WORK/sha256" | awk 'NR == 1 { print tolower($1) }')
    case $expected in
        *[!0-9a-f]* | "") die "the hub's checksum is not a SHA-256 hex digest: nothing installed" ;;
    esac
    [ "${#expected}" = 64 ] || die "the hub's checksum is not a SHA-256 hex digest: nothing installed"
    actual=$(sha256sum "$WORK/mooring-agent" | awk '{ print $1 }')
    [ "$actual" = "$expected" ] ||
        die "checksum mismatch for the downloaded mooring-agent (expected $expected, got $actual): the download is corrupt or was tampered with; nothing installed"
    [ -s "$WORK/mooring-agent" ] || die "the hub sent an empty agent binary: nothing installed"
    chmod 755 "$WORK/mooring-agent"

    # 2. Binary: copy next to the target, then rename over it (atomic; a running agent keeps its inode).
    mkdir -p "$BIN_DIR" || die "cannot create $BIN_DIR"
    upgrade=0
    [ -f "$BIN" ] && upgrade=1
    { cp "$WORK/mooring-agent" "$BIN_DIR/.mooring-agent.$$" && mv -f "$BIN_DIR/.mooring-agent.$$" "$BIN"; } || {
        rm -f "$BIN_DIR/.mooring-agent.$$"
        die "cannot install $BIN"
    }
    version=$("$BIN" --version 2>/dev/null | head -n 1) || version=
    if [ "$upgrade" = 1 ]; then
        say "upgraded $BIN${version:+ ($version)}"
    else
        say "installed $BIN${version:+ ($version)}"
    fi

    # 3. Configuration. /etc/mooring stays world-readable (the agent's user reads ca.pem);
    #    agent.env holds the token and is 0600 (systemd reads it as root).
    { mkdir -p "$ETC_DIR" && chmod 755 "$ETC_DIR"; } || die "cannot create $ETC_DIR"
    if [ -n "$CA_CERT" ]; then
        # Same content (e.g. --ca-cert pointing at the installed copy): nothing to do.
        if ! cmp -s "$CA_CERT" "$CA_DEST"; then
            {
                cp "$CA_CERT" "$ETC_DIR/.ca.pem.$$" && chmod 644 "$ETC_DIR/.ca.pem.$$" &&
                    mv -f "$ETC_DIR/.ca.pem.$$" "$CA_DEST"
            } || die "cannot write $CA_DEST"
        fi
    fi
    had_env=0
    [ -f "$ENV_FILE" ] && had_env=1
    write_env
    if [ "$had_env" = 1 ]; then
        say "updated $ENV_FILE (your other settings, AGENT_ID included, are kept)"
    else
        say "wrote $ENV_FILE"
    fi
    if [ "$(env_get TLS_SKIP_VERIFY "$ENV_FILE")" = true ] && [ "$INSECURE" = 0 ]; then
        warn "TLS_SKIP_VERIFY=true kept from $ENV_FILE: remove that line to check the hub's certificate"
    fi

    # 4. Run it.
    if [ "$SYSTEMD" = 1 ]; then
        install_service
        return 0
    fi
    { mkdir -p "$STATE_DIR" && chmod 700 "$STATE_DIR"; } || die "cannot create $STATE_DIR"
    run_cmd="sh -c 'set -a; . \"$ENV_FILE\"; set +a; exec \"$BIN\"'"
    if [ "$FOREGROUND" = 1 ]; then
        say "starting the agent in the foreground (Ctrl-C stops it)"
        rm -rf "$WORK"
        trap - EXIT INT TERM
        set -a
        # shellcheck disable=SC1090 # the file was written above
        . "$ENV_FILE"
        set +a
        exec "$BIN"
    fi
    say "no service installed (--no-systemd); run the agent in the foreground with:"
    printf '%s\n' "$run_cmd"
}

main "$@"
