#!/usr/bin/env python3
"""Summarises the logs of scripts/run-tests.sh: a table of suite durations, the tests that failed
(per run, when the live pass was repeated), then swift test's own summary line of each pass, last.

    test-report.py LOG...      (pure.log, live.log or live-1.log ... live-N.log; LOG.status beside each)

Reads Swift Testing's console lines:
    ✔ Suite "Relay end to end (root, network namespaces)" passed after 412.3 seconds.
    ✘ Test "one stream, default TTL 64" failed after 3.1 seconds with 1 issue.
    ✔ Test run with 128 tests in 40 suites passed after 80.2 seconds.
"""

import os
import re
import sys

SUITE = re.compile(r'^\S+ Suite (?P<name>".*?"|\S+) (?P<result>passed|failed)(?: after (?P<seconds>[\d.]+) seconds)?')
SUITE_SKIPPED = re.compile(r'^\S+ Suite (?P<name>".*?"|\S+) skipped')
TEST_FAILED = re.compile(r'^\S+ Test (?P<name>".*?"|\S+) (?:with \d+ test cases? )?failed after')
RUN = re.compile(r'^\S+ Test run with \d+ tests?')


def pass_name(path):
    name = os.path.basename(path)
    return name[:-4] if name.endswith(".log") else name


def read(path):
    suites, skipped, failed, summary = [], [], [], None
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            line = line.rstrip("\n")
            if m := SUITE.match(line):
                suites.append((m["name"].strip('"'), m["result"], float(m["seconds"] or 0)))
            elif m := SUITE_SKIPPED.match(line):
                skipped.append(m["name"].strip('"'))
            elif m := TEST_FAILED.match(line):
                failed.append(m["name"].strip('"'))
            elif RUN.match(line):
                summary = line
    status = None
    try:
        with open(path + ".status") as f:
            status = int(f.read().strip())
    except (OSError, ValueError):
        pass
    return suites, skipped, failed, summary, status


def main(paths):
    runs = [(pass_name(p), *read(p)) for p in paths]
    print()
    print("Suite durations (pure pass: suites in parallel, so they overlap; live pass: one test at a time)")
    print(f"{'pass':<8} {'seconds':>8}  {'result':<7} suite")
    rows = [(name, seconds, result, suite) for name, suites, *_ in runs for suite, result, seconds in suites]
    for name, seconds, result, suite in sorted(rows, key=lambda r: (r[0], -r[1])):
        print(f"{name:<8} {seconds:>8.1f}  {result:<7} {suite}")
    for name, _, skipped, *_ in runs:
        for suite in skipped:
            print(f"{name:<8} {'':>8}  {'skipped':<7} {suite}")

    live_runs = [r for r in runs if r[0].startswith("live-")]
    if live_runs:
        print()
        counts = {}
        for name, _, _, failed, _, _ in live_runs:
            for test in set(failed):
                counts.setdefault(test, []).append(name)
        if counts:
            print(f"Tests that failed in any of {len(live_runs)} live runs:")
            for test, names in sorted(counts.items()):
                print(f"  {test}: failed in {len(names)} of {len(live_runs)} ({', '.join(names)})")
        else:
            print(f"No test failed in {len(live_runs)} live runs.")
    else:
        failures = [(name, test) for name, _, _, failed, _, _ in runs for test in failed]
        if failures:
            print()
            print("Failed tests:")
            for name, test in failures:
                print(f"  [{name}] {test}")

    # Last: swift test's own summary line of each pass (CI reads these).
    print()
    print("swift test's summary of each pass (" + ", ".join(r[0] for r in runs) + "):")
    ok = True
    for name, _, _, _, summary, status in runs:
        if summary is None:
            print(f"{name} pass: swift test printed no summary line (exit status {status}): it crashed or did not build")
            ok = False
        else:
            print(summary)
        if status not in (0, None):
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
