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
# "◇ Test foo() started." / "✔ Test foo() passed after ..." / "✘ Test ... failed" / "➜ Test ... skipped"
TEST_STARTED = re.compile(r'^\S+ Test (?P<name>".*?"|\S+) started\.')
TEST_ENDED = re.compile(r'^\S+ Test (?P<name>".*?"|\S+) (?:with \d+ test cases? )?(?:passed|failed|skipped)')


def pass_name(path):
    name = os.path.basename(path)
    return name[:-4] if name.endswith(".log") else name


RUN_COUNTS = re.compile(r'^(?P<mark>\S+) Test run with (?P<tests>\d+) tests? in (?P<suites>\d+) suites? (?P<result>passed|failed)(?: after (?P<seconds>[\d.]+) seconds)?')
GROUP = re.compile(r'^run-tests: live suite (?P<index>\d+)/(?P<count>\d+): (?P<group>.*)$')


def read(path):
    suites, skipped, failed, runs = [], [], [], []
    groups = []  # live pass with a process per suite: [group, its summary line or None]
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            line = line.rstrip("\n")
            if m := GROUP.match(line):
                groups.append([m["group"], None])
                continue
            if m := TEST_STARTED.match(line):
                OPEN.setdefault(path, {})[m["name"]] = groups[-1][0] if groups else None
            elif m := TEST_ENDED.match(line):
                OPEN.setdefault(path, {}).pop(m["name"], None)
            if m := SUITE.match(line):
                suites.append((m["name"].strip('"'), m["result"], float(m["seconds"] or 0)))
            elif m := SUITE_SKIPPED.match(line):
                skipped.append(m["name"].strip('"'))
            elif m := TEST_FAILED.match(line):
                failed.append(m["name"].strip('"'))
            elif RUN.match(line):
                runs.append(line)
                if groups:
                    groups[-1][1] = line
    status = None
    try:
        with open(path + ".status") as f:
            status = int(f.read().strip())
    except (OSError, ValueError):
        pass
    GROUPS[path] = groups
    return suites, skipped, failed, combined_summary(runs, groups), status


def combined_summary(runs, groups):
    """swift test's summary line; for a pass of one process per suite, one line adding theirs up,
    or None when any suite process ended without its summary (it crashed)."""
    if not groups:
        return runs[-1] if runs else None
    if any(summary is None for _, summary in groups):
        return None
    tests = suites = 0
    seconds = 0.0
    ok = True
    for _, summary in groups:
        m = RUN_COUNTS.match(summary)
        if not m:
            return None
        tests += int(m["tests"])
        suites += int(m["suites"])
        seconds += float(m["seconds"] or 0)
        ok = ok and m["result"] == "passed"
    mark = "\u2714" if ok else "\u2718"
    return (f"{mark} Test run with {tests} tests in {suites} suites {'passed' if ok else 'failed'} after "
            f"{seconds:.3f} seconds ({len(groups)} processes, one per live suite).")


# Per log: the live groups and the summary line each printed.
GROUPS = {}

# Per log: tests that started and never ended (the ones running when a pass crashed).
OPEN = {}


def crash_report(path, name, status):
    """What a CI reader needs when a test process died without its summary line: the suite it ran,
    the tests that were running, and the end of its output (the crash backtrace, when
    SWIFT_BACKTRACE allowed one)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            lines = log.readlines()
    except OSError:
        return
    groups = GROUPS.get(path) or []
    crashed = [group for group, summary in groups if summary is None]
    print()
    if groups:
        print(f"{name} pass: {len(crashed)} of {len(groups)} suite processes ended without a summary (exit status {status}): "
              + ", ".join(crashed))
    else:
        print(f"{name} pass ended without a summary (exit status {status})")
    running = [f"{test} [{group}]" if group else test for test, group in OPEN.get(path, {}).items()]
    print("tests started and never ended: " + (", ".join(running) if running else "none"))
    # The end of each crashed suite's output (or of the log).
    spans = []
    if crashed:
        starts = [i for i, line in enumerate(lines) if GROUP.match(line.rstrip("\n"))]
        for position, start in enumerate(starts):
            m = GROUP.match(lines[start].rstrip("\n"))
            if m and m["group"] in crashed:
                end = starts[position + 1] if position + 1 < len(starts) else len(lines)
                spans.append((m["group"], lines[start:end]))
    else:
        spans.append((path, lines))
    for label, span in spans:
        tail = span[-80:]
        print(f"last {len(tail)} lines of {label}:")
        for line in tail:
            print("  | " + line.rstrip("\n")[:400])


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

    for path, (name, _, _, _, summary, status) in zip(paths, runs):
        if summary is None:
            crash_report(path, name, status)

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
