#!/usr/bin/env bash
# Proves the lab harness without a relay: mcsend.py in ${PREFIX}-snd sends two streams out of
# snd0, mcrecv.py in ${PREFIX}-rly receives them on rin0 (the other end of the same veth), and
# the script checks sent == received with no corrupt, duplicate or reordered datagram.
#
#   scripts/lab-selftest.sh [PREFIX] [COUNT] [RATE]     (root; default PREFIX labst$$)
#   LAB_IPV6=1 scripts/lab-selftest.sh ...               the IPv6 lab (netns-lab.sh --ipv6): two IPv6
#                                                        streams (ff3e::, ff05::) beside the two IPv4 ones
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=${1:-labst$$}
count=${2:-500}
rate=${3:-500}
tmp=$(mktemp -d)
recv_pid=

cleanup() {
    if [ -n "$recv_pid" ] && kill -0 "$recv_pid" 2>/dev/null; then kill "$recv_pid" 2>/dev/null || true; fi
    "$here/netns-lab.sh" down "$prefix" || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

ipv6=${LAB_IPV6:-0}
eval "$("$here/netns-lab.sh" up "$prefix" $([ "$ipv6" = 1 ] && echo --ipv6))"
echo "lab-selftest: lab $prefix up"

streams=(--stream 239.1.1.1:5001:1 --stream 239.1.1.2:5002:2)
recv_addrs=(--iface-addr "$LAB_RIN_ADDR")
send_addrs=(--source "$LAB_SND_ADDR")
if [ "$ipv6" = 1 ]; then
    streams+=(--stream "[ff3e::8000:1]:5003:3" --stream "[ff05::8000:2]:5004:4")
    recv_addrs+=(--iface-addr "$LAB_RIN_ADDR6")
    send_addrs+=(--source "$LAB_SND_ADDR6")
fi
ip netns exec "$LAB_RLY" python3 "$here/mcrecv.py" "${recv_addrs[@]}" "${streams[@]}" \
    --expect "$count" --size 300 --duration 30 --ready-file "$tmp/ready" --strict \
    >"$tmp/recv.json" &
recv_pid=$!
for _ in $(seq 100); do [ -e "$tmp/ready" ] && break; kill -0 "$recv_pid" 2>/dev/null || break; sleep 0.05; done
[ -e "$tmp/ready" ] || { echo "lab-selftest: receiver did not get ready" >&2; exit 1; }

ip netns exec "$LAB_SND" python3 "$here/mcsend.py" "${send_addrs[@]}" "${streams[@]}" \
    --count "$count" --rate "$rate" --size 300 --ttl 4 >"$tmp/send.json"
send_rc=0
set +e
wait "$recv_pid"; recv_rc=$?
set -e
recv_pid=
echo "sender:   $(cat "$tmp/send.json")"
echo "receiver: $(cat "$tmp/recv.json")"

python3 - "$tmp/send.json" "$tmp/recv.json" "$count" <<'PY'
import json, sys
sent = json.load(open(sys.argv[1])); recv = json.load(open(sys.argv[2])); n = int(sys.argv[3])
ok = sent["errors"] == 0
for key, s in sent["sent"].items():
    r = recv["received"][key]
    line = (f"{key}: sent {s['sent']} received {r['received']} dup {r['duplicates']} "
            f"corrupt {r['corrupt']} ooo {r['out_of_order']} ttl {r['ttl_min']}..{r['ttl_max']}")
    good = s["sent"] == n == r["received"] and r["duplicates"] == r["corrupt"] == r["out_of_order"] == 0
    print(("ok   " if good else "FAIL ") + line)
    ok = ok and good
sys.exit(0 if ok else 1)
PY
[ "$send_rc" -eq 0 ] && [ "$recv_rc" -eq 0 ]
echo "lab-selftest: passed"
