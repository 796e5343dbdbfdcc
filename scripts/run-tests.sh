#!/usr/bin/env bash
# Runs the test suite in two passes (see README, "Tests"):
#
#   pure pass  every suite that is not live, in parallel (Swift Testing's default)
#   live pass  the live suites (network namespaces, daemons, real traffic), one test at a time
#              (`swift test --no-parallel`), after the pure pass: nothing else runs beside them
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
for run in $(seq 1 "$repeat"); do
    if [ -n "$filter" ]; then args=(--filter "$filter" --skip "$not_live"); else args=(--filter "$live"); fi
    name=live log="$logs/live.log"
    [ "$repeat" -gt 1 ] && name="live $run/$repeat" log="$logs/live-$run.log"
    MCRELAY_TEST_PASS=live pass "$name" "$log" --skip-build --no-parallel "${args[@]}" || failed=1
done
if [ "$release" = 1 ] && [ -z "$filter" ] && [ "$live_only" = 0 ]; then
    MCRELAY_TEST_PASS=pure release_pass || failed=1
fi

python3 "$here/test-report.py" "$logs"/*.log || failed=1
exit "$failed"
