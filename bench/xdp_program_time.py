#!/usr/bin/env python3
"""The XDP programs' own run time per frame, by the kernel's BPF statistics (issue #14).

    sudo python3 bench/xdp_program_time.py --mcrelay .build/release/mcrelay \
        --object new=.build/bpf/mcrelay_xdp.o [--object old=/tmp/old.o] [--payload 1316] [--count 200000] [--rate 40000]

For each object, twice (IPv4 frames with a valid UDP checksum, then with checksum 0): the bench
harness's own lab with two output links and its mcrelay-xdp driver (GRO on the receivers' veth
ends, rin0 threaded NAPI: bench/README.md), one stream of `--payload`-byte datagrams from mcgen
at `--rate` pps, and each loaded `mcrelay_xdp_*` program's run count and run time read by bpf(2)
(BPF_PROG_GET_NEXT_ID, BPF_OBJ_GET_INFO_BY_FD) before and after. Prints one JSON line per run.

Changes one host setting while it sends: `kernel.bpf_stats_enabled=1` (the kernel counts program
run time only then; it costs a clock read per run, included in the figures), set back to its old
value afterwards, also on failure. The figures are the programs' own time: not the redirect, the
devmap clones, the veth transmit or the receive around them (see BENCHMARKS.md for those).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.e2e.bpfmaps import _bpf  # noqa: E402
from bench.e2e.counter import build_tool  # noqa: E402
from bench.e2e.drivers import McrelayXDPDriver  # noqa: E402
from bench.e2e.generator import Generator  # noqa: E402
from bench.e2e.lab import SND_ADDR, Lab  # noqa: E402
from bench.e2e.streams import streams as make_streams  # noqa: E402
from bench.e2e.system import run  # noqa: E402

BPF_PROG_GET_NEXT_ID, BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD = 11, 13, 15
INFO_BYTES = 232  # struct bpf_prog_info up to verified_insns; name at 64, run_time_ns and run_cnt at 192


def programs() -> dict[int, tuple[str, int, int]]:
    """Every loaded program whose name starts with mcrelay_xdp: id -> (name, runs, run time ns)."""
    found, prog_id = {}, 0
    while True:
        attr = ctypes.create_string_buffer(struct.pack("=III", prog_id, 0, 0), 16)
        try:
            _bpf(BPF_PROG_GET_NEXT_ID, attr)
        except OSError:
            return found
        prog_id = struct.unpack_from("=I", attr.raw, 4)[0]
        try:
            fd = _bpf(BPF_PROG_GET_FD_BY_ID, ctypes.create_string_buffer(struct.pack("=III", prog_id, 0, 0), 16))
        except OSError:
            continue  # unloaded meanwhile
        info = ctypes.create_string_buffer(INFO_BYTES)
        try:
            _bpf(BPF_OBJ_GET_INFO_BY_FD, ctypes.create_string_buffer(struct.pack("=IIQ", fd, INFO_BYTES, ctypes.addressof(info)), 16))
        finally:
            os.close(fd)
        name = info.raw[64:80].split(b"\0")[0].decode()
        run_time, runs = struct.unpack_from("=QQ", info.raw, 192)
        if name.startswith("mcrelay_xdp"):
            found[prog_id] = (name, runs, run_time)


def measure(args, label: str, obj: Path, checksum: bool) -> dict:
    lab = Lab(f"mcpt{os.getpid() % 10000}", outputs=2)
    work = Path(tempfile.mkdtemp(prefix="mcpt."))
    stats_before = run(["sysctl", "-n", "kernel.bpf_stats_enabled"]).stdout.strip()
    try:
        lab.up()
        mcgen = build_tool(work, "mcgen")
        driver = McrelayXDPDriver(lab, work, 1, args.mcrelay, 1, "mcrelay-xdp", obj, 0)
        ss = make_streams(1)
        driver.start(ss)
        try:
            gen = Generator(lab, work, 0, "mcgen", mcgen, 16, udp_checksum=checksum)
            load = gen.load("load", ss, args.payload, lab.mac(lab.snd, "snd0"), SND_ADDR)
            run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"])
            before = programs()
            burst = gen.send(load, args.count, args.rate, deadline=30, drop_refused=True)
            after = programs()
        finally:
            run(["sysctl", "-qw", f"kernel.bpf_stats_enabled={stats_before}"])
            driver.stop()
    finally:
        lab.down()
    rows = []
    for prog, (name, runs, time_ns) in sorted(after.items()):
        _, runs0, time0 = before.get(prog, (name, 0, 0))
        if runs > runs0:
            rows.append({"program": name, "runs": runs - runs0, "ns_per_run": round((time_ns - time0) / (runs - runs0), 1)})
    return {"object": label, "udp_checksum": checksum, "payload": args.payload, "sent": burst.sent,
            "refused": burst.refused, "programs": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mcrelay", type=Path, required=True)
    p.add_argument("--object", action="append", required=True, help="LABEL=PATH of an XDP object (repeatable)")
    p.add_argument("--payload", type=int, default=1316)
    p.add_argument("--count", type=int, default=200_000)
    p.add_argument("--rate", type=float, default=40_000)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("xdp_program_time: needs root (namespaces, BPF)", file=sys.stderr)
        return 2
    for spec in args.object:
        label, _, path = spec.partition("=")
        if not path or not Path(path).exists():
            print(f"xdp_program_time: --object {spec!r}: want LABEL=PATH of an existing file", file=sys.stderr)
            return 2
        for checksum in (True, False):
            print(json.dumps(measure(args, label, Path(path).resolve(), checksum)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
