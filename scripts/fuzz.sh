#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer + AddressSanitizer) of mcrelay's input boundaries.
#
#   scripts/fuzz.sh                     build, then run every target FUZZ_SECONDS (default 60) each
#   scripts/fuzz.sh frame config        only these targets
#   scripts/fuzz.sh --smoke             CI: debug build, every target 5 s (FUZZ_SECONDS overrides)
#   scripts/fuzz.sh --build-only        build the fuzzers, run nothing
#   scripts/fuzz.sh --minimize T FILE   minimize a crash input of target T (writes FILE.min)
#   scripts/fuzz.sh --fresh N [T...]    N runs per target, each from the committed seeds alone with
#                                       libFuzzer's -seed=1..N (how CI's smoke starts; a new target
#                                       should pass this before it lands: CI found a crash in 5 s
#                                       that 60 s on a grown local corpus had missed)
#
# A target with a known unfixed crash (Fuzz/regressions/<t>/known-*) is skipped, since the
# fuzzer would stop on it at once; FUZZ_KNOWN=run fuzzes it anyway.
#
# Targets are the files in Fuzz/Targets/<name>.swift; each calls FuzzTarget.<name>.check from
# Fuzz/FuzzChecks, the same function Tests/FuzzRegressionTests replays over Fuzz/corpus/<name>/
# and Fuzz/regressions/<name>/. The property checks trap, so a violated property is a crash.
#
# How it builds: `swift build --target FuzzChecks` with -sanitize=fuzzer,address into its own
# scratch folder (FUZZ_SCRATCH, default .build-fuzz), then swiftc links each entry point with
# the objects of FuzzChecks and its dependencies. The normal build never sees these flags.
# (SwiftPM also applies the flags to the benchmark plugin's helper tool, whose link then fails
# harmlessly: that error stays in logs/build.log and the build's exit status is what counts.
# Delete $FUZZ_SCRATCH to drop objects of targets that left the FuzzChecks closure.)
#
# Outputs under $FUZZ_SCRATCH: fuzzers/<t> binaries, corpus/<t> (the growing working corpus,
# seeded from Fuzz/corpus/<t>; not committed), artifacts/<t>/crash-* and logs/<t>.log.
# Exit status: 0 when every target ran its time without a crash, 1 otherwise.
#
# Variables: FUZZ_SECONDS (per target), FUZZ_CONFIG=release|debug (default release: 2-4x the
# executions; AddressSanitizer still checks every access), FUZZ_SCRATCH, FUZZ_ARGS (extra
# libFuzzer flags, e.g. "-jobs=2 -workers=2").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$PATH:/opt/swift/usr/bin"
# A trapping Swift process otherwise starts swift-backtrace, which can hold a pipe open for minutes.
export SWIFT_BACKTRACE=enable=no

SMOKE=0
BUILD_ONLY=0
MINIMIZE=()
FRESH=0
TARGETS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1 ;;
        --build-only) BUILD_ONLY=1 ;;
        --minimize) MINIMIZE=("$2" "$3"); shift 2 ;;
        --fresh) FRESH="$2"; shift
                 [[ "$FRESH" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: --fresh needs a run count, got '$FRESH'" >&2; exit 2; } ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
        *) TARGETS+=("$1") ;;
    esac
    shift
done

if [ "$SMOKE" = 1 ] || [ "$FRESH" -gt 0 ]; then SECONDS_PER_TARGET=${FUZZ_SECONDS:-5}; else SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}; fi
# The smoke run builds debug (about a third of the release build time on a fresh machine).
if [ "$SMOKE" = 1 ] || [ "$FRESH" -gt 0 ]; then CONFIG=${FUZZ_CONFIG:-debug}; else CONFIG=${FUZZ_CONFIG:-release}; fi
SCRATCH=${FUZZ_SCRATCH:-$ROOT/.build-fuzz}
FUZZ_ARGS=${FUZZ_ARGS:-}

