#!/usr/bin/env bash
# Live soak of the real daemon (issue 7): minutes of steady traffic through the release daemon
# with 2 workers while rules churn around it, then a verdict on memory, fds and loss.
#
#   scripts/live-soak.sh [--minutes N] [--out DIR] [--mcrelay PATH] [--rate PPS]
#
# Lab: scripts/netns-lab.sh (snd0 -> rin0 | rout0 -> rcv0, rout1 -> rcv1) plus a second input
# link snd1 -> rin1 (198.18.4.0/24) so a whole input interface can gain and lose all its groups.
#
# Traffic (bench/mcgen.c, paced AF_PACKET frames; bench/mccount.c counts on rcv0):
#   steady  rin0 239.1.1.1-4:5001 -> rout0 239.10.1.1-4:6001   in the config, never touched
#   churn   rin0 239.2.0.1-4:5001 -> rout1 239.20.0.K:6001 (sometimes also rout0 239.21.0.K)
#   block   rin1 239.3.0.1-24:5001 -> rout1 239.30.0.N:6001    24 groups: two helper sockets
# The steady generator runs in 10-second chunks (steady + churn-on-rin0 frames, round robin),
# each ended, settled and counted exactly, so every chunk has exact sent/received per stream.
# A second mcgen sends the block's groups on snd1 for the whole run.
#
# Churn, every ~3 s: add/remove a churn rule (`mcrelay rule add/remove`), add or remove the
# whole rin1 block (24 rules, so rin1 enters and leaves the workers' plans and its helper
# sockets open and close), SIGHUP after rewriting the config with a random subset. Faults:
# rout1 flaps (not a path of the steady streams: they must not lose anything), one rin0 flap and
# two `kill -9` of a worker (the chunks they overlap, plus a 3 s grace, are "disturbed").
#
# Every chunk (~10 s): supervisor and worker VmRSS and fd counts, /proc/net/igmp groups in the
# relay namespace, `mcrelay stats --json` totals -> DIR/samples.csv; DIR/events.log has the churn
# and faults. At the end scripts/live-soak-verdict.py prints min/first/last/max per metric and
# the verdict (exit 1 on fail). Exit 3: the harness itself failed. Everything started here is
# ended by pid on exit, including Ctrl-C, and the lab namespaces are deleted.
set -euo pipefail

MINUTES=10
OUT=""
MCRELAY=".build/release/mcrelay"
RATE=1600   # frames/s of the chunk generator (8 streams: 200 pps each); the block adds 480
usage() { sed -n '2,8p' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) MINUTES=${2:?}; shift 2 ;;
        --out) OUT=${2:?}; shift 2 ;;
        --mcrelay) MCRELAY=${2:?}; shift 2 ;;
        --rate) RATE=${2:?}; shift 2 ;;
        -h|--help) usage ;;
        *) echo "live-soak: unknown argument $1" >&2; usage ;;
    esac
