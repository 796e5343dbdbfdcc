"""Where the time goes: `perf record` on the relay's core during one trial (--perf).

Recording the core (-C), not the relay's pids, also catches the softirq work done for the relay
(ingress, egress into the next link) and, for the kernel row, the forwarding itself. Other
sessions' processes on that core show up under their own names.

It also measures the core's busy time a second way. /proc/stat's figures (the harness's "relay
core busy") come from the scheduler tick, and this kernel has tick accounting without
CONFIG_IRQ_TIME_ACCOUNTING and with NO_HZ_IDLE: softirq work done in an interrupt that woke an
idle CPU runs with the tick stopped and is counted as idle. That is most of the work of rows with
no relay process (kernel, kernel-nft), which therefore read far too cheap. perf samples with a
timer that also fires in idle (cpu-clock here: no PMU in this VM), so the share of samples outside
the idle loop is the core's busy share whatever context the work ran in (`perf_busy`).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

from .errors import HarnessError


# where an idle CPU's samples land (the halt instruction and the idle loop around it)
IDLE_SYMBOLS = {"pv_native_safe_halt", "native_safe_halt", "default_idle", "default_idle_call", "arch_cpu_idle",
                "cpuidle_idle_call", "do_idle", "acpi_idle_do_entry", "acpi_safe_halt", "intel_idle", "poll_idle",
                "mwait_idle", "mwait_idle_with_hints", "cpu_idle_poll", "cpu_startup_entry"}


def idle_share(data: Path) -> tuple[float, int] | None:
    """The share of the recording's samples in the idle loop (0...1), and the sample count."""
    out = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "sym", "--stdio", "-g", "none",
                          "--percent-limit", "0"], capture_output=True, text=True).stdout
    samples = re.search(r"# Samples: (\d+)([KM]?)", out)
    if not samples:
        return None
    count = int(samples.group(1)) * {"": 1, "K": 1000, "M": 1000000}[samples.group(2)]
    idle = 0.0
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[[k.]\]\s+(\S+)", line)
        if m and m.group(2) in IDLE_SYMBOLS:
            idle += float(m.group(1)) / 100
    return idle, count


def profile_trial(cpu: int, out_dir: Path, name: str, run_trial: Callable[[], object], log,
                  relay_pids: list[int] = (), keep: str | None = None) -> tuple[Path, dict] | None:
    """The report's path, and {"busy_s": the core's busy seconds by perf's samples, "wall_s",
    "samples", "trial": what run_trial returned}; None when perf is missing or failed."""
    if not shutil.which("perf"):
        log("  --perf: perf not installed, skipped")
        return None
    data = out_dir / f"{name}.perf.data"
    # perf's reader must keep up with its ring, or samples are lost: at an XDP row's 500k pps both
    # cores are saturated (generator and relay at nice -20) and a plain perf lost all but 0.2 s of
    # a 2 s trial (measured). So: a 16 MiB ring, real-time priority, off the recorded core.
    other = [c for c in sorted(os.sched_getaffinity(0)) if c != cpu][:1]
    pin = ["taskset", "-c", str(other[0])] if other else []
    rt = ["chrt", "-f", "1"] if shutil.which("chrt") else []
    rec = subprocess.Popen([*rt, *pin, "perf", "record", "-q", "-g", "-m", "4096", "-C", str(cpu), "-o", str(data)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    trial = None
    try:
        trial = run_trial()
    finally:
        wall = time.monotonic() - started
        rec.send_signal(2)  # SIGINT: perf writes its file and exits
        try:
            _, err = rec.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            rec.kill()
            raise HarnessError("perf record did not stop")
    if rec.returncode not in (0, -2, 130) or not data.exists():
        log(f"  --perf: perf record failed: {err.strip()[-300:]}")
        return None
    report = out_dir / f"{name}.perf.txt"
    share = idle_share(data)
    busy = {"wall_s": wall, "trial": trial}
    if share:
        busy.update(busy_s=(1 - share[0]) * wall, samples=share[1], idle_share=share[0])
    by_comm = subprocess.run(["perf", "report", "-i", str(data), "--sort", "comm", "--stdio", "-g", "none",
                              "--percent-limit", "1"],
                             capture_output=True, text=True).stdout
    by_sym = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "comm,dso,sym",
                             "--stdio", "-g", "none", "--percent-limit", "0.7"], capture_output=True, text=True).stdout
    # the relay's own processes (by pid: other sessions may run programs of the same name), with
    # callees included: where its time goes inside the process and in the kernel on its behalf
    by_caller = ""
    if relay_pids:
        by_caller = subprocess.run(["perf", "report", "-i", str(data), "--children",
                                    "--pid", ",".join(str(p) for p in relay_pids),
                                    "--sort", "sym", "--stdio", "-g", "none", "--percent-limit", "3"],
                                   capture_output=True, text=True).stdout
    busy_line = (f"# core busy by samples: {1 - share[0]:.1%} of {share[1]} samples over {wall:.2f} s "
                 "(outside the idle loop; softirq from idle included)\n" if share else "")
    report.write_text(busy_line + "# by command\n" + strip(by_comm) + "\n# by symbol (self time)\n" + strip(by_sym)
                      + (f"\n# relay processes {relay_pids[:8]} only, including callees (children)\n"
                         + strip(by_caller) if relay_pids else ""))
    if keep:
        shutil.move(str(data), str(Path(keep) / data.name))
    else:
        data.unlink(missing_ok=True)
    return report, busy


def strip(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.strip() and not line.startswith("#")) + "\n"
