#!/usr/bin/env bash
# A NAT topology of network namespaces for the remote-host tests.
#
#   nat.sh up ID      create it      nat.sh down ID    remove it (idempotent)
#   nat.sh cut ID     drop every forwarded packet (a dead link, no close)
#   nat.sh heal ID    forward again
#
# ID is a short tag (letters/digits, at most 6) so parallel tests do not
# collide. Four namespaces' worth of addresses, all inside namespaces made
# here, nothing routed anywhere else:
#
#   root ns  mX-m0 10.77.3.1/24 ──── mX-m1 10.77.3.2/24  ns mr-hub-ID  (test → hub API)
#            ns mr-hub-ID   mX-w1 10.77.2.2/24 ──── mX-w0 10.77.2.1/24  ns mr-nat-ID (WAN)
#            ns mr-nat-ID   mX-l0 10.77.1.1/24 ──── mX-l1 10.77.1.2/24  ns mr-edge-ID (LAN)
#
# mr-nat masquerades LAN → WAN and forwards only replies back, so the edge
# can dial the hub but the hub cannot open a connection to the edge. The
# edge has a default route via the NAT; the hub has no route to the LAN.
# The subnet's third octet base can be moved with MOORING_NAT_NET (default
# 10.77) when that range is in use on the machine.
set -euo pipefail

cmd="${1:-}"
id="${2:-}"
[[ "$id" =~ ^[a-z0-9]{1,6}$ ]] || { echo "nat.sh: ID must be 1-6 lowercase letters/digits" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "nat.sh: needs root (ip netns, iptables)" >&2; exit 1; }
net="${MOORING_NAT_NET:-10.77}"
hub="mr-hub-$id" nat="mr-nat-$id" edge="mr-edge-$id"
m0="m$id-m0" m1="m$id-m1" w0="m$id-w0" w1="m$id-w1" l0="m$id-l0" l1="m$id-l1"
inns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

down() {
    for ns in "$hub" "$nat" "$edge"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    ip link del "$m0" 2>/dev/null || true
}

up() {
    down
    for ns in "$hub" "$nat" "$edge"; do
        ip netns add "$ns"
        inns "$ns" ip link set lo up
    done
    # test (root ns) <-> hub: management link for the hub's HTTP API
    ip link add "$m0" type veth peer name "$m1"
    ip link set "$m1" netns "$hub"
    ip addr add "$net.3.1/24" dev "$m0"
    ip link set "$m0" up
    inns "$hub" ip addr add "$net.3.2/24" dev "$m1"
    inns "$hub" ip link set "$m1" up
    # hub <-> nat: the "internet" side
    ip link add "$w0" type veth peer name "$w1"
    ip link set "$w0" netns "$nat"
    ip link set "$w1" netns "$hub"
    inns "$nat" ip addr add "$net.2.1/24" dev "$w0"
    inns "$nat" ip link set "$w0" up
    inns "$hub" ip addr add "$net.2.2/24" dev "$w1"
    inns "$hub" ip link set "$w1" up
    # nat <-> edge: the private LAN
    ip link add "$l0" type veth peer name "$l1"
    ip link set "$l0" netns "$nat"
    ip link set "$l1" netns "$edge"
    inns "$nat" ip addr add "$net.1.1/24" dev "$l0"
    inns "$nat" ip link set "$l0" up
    inns "$edge" ip addr add "$net.1.2/24" dev "$l1"
    inns "$edge" ip link set "$l1" up
    inns "$edge" ip route add default via "$net.1.1"
    # the NAT: masquerade out, only replies back in
    inns "$nat" sysctl -qw net.ipv4.ip_forward=1
    inns "$nat" iptables -t nat -A POSTROUTING -o "$w0" -j MASQUERADE
    inns "$nat" iptables -P FORWARD DROP
    inns "$nat" iptables -A FORWARD -i "$l0" -o "$w0" -j ACCEPT
    inns "$nat" iptables -A FORWARD -i "$w0" -o "$l0" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    printf 'export MOORING_NAT_HUB_NS=%s\nexport MOORING_NAT_EDGE_NS=%s\nexport MOORING_NAT_NAT_NS=%s\n' "$hub" "$edge" "$nat"
    printf 'export MOORING_NAT_HUB_MGMT_IP=%s\nexport MOORING_NAT_HUB_WAN_IP=%s\n' "$net.3.2" "$net.2.2"
    printf 'export MOORING_NAT_PUBLIC_IP=%s\nexport MOORING_NAT_EDGE_IP=%s\n' "$net.2.1" "$net.1.2"
}

case "$cmd" in
    up) up ;;
    down) down ;;
    cut) inns "$nat" iptables -I FORWARD 1 -j DROP ;;
    heal) while inns "$nat" iptables -D FORWARD -j DROP 2>/dev/null; do :; done ;;
    *) echo "usage: nat.sh up|down|cut|heal ID" >&2; exit 2 ;;
esac