done
[[ "$MINUTES" =~ ^[0-9]+$ ]] && [ "$MINUTES" -ge 1 ] || { echo "live-soak: --minutes must be a positive integer" >&2; exit 2; }
[[ "$RATE" =~ ^[0-9]+$ ]] && [ "$RATE" -ge 80 ] || { echo "live-soak: --rate must be an integer >= 80" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "live-soak: must run as root (namespaces, AF_PACKET)" >&2; exit 2; }
for tool in cc jq python3 ip; do
    command -v "$tool" > /dev/null || { echo "live-soak: needs $tool (scripts/install-deps.sh installs jq)" >&2; exit 2; }
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ -x "$MCRELAY" ] || { echo "live-soak: no daemon at $MCRELAY (swift build -c release --product mcrelay)" >&2; exit 2; }
MCRELAY=$(cd "$(dirname "$MCRELAY")" && pwd)/$(basename "$MCRELAY")
OUT=${OUT:-soak/results/live-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export SWIFT_BACKTRACE=enable=no

PREFIX="lsk$$"
PREFIX=${PREFIX:0:11}
WORK=$(mktemp -d /tmp/live-soak.XXXXXX)
SOCK="$WORK/control.sock"
CONFIG="$WORK/config.json"
EVENTS="$OUT/events.log"
CSV="$OUT/samples.csv"
HARNESS_ERRORS="$OUT/harness-errors.log"
: > "$EVENTS"; : > "$HARNESS_ERRORS"

DAEMON_PID=""; CHURN_PID=""; BLOCKGEN_PID=""; CHUNKGEN_PID=""; MCCOUNT_PID=""
LAB_UP=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +eu  # best effort from here on: every step runs even if one fails
    for pid in "$CHURN_PID" "$CHUNKGEN_PID" "$BLOCKGEN_PID"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null
    done
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID"
        for _ in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$DAEMON_PID" 2>/dev/null && kill -9 "$DAEMON_PID"
    fi
    [ -n "$MCCOUNT_PID" ] && kill "$MCCOUNT_PID" 2>/dev/null
    for pid in "$CHURN_PID" "$CHUNKGEN_PID" "$BLOCKGEN_PID" "$DAEMON_PID" "$MCCOUNT_PID"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null
    done
    # the lab script ends anything still inside the namespaces (ours: nothing else runs there)
    [ $LAB_UP -eq 1 ] && scripts/netns-lab.sh down "$PREFIX"
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'echo "live-soak: interrupted" >&2; exit 130' INT TERM

now_ms() { date +%s%3N; }
T0=$(now_ms)
log_event() { echo "$(( $(now_ms) - T0 )) $*" >> "$EVENTS"; }
harness_error() { echo "live-soak: HARNESS ERROR: $*" >&2; echo "$*" >> "$HARNESS_ERRORS"; }
die() { harness_error "$*"; exit 3; }

# --- tools -----------------------------------------------------------------------------------
# A private copy of the daemon: a rebuild during the run must not change what restarted workers exec.
cp "$MCRELAY" "$WORK/mcrelay"; MCRELAY="$WORK/mcrelay"
for tool in mcgen mccount; do
    cc -O2 -Wall -Wextra -Werror -o "$WORK/$tool" "bench/$tool.c" || die "cannot compile bench/$tool.c"
done

# --- lab -------------------------------------------------------------------------------------
eval "$(scripts/netns-lab.sh up "$PREFIX")" || die "lab did not come up"
LAB_UP=1
ip -n "$LAB_SND" link add snd1 type veth peer name rin1 netns "$LAB_RLY"
ip -n "$LAB_SND" addr add 198.18.4.1/24 dev snd1
ip -n "$LAB_RLY" addr add 198.18.4.2/24 dev rin1
ip -n "$LAB_SND" link set snd1 up
ip -n "$LAB_RLY" link set rin1 up
for _ in $(seq 60); do
    [ "$(ip netns exec "$LAB_RLY" cat /sys/class/net/rin1/operstate)" = up ] && break; sleep 0.05
done
# The links stay at their defaults: the relay itself sends one frame per datagram toward a veth
# (`--segmentation auto`), so the links' drop counters count datagrams, as the counter does.
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# --- frames ----------------------------------------------------------------------------------
SND0_MAC=$(in_ns "$LAB_SND" cat /sys/class/net/snd0/address)
SND1_MAC=$(in_ns "$LAB_SND" cat /sys/class/net/snd1/address)
make_frames() {  # OUTFILE SRC_MAC SRC_IP GROUP...   (Ethernet/IPv4/UDP to port 5001, 64-byte payload)
    python3 - "$@" <<'PY'
import struct, sys
out, mac, src, groups = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF
data = bytearray()
for g in groups:
    o = [int(x) for x in g.split(".")]
    dmac = bytes([0x01, 0x00, 0x5E, o[1] & 0x7F, o[2], o[3]])
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + 64, 0, 0, 64, 17, 0,
                              bytes(int(x) for x in src.split(".")), bytes(o)))
    struct.pack_into("!H", ip, 10, csum(bytes(ip)))
    f = dmac + bytes.fromhex(mac.replace(":", "")) + b"\x08\x00" + bytes(ip) + struct.pack("!HHHH", 40000, 5001, 72, 0) + b"\x5a" * 64
    data += struct.pack("<H", len(f)) + f
