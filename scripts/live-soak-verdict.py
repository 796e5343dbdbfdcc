#!/usr/bin/env python3
"""The table and verdict of a live soak (scripts/live-soak.sh): reads DIR/samples.csv,
DIR/events.log, DIR/run.txt and DIR/harness-errors.log; prints min/first/last/max per metric
and PASS or FAIL with the reasons. Exit 0 pass, 1 fail, 3 the run's own tooling failed.

Thresholds, and why:
- RSS (supervisor, and the workers' sum): the mean of the last third of the samples may exceed
  the mean of the first third by at most 10%. The daemon's working set is fixed once it has
  seen the churn cycle (the same 4 + 4 + 24 rules come and go), so a steady state is flat;
  allocator noise here is a few percent, and 10% in ten minutes would be ~doubling in two hours.
  A restarted worker starts small, so a kill can only lower the workers' sum, never mask growth
  in the supervisor.
- fds, per process: the largest count in the last third may exceed the largest in the first
  third by at most 2. The first third already holds every churn state (block on/off, all churn
  rules), so its peak is the steady peak; 2 covers a helper socket caught mid-reopen.
  Any process above 256 fds fails outright.
- Steady streams: zero loss and zero duplicates in every chunk that no disturbance overlaps
  (a flap of rin0/rout0, which carry them, or a worker kill, each plus 3 s of grace for
  restart and rejoin). rout1 flaps and all rule churn are NOT disturbances: the steady rules
  must not notice them. Duplicates fail in any chunk.
  One exception, only with evidence: the host's kernel dropped the frames, not the relay. On
  this shared 2-CPU machine other people's benchmarks overflow the per-CPU receive backlog
  (softnet drops of millions per chunk, all namespaces). A lossy chunk is put on the host when
  the relay's own count for the steady rules shows it handed every frame it received to the
  kernel, and the frames it did not receive plus the ones that did not arrive are covered by
  the drop counters of the lab's links (rin0, rout0 -> rcv0: veth backlog drops; the outputs
  segment GSO, so they count datagrams) in that chunk. Such
  chunks are listed as HOST LOSS and do not fail the run; anything else does.
- The daemon must be alive at the end and exit 0 on SIGTERM; every control command must succeed.
"""
import csv
import sys
from pathlib import Path

GRACE_MS = 3000
SETTLE_MS = 500
RSS_GROWTH = 0.10
FD_SLACK = 2
FD_MAX = 256


def load(directory: Path):
    rows = list(csv.DictReader(open(directory / "samples.csv")))
    events = []
    for line in open(directory / "events.log"):
        parts = line.split()
        if len(parts) >= 2:
            events.append((int(parts[0]), parts[1], parts[2:]))
    run = {}
    if (directory / "run.txt").exists():
        for line in open(directory / "run.txt"):
            for field in line.split():
                if "=" in field:
                    key, value = field.split("=", 1)
                    run[key] = value
    errors = (directory / "harness-errors.log").read_text().strip() if (directory / "harness-errors.log").exists() else ""
    return rows, events, run, errors


def disturbances(events):
    windows, open_flaps = [], {}
    for t, kind, args in events:
        if kind == "flap_start" and args and args[0] in ("rin0", "rout0"):
            open_flaps[args[0]] = t
        elif kind == "flap_end" and args and args[0] in open_flaps:
            windows.append((open_flaps.pop(args[0]), t + GRACE_MS, f"flap {args[0]}"))
        elif kind == "kill_worker":
            windows.append((t, t + GRACE_MS, f"kill -9 worker {args[0] if args else '?'}"))
    for iface, t in open_flaps.items():
        windows.append((t, 1 << 62, f"flap {iface} (never ended)"))
    return windows


