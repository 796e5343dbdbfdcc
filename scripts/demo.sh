#!/usr/bin/env bash
# The relay in a three-namespace lab, start to finish (`make demo`; root):
#   installs missing packages, builds, creates the lab (scripts/netns-lab.sh), starts the daemon
#   in the relay namespace, adds rules for three streams with the CLI, sends traffic for a few
#   seconds while showing the daemon's live counters, checks what arrived against what was sent,
#   stops the daemon (SIGTERM: final counters) and removes everything it created.
#
#   scripts/demo.sh                 (SCRATCH=/path selects the build folder, as in the Makefile)
#   DEMO_SECONDS=5 DEMO_RATE=300    traffic duration and packets/s per stream
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
export PATH="$PATH:/opt/swift/usr/bin"
export SWIFT_BACKTRACE=enable=no
seconds=${DEMO_SECONDS:-5}
rate=${DEMO_RATE:-300}
count=$((seconds * rate))

if [ "$(id -u)" -ne 0 ]; then
    echo "demo: must run as root (network namespaces)" >&2
    exit 1
fi

prefix="demo$$"
prefix=${prefix:0:11}
tmp=$(mktemp -d /tmp/mcrelay-demo.XXXXXX)
control="$tmp/control.sock"
daemon_pid=
pids=()

teardown() {
    local rc=$?
    set +e
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid"
        for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$daemon_pid" 2>/dev/null
    fi
    "$here/netns-lab.sh" down "$prefix" >/dev/null 2>&1
    rm -rf "$tmp"
    if ip netns list | grep -q "^$prefix-"; then
        echo "demo: namespaces of $prefix are still there" >&2
        rc=1
    else
        echo "== teardown: lab $prefix removed, no processes or files left"
    fi
    exit $rc
}
trap teardown EXIT
trap 'exit 130' INT TERM

echo "== dependencies"
bash "$here/install-deps.sh"

echo "== build"
scratch=(); [ -n "${SCRATCH:-}" ] && scratch=(--scratch-path "$SCRATCH")
if ! build_log=$(cd "$root" && swift build "${scratch[@]}" 2>&1); then
    echo "$build_log" | grep -E "error|warning: unre" | head -20 >&2
    echo "demo: build failed" >&2
    exit 1
fi
echo "$build_log" | tail -1
bin="$(cd "$root" && swift build "${scratch[@]}" --show-bin-path)/mcrelay"
[ -x "$bin" ] || { echo "demo: $bin was not built" >&2; exit 1; }

echo "== lab $prefix: $prefix-snd (198.18.1.1) -- $prefix-rly (relay) -- $prefix-rcv (198.18.2.2, 198.18.3.2)"
eval "$("$here/netns-lab.sh" up "$prefix")"

echo "== daemon (2 workers) in $LAB_RLY"
ip netns exec "$LAB_RLY" "$bin" daemon --control "$control" --workers 2 >"$tmp/daemon.out" 2>"$tmp/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do "$bin" stats --control "$control" >/dev/null 2>&1 && break; sleep 0.1; done
"$bin" stats --control "$control" >/dev/null || { echo "demo: daemon did not start:" >&2; cat "$tmp/daemon.log" >&2; exit 1; }

echo "== rules"
"$bin" rule add --control "$control" --name cam1 --in rin0:239.1.1.1:5001 --out rout0:239.10.1.1:6001
"$bin" rule add --control "$control" --name cam2 --in rin0:239.1.1.2:5002 --out rout0:239.10.1.2:6002:16 --out rout1:239.10.2.2:6002
"$bin" rule add --control "$control" --name cam3 --in rin0:239.1.1.3:5003 --out rout1:239.10.1.3:7003:8
"$bin" rule list --control "$control"
sleep 0.5

echo "== traffic: 3 streams x $count datagrams at $rate/s, 200-byte payloads"
ip netns exec "$LAB_RCV" python3 "$here/mcrecv.py" --iface-addr 198.18.2.2 --stream 239.10.1.1:6001:1 --stream 239.10.1.2:6002:2 \
    --expect "$count" --size 200 --duration $((seconds + 10)) --idle 3 --ready-file "$tmp/r0.ready" >"$tmp/r0.json" &
pids+=($!); r0=$!
ip netns exec "$LAB_RCV" python3 "$here/mcrecv.py" --iface-addr 198.18.3.2 --stream 239.10.2.2:6002:2 --stream 239.10.1.3:7003:3 \
    --expect "$count" --size 200 --duration $((seconds + 10)) --idle 3 --ready-file "$tmp/r1.ready" >"$tmp/r1.json" &
pids+=($!); r1=$!
for _ in $(seq 100); do [ -e "$tmp/r0.ready" ] && [ -e "$tmp/r1.ready" ] && break; sleep 0.05; done
ip netns exec "$LAB_SND" python3 "$here/mcsend.py" --source 198.18.1.1 --stream 239.1.1.1:5001:1 --stream 239.1.1.2:5002:2 \
    --stream 239.1.1.3:5003:3 --count "$count" --rate "$rate" --size 200 >"$tmp/send.json" &
pids+=($!); sender=$!
while kill -0 "$sender" 2>/dev/null; do
    sleep 1
    echo "-- live counters"
    "$bin" stats --control "$control" | grep -E "^rule|->" || true
done
wait "$sender" || { echo "demo: sender failed" >&2; exit 1; }
wait "$r0" || true
wait "$r1" || true

echo "== result (sent -> received at the receiver, per output)"
python3 - "$tmp/send.json" "$tmp/r0.json" "$tmp/r1.json" <<'PY'
import json, sys
sent = json.load(open(sys.argv[1]))["sent"]
by_id = {s["stream_id"]: s["sent"] for s in sent.values()}
ok = True
for path in sys.argv[2:]:
    for key, r in sorted(json.load(open(path))["received"].items()):
        n = by_id[r["stream_id"]]
        good = r["received"] == n and r["duplicates"] == 0 and r["corrupt"] == 0
        ok = ok and good
        print(f"{'ok  ' if good else 'FAIL'} stream {r['stream_id']} -> {key}: sent {n}, received {r['received']}, "
              f"duplicates {r['duplicates']}, corrupt {r['corrupt']}, ttl {r['ttl_min']}")
sys.exit(0 if ok else 1)
PY

echo "== SIGTERM: the daemon leaves its groups and prints its final counters"
kill -TERM "$daemon_pid"
wait "$daemon_pid"
daemon_pid=
cat "$tmp/daemon.out"