open(out, "wb").write(data)
PY
}
STEADY=(239.1.1.1 239.1.1.2 239.1.1.3 239.1.1.4)
CHURN=(239.2.0.1 239.2.0.2 239.2.0.3 239.2.0.4)
BLOCK=(); for i in $(seq 24); do BLOCK+=("239.3.0.$i"); done
make_frames "$WORK/chunk.frames" "$SND0_MAC" 198.18.1.1 "${STEADY[@]}" "${CHURN[@]}"
make_frames "$WORK/block.frames" "$SND1_MAC" 198.18.4.1 "${BLOCK[@]}"
NSTREAMS=8

# --- config and daemon -----------------------------------------------------------------------
steady_rules_json() {
    local i sep=""
    for i in 1 2 3 4; do
        printf '%s{"name":"st%d","in":"rin0:239.1.1.%d:5001","out":["rout0:239.10.1.%d:6001"]}' "$sep" "$i" "$i" "$i"
        sep=","
    done
}
printf '{"rules":[%s]}\n' "$(steady_rules_json)" > "$CONFIG"
"$MCRELAY" config check "$CONFIG" > /dev/null || die "config check failed on the generated config"

# `ip netns exec` execs the daemon, so $! is the supervisor itself (never background a shell function here)
ip netns exec "$LAB_RLY" "$MCRELAY" daemon --config "$CONFIG" --control "$SOCK" --workers 2 --log-level notice \
    > "$OUT/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || die "the daemon did not create its control socket (see $OUT/daemon.log)"
relay() { in_ns "$LAB_RLY" "$MCRELAY" "$@" --control "$SOCK"; }
for _ in $(seq 100); do
    [ "$(relay stats --json 2>/dev/null | jq '[.workers[] | select(.alive and .plan_version != null)] | length' 2>/dev/null)" = 2 ] && break
    sleep 0.1
done

# --- counter ---------------------------------------------------------------------------------
coproc COUNTER { exec ip netns exec "$LAB_RCV" "$WORK/mccount" rcv0; }
MCCOUNT_PID=$COUNTER_PID  # bash unsets COUNTER_PID when the coproc ends; cleanup needs the pid
exec {COUNTER_IN}>&"${COUNTER[1]}" {COUNTER_OUT}<&"${COUNTER[0]}"
read -r -t 10 line <&"$COUNTER_OUT" || die "mccount did not start"
[ "$line" = ready ] || die "mccount said '$line' instead of ready"
snap() {  # -> one JSON line, or a harness failure
    local reply
    kill -0 "$MCCOUNT_PID" 2>/dev/null || die "mccount exited"
    echo snap >&"$COUNTER_IN"
    read -r -t 10 reply <&"$COUNTER_OUT" || die "mccount did not answer"
    echo "$reply"
}

