"""Where the time goes: `perf record` on the relay's core during one trial (--perf).

Recording the core (-C), not the relay's pids, also catches the softirq work done for the relay
(ingress, egress into the next link) and, for the kernel row, the forwarding itself. Other
sessions' processes on that core show up under their own names.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from .errors import HarnessError


def profile_trial(cpu: int, out_dir: Path, name: str, run_trial: Callable[[], object], log,
                  relay_pids: list[int] = (), keep: str | None = None) -> Path | None:
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
    try:
        run_trial()
    finally:
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
    report.write_text("# by command\n" + strip(by_comm) + "\n# by symbol (self time)\n" + strip(by_sym)
                      + (f"\n# relay processes {relay_pids[:8]} only, including callees (children)\n"
                         + strip(by_caller) if relay_pids else ""))
    if keep:
        shutil.move(str(data), str(Path(keep) / data.name))
    else:
        data.unlink(missing_ok=True)
    return report


def strip(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.strip() and not line.startswith("#")) + "\n"
