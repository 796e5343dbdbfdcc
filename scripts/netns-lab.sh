#!/usr/bin/env bash
# Three-namespace lab for end-to-end tests and demos of the relay.
#
#   scripts/netns-lab.sh up PREFIX      create (re-create) the lab
#   scripts/netns-lab.sh up PREFIX --ipv6   the same with IPv6 on and addresses on every link
#   scripts/netns-lab.sh down PREFIX    delete it (idempotent; ends processes left inside)
#   scripts/netns-lab.sh status PREFIX  show namespaces, links and addresses
#
# Topology (PREFIX at most 11 characters of [A-Za-z0-9_-], so names stay <= 15):
#
#   ${PREFIX}-snd            ${PREFIX}-rly                     ${PREFIX}-rcv
#   snd0 198.18.1.1/24 <---> rin0  198.18.1.2/24
#                            rout0 198.18.2.1/24 <---> rcv0 198.18.2.2/24
#                            rout1 198.18.3.1/24 <---> rcv1 198.18.3.2/24
#
# The sender namespace routes 239.0.0.0/8 out of snd0, so a plain UDP socket can send to groups.
# IPv6 is disabled on the lab links to keep captures quiet (no router solicitations, MLD),
# unless `--ipv6`: then IPv6 stays on at the kernel's defaults (link-local addresses, MLD
# reports from every host that joins, router solicitations) and each link also gets
#   snd0 2001:db8:1::1/64   rin0 2001:db8:1::2/64
#   rout0 2001:db8:2::1/64  rcv0 2001:db8:2::2/64
#   rout1 2001:db8:3::1/64  rcv1 2001:db8:3::2/64
# added with `nodad` (usable at once, no duplicate address detection). IPv6 senders pick the
# interface with IPV6_MULTICAST_IF (ff00::/8 has a route on every IPv6 interface).
# Nothing is configured for forwarding: the relay in ${PREFIX}-rly does that itself. rp_filter is
# left at its default (the relay reads with AF_PACKET, before reverse-path filtering).
# `up` prints shell assignments (LAB_SND=..., ...) on stdout for `eval`.
set -euo pipefail

