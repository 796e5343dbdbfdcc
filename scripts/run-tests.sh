#!/usr/bin/env bash
# Runs the test suite in two passes (see README, "Tests"):
#
#   pure pass  every suite that is not live, in parallel (Swift Testing's default)
#   live pass  the live suites (network namespaces, daemons, real traffic), one test at a time
#              (`swift test --no-parallel`, a process per suite), after the pure pass: nothing
#              else runs beside them
#
# then prints a table of suite durations and, last, swift test's own summary line of each pass.
# Exits non-zero if either pass failed (both always run).
#
#   release    the tests that only mean something optimized (the heap-allocation test), from the
#              small package in Tests/ReleaseChecks: RelayCore and that test, built -c release
#              (in SCRATCH/release-checks); skipped with --filter and --live-only
#
#   scripts/run-tests.sh [--swift SWIFT] [--scratch PATH] [--filter REGEX] [--live-only]
#                        [--repeat N] [--logs DIR] [--no-release]
#
# --repeat N (with --live-only: `make test-repeat N=...`) runs the live pass N times and reports
# every test that failed in any run. LIVE_SUITES (environment, set by the Makefile) is the regex
# of live suites; a live test outside it fails in the pure pass (Tests/LinuxIOTests/Harness/LiveLease.swift).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
swift=swift
scratch=
filter=
live_only=0
repeat=1
logs=
release=1
while [ $# -gt 0 ]; do
    case "$1" in
        --swift) swift=$2; shift 2 ;;
        --scratch) scratch=$2; shift 2 ;;
        --filter) filter=$2; shift 2 ;;
        --live-only) live_only=1; shift ;;
        --repeat) repeat=$2; shift 2 ;;
        --logs) logs=$2; shift 2 ;;
        --no-release) release=0; shift ;;
        *) echo "run-tests: unknown argument $1" >&2; exit 2 ;;
    esac
done
: "${LIVE_SUITES:?run-tests: LIVE_SUITES is not set (the Makefile sets it)}"
case "$repeat" in ''|*[!0-9]*|0) echo "run-tests: --repeat needs a positive number, got '$repeat'" >&2; exit 2 ;; esac

scratch_flags=()
[ -n "$scratch" ] && scratch_flags=(--scratch-path "$scratch")
logs=${logs:-${scratch:-.build}/test-logs}
rm -rf "$logs"
mkdir -p "$logs"

# Swift Testing matches --filter/--skip against test ids (Target.Type/test()).
live="(LinuxIOTests|XDPTests)\\.($LIVE_SUITES)\\b"
not_live="^(?!$live)"

# pass NAME LOG ARGS...: one swift test run of the root package, its output shown and kept in LOG.
pass() {
    local name=$1 log=$2
    shift 2
    echo "run-tests: $name pass: $swift test $*"
    # A crash of the test process prints its backtrace (every thread) into the log, which the
    # report shows with the tests that were running; the daemons the tests start keep theirs off
    # (Harness/Processes.swift).
    SWIFT_BACKTRACE=enable=yes,interactive=no,color=no,threads=all \
        "$swift" test "${scratch_flags[@]}" "$@" 2>&1 | tee "$log"
    local status=${PIPESTATUS[0]}
    echo "$status" > "$log.status"
    return "$status"
}

# The release pass: build only the test product of Tests/ReleaseChecks (a plain `swift test` there
# would also build every executable of the root package), then run it. -enable-testing as
# `swift test` does by default (the test files use @testable imports).
release_pass() {
    local log=$logs/release.log
    local flags=(-c release -Xswiftc -enable-testing --package-path Tests/ReleaseChecks
                 --scratch-path "${scratch:-.build}/release-checks")
    echo "run-tests: release pass: $swift build ${flags[*]} --product mcrelay-release-checksPackageTests; $swift test ${flags[*]} --skip-build"
    {
        "$swift" build "${flags[@]}" --product mcrelay-release-checksPackageTests &&
            "$swift" test "${flags[@]}" --skip-build --no-parallel  # the malloc counter sees every thread: nothing beside it
    } 2>&1 | tee "$log"
    local status=${PIPESTATUS[0]}
    echo "$status" > "$log.status"
    return "$status"
}

failed=0
if [ "$live_only" = 0 ]; then
    args=(--skip "$live")
    [ -n "$filter" ] && args+=(--filter "$filter")
    MCRELAY_TEST_PASS=pure pass pure "$logs/pure.log" --skip-build "${args[@]}" || failed=1
fi
# The live suites, each in a test process of its own (in the order `swift test list` gives): a
# suite starts with no state left by another one in the process (threads, descriptors, heap), and
# a crash ends only the suite it happened in, which the report names (with the tests that were
# running and the backtrace). The suite filters are the parts of the test ids that $live matches.
live_groups() {
    "$swift" test "${scratch_flags[@]}" list --skip-build 2>/dev/null | LIVE_REGEX="$live" python3 -c '
import os, re, sys
live, seen = re.compile(os.environ["LIVE_REGEX"]), []
for line in sys.stdin:
    m = live.match(line.strip())
    if m and m.group(0) not in seen:
        seen.append(m.group(0))
print("\n".join(re.escape(g) + r"\b" for g in seen))'
}

# live_pass NAME LOG: every live suite in its own `swift test --no-parallel`, all into LOG; LOG.status
# is the first non-zero status (0 if none).
live_pass() {
    local name=$1 log=$2 status=0 groups=() index=0
    mapfile -t groups < <(live_groups)
    : > "$log"
    if [ "${#groups[@]}" = 0 ]; then
        echo "run-tests: $name pass: no live suite found (swift test list failed or matched nothing in $live)" | tee -a "$log"
        echo 1 > "$log.status"; return 1
    fi
    for group in "${groups[@]}"; do
        index=$((index + 1))
        echo "run-tests: live suite $index/${#groups[@]}: $group" | tee -a "$log"
        SWIFT_BACKTRACE=enable=yes,interactive=no,color=no,threads=all MCRELAY_TEST_PASS=live \
            "$swift" test "${scratch_flags[@]}" --skip-build --no-parallel --filter "$group" 2>&1 | tee -a "$log"
        local one=${PIPESTATUS[0]}
        [ "$one" != 0 ] && [ "$status" = 0 ] && status=$one
    done
    echo "$status" > "$log.status"
    return "$status"
}

for run in $(seq 1 "$repeat"); do
    name=live log="$logs/live.log"
    [ "$repeat" -gt 1 ] && name="live $run/$repeat" log="$logs/live-$run.log"
    if [ -n "$filter" ]; then
        MCRELAY_TEST_PASS=live pass "$name" "$log" --skip-build --no-parallel --filter "$filter" --skip "$not_live" || failed=1
    else
        echo "run-tests: $name pass: each live suite in its own swift test --no-parallel"
        live_pass "$name" "$log" || failed=1
    fi
done
if [ "$release" = 1 ] && [ -z "$filter" ] && [ "$live_only" = 0 ]; then
    MCRELAY_TEST_PASS=pure release_pass || failed=1
fi

python3 "$here/test-report.py" "$logs"/*.log || failed=1
exit "$failed"