# --- churn (background) ------------------------------------------------------------------------
TOTAL_S=$((MINUTES * 60))
churn_loop() {
    trap - EXIT INT TERM
    set +e
    local present=(0 0 0 0) block=0 tick=0 k t i failures=0
    local kills_at=$((TOTAL_S * 35 / 100)) kill2_at=$((TOTAL_S * 70 / 100)) rin0_flap_at=$((TOTAL_S / 2))
    local next_rout1_flap=$((TOTAL_S * 15 / 100)) killed1=0 killed2=0 rin0_flapped=0
    op() {  # a control command that must succeed
        local out
        if ! out=$(relay "$@" 2>&1); then
            failures=$((failures + 1)); log_event "op_failed $* :: ${out//$'\n'/ }"
        fi
    }
    add_churn() {
        local k=$1 outs=(--out "rout1:239.20.0.$k:6001")
        (( RANDOM % 2 )) && outs+=(--out "rout0:239.21.0.$k:6001")
        op rule add --in "rin0:239.2.0.$k:5001" "${outs[@]}" --name "ch$k"; present[k-1]=1; log_event "rule_add ch$k"
    }
    remove_churn() { op rule remove "ch$1"; present[$1-1]=0; log_event "rule_remove ch$1"; }
    block_add() {
        for i in $(seq 24); do op rule add --in "rin1:239.3.0.$i:5001" --out "rout1:239.30.0.$i:6001" --name "b$i"; done
        block=1; log_event "block_add rin1 24 groups"
    }
    block_remove() { for i in $(seq 24); do op rule remove "b$i"; done; block=0; log_event "block_remove rin1 24 groups"; }
    sighup() {  # the config file gets the steady rules and a random subset; the daemon replaces its set
        local rules sep=, k i
        rules=$(steady_rules_json)
        for k in 1 2 3 4; do
            if (( RANDOM % 2 )); then
                rules+="$sep{\"name\":\"ch$k\",\"in\":\"rin0:239.2.0.$k:5001\",\"out\":[\"rout1:239.20.0.$k:6001\"]}"; present[k-1]=1
            else present[k-1]=0; fi
        done
        if (( RANDOM % 2 )); then
            for i in $(seq 24); do rules+="$sep{\"name\":\"b$i\",\"in\":\"rin1:239.3.0.$i:5001\",\"out\":[\"rout1:239.30.0.$i:6001\"]}"; done
            block=1
        else block=0; fi
        printf '{"rules":[%s]}\n' "$rules" > "$CONFIG.tmp" && mv "$CONFIG.tmp" "$CONFIG"
        kill -HUP "$DAEMON_PID"; log_event "sighup ch=${present[*]} block=$block"
        sleep 0.5  # let the reload land before the next command relies on its result
    }
    flap() {  # IFACE SECONDS
        log_event "flap_start $1"; ip -n "$LAB_RLY" link set "$1" down; sleep "$2"
        ip -n "$LAB_RLY" link set "$1" up; log_event "flap_end $1"
    }
    kill_worker() {
        local pid
        pid=$(relay stats --json 2>/dev/null | jq -r '[.workers[] | select(.alive) | .pid][0] // empty')
        if [ -n "$pid" ] && [ "$(ps -o ppid= -p "$pid" | tr -d ' ')" = "$DAEMON_PID" ]; then
            kill -9 "$pid"; log_event "kill_worker $pid"
        else
            failures=$((failures + 1)); log_event "op_failed kill_worker: no live worker pid"
        fi
    }
    while :; do
        sleep "$((2 + RANDOM % 3))"
        t=$(( ($(now_ms) - T0) / 1000 ))
        [ "$t" -ge "$TOTAL_S" ] && break
        if [ $killed1 -eq 0 ] && [ "$t" -ge $kills_at ]; then kill_worker; killed1=1; continue; fi
        if [ $killed2 -eq 0 ] && [ "$t" -ge $kill2_at ]; then kill_worker; killed2=1; continue; fi
        if [ $rin0_flapped -eq 0 ] && [ "$t" -ge $rin0_flap_at ]; then flap rin0 2; rin0_flapped=1; continue; fi
        if [ "$t" -ge $next_rout1_flap ]; then flap rout1 3; next_rout1_flap=$((t + 120)); continue; fi
        tick=$((tick + 1))
        case $((tick % 6)) in
            0|3) k=$((1 + RANDOM % 4)); if [ "${present[k-1]}" = 0 ]; then add_churn "$k"; else remove_churn "$k"; fi ;;
            1|5) for k in 1 2 3 4; do [ "${present[k-1]}" = 1 ] && { remove_churn "$k"; break; }; done ;;
            2) if [ $block = 0 ]; then block_add; else block_remove; fi ;;
            4) sighup ;;
        esac
    done
    echo "$failures" > "$OUT/churn-failures"
}
churn_loop &
CHURN_PID=$!

# --- the block's traffic, the whole run (its counts are not judged; its exit status is) -----------
BLOCK_RATE=480
ip netns exec "$LAB_SND" "$WORK/mcgen" snd1 "$WORK/block.frames" $((BLOCK_RATE * (TOTAL_S + 15))) $BLOCK_RATE 4 $((TOTAL_S + 30)) \
    > "$WORK/blockgen.out" 2>&1 &
BLOCKGEN_PID=$!