usage() { echo "usage: $0 up|down|status PREFIX [--ipv6]" >&2; exit 2; }
[ $# -eq 2 ] || { [ $# -eq 3 ] && [ "$3" = "--ipv6" ]; } || usage
cmd=$1
prefix=$2
ipv6=0
[ "${3:-}" = "--ipv6" ] && ipv6=1
if ! [[ "$prefix" =~ ^[A-Za-z0-9_-]{1,11}$ ]]; then
    echo "netns-lab: PREFIX must be 1-11 characters of [A-Za-z0-9_-] (got '$prefix')" >&2
    exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "netns-lab: must run as root" >&2
    exit 1
fi

SND="${prefix}-snd"
RLY="${prefix}-rly"
RCV="${prefix}-rcv"

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

lab_down() {
    local ns pids
    for ns in "$SND" "$RLY" "$RCV"; do
        ns_exists "$ns" || continue
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [ -n "$pids" ]; then
            echo "netns-lab: ending processes in $ns: $pids" >&2
            kill $pids 2>/dev/null || true
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                pids=$(ip netns pids "$ns" 2>/dev/null || true)
                [ -z "$pids" ] && break
                sleep 0.1
            done
            [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
        fi
        ip netns del "$ns" 2>/dev/null || true
    done
}

quiet_ns() {
    # loopback up, IPv6 off on everything created afterwards and now (unless --ipv6)
    ip -n "$1" link set lo up
    [ "$ipv6" = 1 ] && return 0
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

lab_up() {
    lab_down
    ip netns add "$SND"
    ip netns add "$RLY"
    ip netns add "$RCV"
    quiet_ns "$SND"; quiet_ns "$RLY"; quiet_ns "$RCV"

    # veth pairs created directly inside the namespaces (no names in the host namespace)
    ip -n "$SND" link add snd0 type veth peer name rin0 netns "$RLY"
    ip -n "$RLY" link add rout0 type veth peer name rcv0 netns "$RCV"
    ip -n "$RLY" link add rout1 type veth peer name rcv1 netns "$RCV"

    ip -n "$SND" addr add 198.18.1.1/24 dev snd0
    ip -n "$RLY" addr add 198.18.1.2/24 dev rin0
    ip -n "$RLY" addr add 198.18.2.1/24 dev rout0
    ip -n "$RCV" addr add 198.18.2.2/24 dev rcv0
    ip -n "$RLY" addr add 198.18.3.1/24 dev rout1
    ip -n "$RCV" addr add 198.18.3.2/24 dev rcv1
    if [ "$ipv6" = 1 ]; then
        ip -n "$SND" addr add 2001:db8:1::1/64 dev snd0 nodad
        ip -n "$RLY" addr add 2001:db8:1::2/64 dev rin0 nodad
        ip -n "$RLY" addr add 2001:db8:2::1/64 dev rout0 nodad
        ip -n "$RCV" addr add 2001:db8:2::2/64 dev rcv0 nodad
        ip -n "$RLY" addr add 2001:db8:3::1/64 dev rout1 nodad
        ip -n "$RCV" addr add 2001:db8:3::2/64 dev rcv1 nodad
    fi

    ip -n "$SND" link set snd0 up
    ip -n "$RLY" link set rin0 up
    ip -n "$RLY" link set rout0 up
    ip -n "$RLY" link set rout1 up
    ip -n "$RCV" link set rcv0 up
    ip -n "$RCV" link set rcv1 up

    # senders: multicast to 239/8 leaves through snd0
    ip -n "$SND" route add 239.0.0.0/8 dev snd0

    # Wait (up to ~3 s) until every lab link's operstate is UP: the kernel's link watcher turns
    # veth carriers on a moment after `link set up`, and frames sent before that are lost.
    local ns ifs i all_up
    for i in $(seq 60); do
        all_up=1
        for ns_if in "$SND:snd0" "$RLY:rin0" "$RLY:rout0" "$RLY:rout1" "$RCV:rcv0" "$RCV:rcv1"; do
            ns=${ns_if%%:*}; ifs=${ns_if#*:}
            if [ "$(ip netns exec "$ns" cat "/sys/class/net/$ifs/operstate")" != "up" ]; then
                all_up=0; break
            fi
        done
        [ $all_up -eq 1 ] && break
        sleep 0.05
    done
    if [ $all_up -ne 1 ]; then
        echo "netns-lab: links did not come up" >&2
        return 1
    fi

    cat <<VARS
LAB_SND=$SND
LAB_RLY=$RLY
LAB_RCV=$RCV
LAB_SND_IF=snd0
LAB_SND_ADDR=198.18.1.1
LAB_RIN_IF=rin0
LAB_RIN_ADDR=198.18.1.2
LAB_ROUT0_IF=rout0
LAB_ROUT0_ADDR=198.18.2.1
LAB_RCV0_IF=rcv0
LAB_RCV0_ADDR=198.18.2.2
LAB_ROUT1_IF=rout1
LAB_ROUT1_ADDR=198.18.3.1
LAB_RCV1_IF=rcv1
LAB_RCV1_ADDR=198.18.3.2
VARS
    if [ "$ipv6" = 1 ]; then
        cat <<VARS
LAB_SND_ADDR6=2001:db8:1::1
LAB_RIN_ADDR6=2001:db8:1::2
LAB_ROUT0_ADDR6=2001:db8:2::1
LAB_RCV0_ADDR6=2001:db8:2::2
LAB_ROUT1_ADDR6=2001:db8:3::1
LAB_RCV1_ADDR6=2001:db8:3::2
VARS
    fi
}

lab_status() {
    local ns
    for ns in "$SND" "$RLY" "$RCV"; do
        if ns_exists "$ns"; then
            echo "== $ns"
            ip -n "$ns" -br addr
            ip -n "$ns" route
        else
            echo "== $ns (absent)"
        fi
    done
}

case "$cmd" in
    up)
        # If anything fails half-way, leave nothing behind.
        trap 'rc=$?; if [ $rc -ne 0 ]; then echo "netns-lab: up failed, cleaning" >&2; lab_down; fi' EXIT
        lab_up
        ;;
    down) lab_down ;;
    status) lab_status ;;
    *) usage ;;
esac
