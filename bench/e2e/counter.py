"""Receiver-side counting: bench/mccount.c (per-group counts off an AF_PACKET ring) + link counters.

The counter is compiled on first use into the work folder. It is trusted only after
`self_test()`: frames injected straight onto the receiving link in known numbers must be
counted exactly, per group, at a low and a high rate.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import HarnessError
from .lab import Lab
from .system import run

SOURCE = Path(__file__).resolve().parent.parent / "mccount.c"


def build_tool(workdir: Path, name: str) -> Path:
    """Compiles bench/NAME.c (mccount, mcgen) into the work folder."""
    binary = workdir / name
    run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(SOURCE.parent / f"{name}.c")])
    return binary


@dataclass
class Snapshot:
    ring_packets: int
    ring_drops: int
    udp: int
    other: int
    icmp6: int                                # of `other`: ICMPv6 (a host's own IPv6 control traffic)
    table_full: int
    groups: dict[tuple[str, int], int]        # frames (a GSO super-frame counts once)
    frame_len: dict[tuple[str, int], int]     # last frame length seen
    payload: dict[tuple[str, int], int]       # UDP payload bytes


class Counter:
    def __init__(self, lab: Lab, binary: Path, dev: str = "rcv0", cpu: int | None = None):
        self.lab = lab
        self.proc = lab.spawn(lab.rcv, [str(binary), dev], cpu=cpu, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise HarnessError(f"mccount did not start on {lab.rcv}/{dev} (said {line!r})")

    def snap(self) -> Snapshot:
        if self.proc.poll() is not None:
            raise HarnessError(f"mccount exited ({self.proc.returncode})")
        self.proc.stdin.write("snap\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise HarnessError(f"mccount answered {line!r}") from e
        groups = {(g, port): n for g, port, n, _, _ in d["groups"]}
        lens = {(g, port): length for g, port, _, length, _ in d["groups"]}
        payload = {(g, port): b for g, port, _, _, b in d["groups"]}
        return Snapshot(d["ring_packets"], d["ring_drops"], d["udp"], d["other"], d["icmp6"], d["table_full"], groups, lens,
                        payload)

    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.lab.forget(self.proc)


def delta(before: Snapshot, after: Snapshot) -> dict[tuple[str, int], int]:
    """Frames per (group, port) between two snapshots."""
    keys = set(after.groups) | set(before.groups)
    return {k: after.groups.get(k, 0) - before.groups.get(k, 0) for k in keys if after.groups.get(k, 0) != before.groups.get(k, 0)}


def payload_delta(before: Snapshot, after: Snapshot) -> dict[tuple[str, int], int]:
    """UDP payload bytes per (group, port) between two snapshots."""
    keys = set(after.payload) | set(before.payload)
    return {k: after.payload.get(k, 0) - before.payload.get(k, 0) for k in keys
            if after.payload.get(k, 0) != before.payload.get(k, 0)}