def number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def main() -> int:
    directory = Path(sys.argv[1])
    rows, events, run, harness_errors = load(directory)
    reasons = []
    if not rows:
        print("no samples: the run did not get as far as one chunk")
        return 3

    windows = disturbances(events)
    disturbed = []
    for row in rows:
        start, end = int(row["chunk_start_ms"]), int(row["chunk_end_ms"]) + SETTLE_MS
        hit = [w[2] for w in windows if w[0] <= end and w[1] >= start]
        disturbed.append(hit)

    metrics = ["sup_rss_kb", "workers_rss_kb", "w0_rss_kb", "w1_rss_kb", "sup_fds", "w0_fds", "w1_fds",
               "igmp_groups", "helper_sockets", "joined", "outstanding", "rules", "stats_packets",
               "stats_send_errors", "stats_drops", "ingress_queue_drops", "plan_version", "chunk_sent",
               "steady_lost", "steady_dup", "steady_relay_packets", "rin0_rx_dropped", "rcv0_rx_dropped", "rout0_tx_dropped",
               "softnet_dropped", "load1"]
    print(f"{'metric':<22}{'min':>12}{'first':>12}{'last':>12}{'max':>12}")
    for name in metrics:
        values = [number(r.get(name)) for r in rows]
        values = [v for v in values if v is not None]
        if not values:
            print(f"{name:<22}{'-':>12}{'-':>12}{'-':>12}{'-':>12}")
            continue
        fmt = (lambda v: f"{v:.2f}") if name == "load1" else (lambda v: f"{v:.0f}")
        print(f"{name:<22}{fmt(min(values)):>12}{fmt(values[0]):>12}{fmt(values[-1]):>12}{fmt(max(values)):>12}")

    # RSS growth between the first and the last third.
    third = max(1, len(rows) // 3)
    if len(rows) < 3:
        reasons.append(f"only {len(rows)} samples: too few to judge growth (run longer)")
    for name in ("sup_rss_kb", "workers_rss_kb"):
        first = [number(r[name]) for r in rows[:third] if number(r[name])]
        last = [number(r[name]) for r in rows[-third:] if number(r[name])]
        if first and last:
            a, b = sum(first) / len(first), sum(last) / len(last)
            growth = (b - a) / a
            print(f"{name}: first third mean {a:.0f} kB, last third mean {b:.0f} kB, growth {growth * 100:+.1f}% (bound +{RSS_GROWTH * 100:.0f}%)")
            if growth > RSS_GROWTH:
                reasons.append(f"{name} grew {growth * 100:.1f}% between the first and last third (bound {RSS_GROWTH * 100:.0f}%)")
    for name in ("sup_fds", "w0_fds", "w1_fds"):
        first = [number(r[name]) for r in rows[:third] if number(r[name]) is not None]
        last = [number(r[name]) for r in rows[-third:] if number(r[name]) is not None]
        every = [number(r[name]) for r in rows if number(r[name]) is not None]
        if first and last:
            print(f"{name}: first third max {max(first):.0f}, last third max {max(last):.0f} (bound +{FD_SLACK})")
            if max(last) > max(first) + FD_SLACK:
                reasons.append(f"{name} grew from {max(first):.0f} to {max(last):.0f} (bound +{FD_SLACK})")
        if every and max(every) > FD_MAX:
            reasons.append(f"{name} reached {max(every):.0f} (> {FD_MAX})")

    # Steady streams.
    clean = [(r, d) for r, d in zip(rows, disturbed) if not d]
    lost_clean = sum(int(r["steady_lost"]) for r, _ in clean)
    sent_clean = sum(int(r["steady_expected"]) for r, _ in clean)
    lost_all = sum(int(r["steady_lost"]) for r in rows)
    sent_all = sum(int(r["steady_expected"]) for r in rows)
    dup_all = sum(int(r["steady_dup"]) for r in rows)
    print(f"steady streams: {len(clean)} undisturbed chunks, {sent_clean} sent, {lost_clean} lost; "
          f"{len(rows) - len(clean)} disturbed chunks; all chunks {sent_all} sent, {lost_all} lost, {dup_all} duplicated")
    def deltas(index):
        """For a lossy chunk: what the relay counted for the steady rules and what the links and
        the kernel's backlog dropped meanwhile (from the sample before; None in old runs)."""
        if index == 0 or "steady_relay_packets" not in rows[index]:
            return None
        before, row = rows[index - 1], rows[index]
        try:
            return {name: int(row[name]) - int(before[name])
                    for name in ("steady_relay_packets", "rin0_rx_dropped", "rcv0_rx_dropped", "rout0_tx_dropped", "softnet_dropped")}
        except (KeyError, ValueError):
            return None
    host_lost = 0
    for index, (row, hit) in enumerate(zip(rows, disturbed)):
        lost, expected = int(row["steady_lost"]), int(row["steady_expected"])
        if hit:
            print(f"  disturbed chunk at t={row['t_s']}s ({', '.join(sorted(set(hit)))}): lost {lost} of {expected}")
            continue
        if lost == 0:
            continue
        d = deltas(index)
        detail = "" if d is None else (f" [relay accepted {d['steady_relay_packets']}, rin0_rx_dropped +{d['rin0_rx_dropped']}, "
                                       f"rcv0_rx_dropped +{d['rcv0_rx_dropped']}, rout0_tx_dropped +{d['rout0_tx_dropped']}, softnet_dropped +{d['softnet_dropped']} (all CPUs, every namespace)]")
        if d is not None and 0 <= d["steady_relay_packets"] <= expected:
            not_seen = expected - d["steady_relay_packets"]  # never reached the relay's socket
            not_arrived = lost - not_seen                    # handed to the kernel, not received
            if not_arrived >= 0 and not_seen <= d["rin0_rx_dropped"] and not_arrived <= d["rcv0_rx_dropped"] + d["rout0_tx_dropped"]:
                host_lost += lost
                print(f"  HOST LOSS chunk at t={row['t_s']}s lost {lost} of {expected}: the relay sent every frame it saw; "
                      f"{not_seen} never reached it, {not_arrived} did not arrive, all within the links' drop counters{detail}")
                continue
        print(f"  UNDISTURBED chunk at t={row['t_s']}s lost {lost} of {expected}{detail}")
        reasons.append(f"steady streams lost {lost} of {expected} in the undisturbed chunk starting t={row['t_s']}s")
    if host_lost:
        print(f"steady streams: {host_lost} frames lost to the host's kernel (link backlog drops) in undisturbed chunks; not counted against the relay")
    if dup_all:
        reasons.append(f"steady streams received {dup_all} duplicates")
    if not clean:
        reasons.append("no undisturbed chunk to judge loss on")

    kinds = {}
    for _, kind, _ in events:
        kinds[kind] = kinds.get(kind, 0) + 1
    print("events: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    for t, kind, args in events:
        if kind in ("op_failed", "stats_failed", "daemon_died"):
            print(f"  {kind} at {t / 1000:.1f}s: {' '.join(args)[:200]}")
    if kinds.get("kill_worker", 0) == 0:
        reasons.append("no worker was killed (the run was too short for the schedule)")
    if run.get("churn_failures") != "0":
        reasons.append(f"control commands failed: {run.get('churn_failures', 'unknown')}")
    if kinds.get("stats_failed", 0) > 2:
        reasons.append(f"`mcrelay stats` failed {kinds['stats_failed']} times")
    if kinds.get("daemon_died"):
        reasons.append("the daemon died")
    if run.get("daemon_alive_at_end") != "1" or run.get("daemon_exit") != "0":
        reasons.append(f"daemon alive at end {run.get('daemon_alive_at_end')}, exit status {run.get('daemon_exit')} (want 1, 0)")
    loads = [number(r["load1"]) for r in rows if number(r["load1"]) is not None]
    if loads:
        print(f"load average (1 min) during the run: min {min(loads):.2f}, mean {sum(loads) / len(loads):.2f}, max {max(loads):.2f} on {run.get('cpus', '?')} CPUs")
    if harness_errors:
        print("HARNESS ERRORS (the run's own tooling failed; nothing above can be trusted):")
        print(harness_errors)
        print("verdict: HARNESS FAILURE")
        return 3
    if reasons:
        print("verdict: FAIL")
        for reason in reasons:
            print(f"  - {reason}")
        return 1
    print("verdict: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
