"""Small wrappers over processes, namespaces and /proc that every other module uses."""
from __future__ import annotations

import json
import os
import subprocess
import time

from .errors import HarnessError

CLK_TCK = os.sysconf("SC_CLK_TCK")


def run(args: list[str], check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Runs a command, captures its output, and turns a failure into a HarnessError naming it."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as e:
        raise HarnessError(f"cannot run {args[0]}: {e}") from e
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"timed out after {timeout}s: {' '.join(args)}") from e
    if check and done.returncode != 0:
        raise HarnessError(f"command failed ({done.returncode}): {' '.join(args)}\n{done.stderr.strip()}")
    return done


def in_ns(ns: str, args: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


def link_stats(ns: str) -> dict[str, dict[str, int]]:
    """Per-interface counters of one namespace: {ifname: {"rx_packets":.., "tx_packets":.., ...}}."""
    out = run(["ip", "-n", ns, "-s", "-j", "link", "show"]).stdout
    result: dict[str, dict[str, int]] = {}
    for link in json.loads(out):
        s = link.get("stats64", {})
        flat: dict[str, int] = {}
        for direction in ("rx", "tx"):
            for key, value in s.get(direction, {}).items():
                flat[f"{direction}_{key}"] = int(value)
        result[link["ifname"]] = flat
    return result


def ns_pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False).stdout
    return sorted(int(p) for p in out.split())


def process_cpu_ticks(pid: int) -> int | None:
    """utime+stime (clock ticks) of a whole thread group, or None if it has gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: fields resume after the last ')'
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def cpu_snapshot(pids: list[int]) -> dict[int, int]:
    snap = {}
    for pid in pids:
        ticks = process_cpu_ticks(pid)
        if ticks is not None:
            snap[pid] = ticks
    return snap


def cpu_seconds_between(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU consumed by the processes seen at the end (new ones count from zero)."""
    return sum(t - before.get(pid, 0) for pid, t in after.items()) / CLK_TCK


def proc_stat() -> dict[str, list[int]]:
    """/proc/stat cpu lines: {"cpu": [...], "cpu0": [...]} in clock ticks."""
    result = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu"):
                name, *values = line.split()
                result[name] = [int(v) for v in values]
    return result


SOFTIRQ = 6  # user nice system idle iowait irq softirq steal ...


def softirq_seconds_between(before: dict[str, list[int]], after: dict[str, list[int]], cpu: int | None = None) -> float:
    """Softirq time of one CPU (or all of them) in seconds."""
    key = "cpu" if cpu is None else f"cpu{cpu}"
    return (after[key][SOFTIRQ] - before[key][SOFTIRQ]) / CLK_TCK


def busy_seconds_between(before: dict[str, list[int]], after: dict[str, list[int]], cpu: int | None = None) -> float:
    """Non-idle time of all CPUs, or of one (everything but idle and iowait)."""
    key = "cpu" if cpu is None else f"cpu{cpu}"
    b, a = before[key], after[key]
    total = sum(a[:8]) - sum(b[:8])
    idle = (a[3] + a[4]) - (b[3] + b[4])
    return (total - idle) / CLK_TCK


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise HarnessError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