ALL_TARGETS=()
for f in Fuzz/Targets/*.swift; do ALL_TARGETS+=("$(basename "$f" .swift)"); done
if [ ${#MINIMIZE[@]} -gt 0 ]; then TARGETS=("${MINIMIZE[0]}"); fi
if [ ${#TARGETS[@]} -eq 0 ]; then TARGETS=("${ALL_TARGETS[@]}"); fi
for t in "${TARGETS[@]}"; do
    [ -f "Fuzz/Targets/$t.swift" ] || { echo "fuzz: no target '$t' (have: ${ALL_TARGETS[*]})" >&2; exit 2; }
done

# libpcap headers are the only system package the fuzzers need.
if [ ! -f /usr/include/pcap/pcap.h ]; then
    echo "fuzz: libpcap-dev missing; running scripts/install-deps.sh"
    bash scripts/install-deps.sh
fi

# --- build -------------------------------------------------------------------------------
echo "fuzz: building FuzzChecks ($CONFIG, -sanitize=fuzzer,address) in $SCRATCH"
BUILD_LOG=$SCRATCH/logs/build.log
mkdir -p "$SCRATCH/logs" "$SCRATCH/fuzzers"
set +e
swift build --scratch-path "$SCRATCH" -c "$CONFIG" --target FuzzChecks \
    -Xswiftc -sanitize=fuzzer,address >"$BUILD_LOG" 2>&1
BUILD_STATUS=$?
set -e
if [ $BUILD_STATUS -ne 0 ]; then
    grep -vE "Cannot export local symbol" "$BUILD_LOG" | tail -40 >&2
    echo "fuzz: build failed (full log: $BUILD_LOG)" >&2
    exit 1
fi
BIN_DIR=$(swift build --scratch-path "$SCRATCH" -c "$CONFIG" --show-bin-path)
# Objects of FuzzChecks and everything it depends on (the plugin's host tools live in *-tool.build).
mapfile -t OBJECTS < <(find "$BIN_DIR" -mindepth 2 -maxdepth 2 -path '*.build/*.o' ! -path '*-tool.build/*' | sort)
[ ${#OBJECTS[@]} -gt 0 ] || { echo "fuzz: no objects under $BIN_DIR" >&2; exit 1; }
OPT=$([ "$CONFIG" = release ] && echo -O || echo -Onone)
for t in "${TARGETS[@]}"; do
    if ! swiftc -sanitize=fuzzer,address -parse-as-library $OPT -g \
        -I "$BIN_DIR/Modules" -Xcc -fmodule-map-file="$ROOT/Sources/CPcap/module.modulemap" \
        "Fuzz/Targets/$t.swift" "${OBJECTS[@]}" -lpcap -o "$SCRATCH/fuzzers/$t" \
        >"$SCRATCH/logs/link-$t.log" 2>&1; then
        grep -vE "Cannot export local symbol" "$SCRATCH/logs/link-$t.log" | tail -20 >&2
        echo "fuzz: linking $t failed" >&2
        exit 1
    fi
done
echo "fuzz: built ${TARGETS[*]} -> $SCRATCH/fuzzers/"
[ "$BUILD_ONLY" = 1 ] && exit 0

# Leak checking is off: the Swift runtime's metadata caches look like leaks to LeakSanitizer.
LIBFUZZER_FLAGS=(-timeout=10 -rss_limit_mb=2048 -detect_leaks=0 -print_final_stats=1)

if [ ${#MINIMIZE[@]} -gt 0 ]; then
    t=${MINIMIZE[0]}; input=${MINIMIZE[1]}
    "$SCRATCH/fuzzers/$t" -minimize_crash=1 -max_total_time=60 -exact_artifact_path="$input.min" \
        "${LIBFUZZER_FLAGS[@]}" "$input" || true
    echo "fuzz: minimized input: $input.min (commit it under Fuzz/regressions/$t/)"
    exit 0
fi

# --- run ---------------------------------------------------------------------------------
FAILED=()
SUMMARY=()
# One libFuzzer run of target $1: working corpus $2, log $3, label $4, extra flags after.
run_target() {
    local t=$1 work=$2 log=$3 label=$4; shift 4
    local artifacts=$SCRATCH/artifacts/$t
    mkdir -p "$work" "$artifacts"
    dict=()
    [ -f "Fuzz/dicts/$t.dict" ] && dict=(-dict="Fuzz/dicts/$t.dict")
    set +e
    # shellcheck disable=SC2086
    # A `known-*` regression is a crash not fixed yet: the fuzzer would stop on it at once.
    known=$(find "Fuzz/regressions/$t" -name 'known-*' 2>/dev/null | head -1 || true)
    if [ -n "$known" ] && [ "${FUZZ_KNOWN:-skip}" != run ]; then
        echo "fuzz: $t skipped: known unfixed crash $known (FUZZ_KNOWN=run to fuzz it anyway)"
        SUMMARY+=("$t: skipped (known unfixed crash $known)")
        set -e
        return
    fi
    # The seeds are read-only inputs; new units go to $work, where the fixed regressions
    # (not the known ones, which would stop the run at once) are copied as seeds too.
    if [ -d "Fuzz/regressions/$t" ]; then
        find "Fuzz/regressions/$t" -type f ! -name 'known-*' ! -name '*.md' -exec cp -n {} "$work/" \;
    fi
    inputs=("$work" "Fuzz/corpus/$t")
    echo "fuzz: $label for ${SECONDS_PER_TARGET}s (log $log)"
    "$SCRATCH/fuzzers/$t" "${LIBFUZZER_FLAGS[@]}" "${dict[@]}" -max_total_time="$SECONDS_PER_TARGET" \
        -artifact_prefix="$artifacts/" "$@" $FUZZ_ARGS "${inputs[@]}" >"$log" 2>&1
    status=$?
    set -e
    final=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 || true)
    cov=$(sed -nE 's/.* cov: ([0-9]+) .*/\1/p' <<<"$final")
    ft=$(sed -nE 's/.* ft: ([0-9]+) .*/\1/p' <<<"$final")
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -1)
    rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log" | tail -1)
    corpus=$(find "$work" -type f | wc -l)
    line="$label: ${SECONDS_PER_TARGET}s, ${execs:-?} executions (${rate:-?}/s), cov ${cov:-?}, ft ${ft:-?}, corpus $corpus"
    if [ $status -ne 0 ]; then
        crash=$(ls -t "$artifacts"/crash-* "$artifacts"/timeout-* "$artifacts"/oom-* 2>/dev/null | head -1 || true)
        line="$line, FAILED (exit $status) ${crash:+input $crash}"
        FAILED+=("$label")
        # What failed and where: a violated property or sanitizer report, or for a Swift trap
        # (overflow, index out of range: only "deadly signal" otherwise) its frame and the
        # first frame of mcrelay's own code, with file and line.
        grep -E "fuzz property violated|ERROR: AddressSanitizer|Fatal error|SUMMARY" "$log" | head -5 >&2 || true
        grep -m1 -A1 "in Swift runtime failure" "$log" | sed -E 's/^ *#[0-9]+ 0x[0-9a-f]+ in //' >&2 || true
        [ -n "$crash" ] && echo "fuzz: reproduce: $SCRATCH/fuzzers/$t $crash; minimize: scripts/fuzz.sh --minimize $t $crash" >&2
    fi
    SUMMARY+=("$line")
}

for t in "${TARGETS[@]}"; do
    if [ "$FRESH" -gt 0 ]; then
        # from the committed seeds alone, as a fresh clone's CI starts
        for seed in $(seq 1 "$FRESH"); do
            fresh=$SCRATCH/fresh/$t-$seed
            rm -rf "$fresh"
            run_target "$t" "$fresh" "$SCRATCH/logs/$t-seed$seed.log" "$t -seed=$seed" -seed="$seed"
            rm -rf "$fresh"
        done
    else
        run_target "$t" "$SCRATCH/corpus/$t" "$SCRATCH/logs/$t.log" "$t"
    fi
done

echo "fuzz: summary"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${FAILED[*]}" >&2
    exit 1
fi
echo "fuzz: no crashes"