# --- chunks and samples --------------------------------------------------------------------------
CHUNK_S=10
CHUNK_COUNT=$(( RATE * CHUNK_S / NSTREAMS * NSTREAMS ))
echo "t_s,load1,sup_rss_kb,sup_fds,workers_rss_kb,w0_pid,w0_rss_kb,w0_fds,w1_pid,w1_rss_kb,w1_fds,igmp_groups,helper_sockets,joined,outstanding,rules,stats_packets,stats_send_errors,stats_drops,ingress_queue_drops,plan_version,chunk_start_ms,chunk_end_ms,chunk_sent,steady_expected,steady_received,steady_lost,steady_dup,steady_relay_packets,rin0_rx_dropped,rcv0_rx_dropped,rout0_tx_dropped,softnet_dropped" > "$CSV"
# Where a loss happened: the relay's own count for the steady rules (cumulative; a restarted
# worker starts again from 0), the links' drop counters and the kernel's backlog drops (all CPUs).
link_stat() { in_ns "$1" cat "/sys/class/net/$2/statistics/$3" 2>/dev/null || echo ""; }
softnet_dropped() { local s=0 _ dropped _rest; while read -r _ dropped _rest; do s=$((s + 16#$dropped)); done < /proc/net/softnet_stat; echo $s; }
proc_rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo ""; }
proc_fds() { if [ -d "/proc/$1/fd" ]; then ls "/proc/$1/fd" 2>/dev/null | wc -l; else echo ""; fi; }
# Datagrams are counted by UDP payload bytes / 64: the relay sends with UDP GSO, and a veth hands
# the receiver one large frame per GSO send, so frame counts undercount (bench/README.md).
steady_counts() {  # JSON snapshot -> "n1 n2 n3 n4" for the steady outputs
    jq -r '[.groups[] | {key: "\(.[0]):\(.[1])", value: (if .[4] % 64 == 0 then .[4] / 64 else "bad_bytes" end)}] | from_entries as $g
           | [range(1;5) | $g["239.10.1.\(.):6001"] // 0] | map(tostring) | join(" ")'
}
echo "live-soak: ${MINUTES} min, daemon pid $DAEMON_PID, lab $PREFIX, results in $OUT (load: $(cut -d' ' -f1-3 /proc/loadavg))"
before=$(snap)
read -r -a last <<< "$(echo "$before" | steady_counts)"
while :; do
    elapsed=$(( ($(now_ms) - T0) / 1000 ))
    [ "$elapsed" -ge "$TOTAL_S" ] && break
    kill -0 "$DAEMON_PID" 2>/dev/null || { log_event "daemon_died"; echo "live-soak: the daemon died" >&2; break; }
    start_ms=$(( $(now_ms) - T0 ))
    ip netns exec "$LAB_SND" "$WORK/mcgen" snd0 "$WORK/chunk.frames" "$CHUNK_COUNT" "$RATE" 4 $((CHUNK_S * 3 / 2)) \
        > "$WORK/chunkgen.out" 2>&1 &
    CHUNKGEN_PID=$!
    gen_rc=0; wait "$CHUNKGEN_PID" || gen_rc=$?; CHUNKGEN_PID=""
    end_ms=$(( $(now_ms) - T0 ))
    sent=$(sed -n 's/^sent \([0-9]*\) seconds.*/\1/p' "$WORK/chunkgen.out")
    [ $gen_rc -eq 0 ] && [ -n "$sent" ] || die "mcgen failed (exit $gen_rc): $(tail -c 400 "$WORK/chunkgen.out")"
    sleep 0.5  # in-flight frames reach the counter
    reply=$(snap)
    ring_drops=$(echo "$reply" | jq .ring_drops); table_full=$(echo "$reply" | jq .table_full)
    [ "$ring_drops" = 0 ] && [ "$table_full" = 0 ] || die "mccount lost frames itself (ring_drops $ring_drops, table_full $table_full)"
    read -r -a now_counts <<< "$(echo "$reply" | steady_counts)"
    [[ "${now_counts[*]}" =~ ^[0-9\ ]+$ ]] && [ ${#now_counts[@]} -eq 4 ] || die "counter payload bytes not a multiple of 64: ${now_counts[*]}"
    expected=0; received=0; lost=0; dup=0
    for s in 0 1 2 3; do  # round robin from the first frame of the file: stream s gets one more while s < sent % 8
        want=$(( sent / NSTREAMS + (s < sent % NSTREAMS ? 1 : 0) ))
        got=$(( now_counts[s] - last[s] ))
        expected=$((expected + want)); received=$((received + got))
        if [ $got -lt $want ]; then lost=$((lost + want - got)); fi
        if [ $got -gt $want ]; then dup=$((dup + got - want)); fi
    done
    last=("${now_counts[@]}")

    stats=$(relay stats --json 2>/dev/null || true)
    if [ -z "$stats" ] || ! echo "$stats" | jq -e .workers > /dev/null 2>&1; then
        log_event "stats_failed"; stats='{"workers":[],"rules":[],"joined":[],"outstanding":[],"helper_sockets":[],"drops":{}}'
    fi
    w0=$(echo "$stats" | jq -r '[.workers[] | select(.id == 0) | .pid][0] // empty')
    w1=$(echo "$stats" | jq -r '[.workers[] | select(.id == 1) | .pid][0] // empty')
    totals=$(echo "$stats" | jq -r '[(.helper_sockets | length), (.joined | length), (.outstanding | length),
        (.rules | length), ([.rules[].packets] | add // 0), ([.rules[].outputs[].send_errors] | add // 0),
        ([.drops | .. | numbers] | add // 0), (.ingress_queue_drops // 0), (.plan_version // "")] | map(tostring) | join(",")')
    igmp=$(in_ns "$LAB_RLY" awk 'substr($0,1,1) == "\t" && $1 != "010000E0" {n++} END {print n+0}' /proc/net/igmp)
    w0_rss=$(proc_rss "$w0"); w1_rss=$(proc_rss "$w1")
    steady_relay=$(echo "$stats" | jq '[.rules[] | select(.name // "" | startswith("st")) | .packets] | add // 0')
    diag="$steady_relay,$(link_stat "$LAB_RLY" rin0 rx_dropped),$(link_stat "$LAB_RCV" rcv0 rx_dropped),$(link_stat "$LAB_RLY" rout0 tx_dropped),$(softnet_dropped)"
    echo "$elapsed,$(cut -d' ' -f1 /proc/loadavg),$(proc_rss "$DAEMON_PID"),$(proc_fds "$DAEMON_PID"),$(( ${w0_rss:-0} + ${w1_rss:-0} )),$w0,$w0_rss,$(proc_fds "$w0"),$w1,$w1_rss,$(proc_fds "$w1"),$igmp,$totals,$start_ms,$end_ms,$sent,$expected,$received,$lost,$dup,$diag" >> "$CSV"
    printf '  t=%4ss sent %6s steady %6s/%6s lost %s dup %s  sup rss %s kB fds %s  igmp %s  load %s\n' \
        "$elapsed" "$sent" "$received" "$expected" "$lost" "$dup" "$(proc_rss "$DAEMON_PID")" "$(proc_fds "$DAEMON_PID")" "$igmp" \
        "$(cut -d' ' -f1 /proc/loadavg)"
done

# --- the end: generators and churn finish, the daemon stops cleanly ----------------------------------
set +e
kill -0 "$DAEMON_PID" 2>/dev/null || kill "$CHURN_PID" 2>/dev/null  # nothing left to churn
wait "$CHURN_PID"; CHURN_PID=""
# The block generator was sized to outlast the run: still running is the healthy case.
if kill -0 "$BLOCKGEN_PID" 2>/dev/null; then
    kill "$BLOCKGEN_PID"; wait "$BLOCKGEN_PID"
else
    wait "$BLOCKGEN_PID"; harness_error "block mcgen ended early (exit $?): $(tail -c 400 "$WORK/blockgen.out")"
fi
BLOCKGEN_PID=""
if grep -qi 'mcgen:' "$WORK/blockgen.out"; then harness_error "block mcgen reported: $(grep -i 'mcgen:' "$WORK/blockgen.out" | head -3)"; fi
daemon_alive=1
kill -0 "$DAEMON_PID" 2>/dev/null || daemon_alive=0
[ $daemon_alive -eq 1 ] && kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID"; daemon_rc=$?; DAEMON_PID=""
kill "$MCCOUNT_PID" 2>/dev/null; wait "$MCCOUNT_PID" 2>/dev/null; MCCOUNT_PID=""  # its stdin is shared with children, EOF would not reach it
{
    echo "minutes=$MINUTES rate=$RATE block_rate=$BLOCK_RATE chunk_s=$CHUNK_S workers=2"
    echo "daemon_alive_at_end=$daemon_alive daemon_exit=$daemon_rc"
    echo "churn_failures=$(cat "$OUT/churn-failures" 2>/dev/null || echo missing)"
    echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg) cpus=$(nproc)"
} > "$OUT/run.txt"
python3 scripts/live-soak-verdict.py "$OUT" | tee "$OUT/table.txt"
verdict=${PIPESTATUS[0]}
[ -s "$HARNESS_ERRORS" ] && verdict=3
exit $verdict
