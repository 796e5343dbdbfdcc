"""scripts/bench-e2e.sh entry: lab up, counter self-test, then every relay × streams × payload.

Exit status: 0 done; 1 (--smoke) a relay carried nothing end to end; 2 usage; 3 the harness
itself failed (lab, generator or counter could not be trusted) — results are then not written.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from .counter import Counter, build_tool, delta
from .curve import curve_rates, run_curve
from .drivers import AfxdpDriver, KernelDriver, McrelayDriver, McrelayXDPDriver, NoRelay, RelayDriver, SocatDriver
from .errors import HarnessError, NotCarried
from .nftables import KernelNftDriver
from .tpacket import MODES as TPACKET_MODES, TpacketDriver
from .generator import Generator
from .lab import Lab, addresses
from .report import markdown_block, print_report, update_markdown
from .profile import profile_trial
from .search import zero_loss_search
from .streams import FAMILIES
from .streams import streams as make_streams
from .system import run
from .trial import TrialRunner

REPO = Path(__file__).resolve().parents[2]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench-e2e.sh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="a few seconds: one low-rate trial per relay; checks the harness, never speed")
    p.add_argument("--relays", default="socat,kernel,mcrelay",
                   help="comma list of socat, kernel, mcrelay (defaults), mcrelay-udp (--egress udp), mcrelay-udp-on "
                        "(--egress udp --segmentation on: GSO super-frames cross the veth), mcrelay-softirq (--input-napi kernel: the "
                        "input's receive work left in softirq), mcrelay-napi (the defaults, the lab's snd0 without TSO so "
                        "that rin0 receives through its NAPI as a NIC does), mcrelay-udp-nic (--egress udp "
                        "with rout0 emulating a NIC without USO), mcrelay-xdp (--data-path xdp, native: rin0 threaded "
                        "NAPI pinned to the relay's CPU, GRO on on the receiver's veth end), mcrelay-xdp-generic "
                        "(--data-path xdp --xdp-mode generic, no setting changed), afxdp-c (the AF_XDP relay experiment in C, "
                        "bench/experiments/afxdp: native XDP on rin0 into an AF_XDP socket, rin0 threaded NAPI pinned "
                        "to the relay's CPU; IPv4 only), packet-c, tpacket-c and tpacket-rx-c (the AF_PACKET relay experiment in C, "
                        "bench/experiments/tpacket: recvmmsg/sendmmsg, TPACKET_V3 receive and TPACKET_V2 transmit "
                        "rings, or the receive ring with sendmmsg; rin0's receive set as mcrelay's packet path sets it; IPv4 only), kernel-nft (the kernel forwarding with nftables at rin0's ingress: "
                        "the kernel's reference where it has no multicast routing, bench/README.md)")
    p.add_argument("--xdp-object", default=os.environ.get("MCRELAY_XDP_OBJECT") or str(REPO / ".build/bpf/mcrelay_xdp.o"),
                   help="the BPF object of the mcrelay-xdp rows (default $MCRELAY_XDP_OBJECT, else .build/bpf/mcrelay_xdp.o)")
    p.add_argument("--afxdp-relay", default=str(REPO / ".build/afxdp/afxdp_relay"),
                   help="the afxdp-c row's binary (bench/experiments/afxdp/build.sh; its XDP object "
                        "afxdp_redirect.bpf.o beside it; default .build/afxdp/afxdp_relay)")
    p.add_argument("--tpacket-relay", default=str(REPO / ".build/tpacket/tpacket_relay"),
                   help="the packet-c and tpacket-c rows' binary (bench/experiments/tpacket/build.sh; "
                        "default .build/tpacket/tpacket_relay)")
    p.add_argument("--fanout", type=int, default=0,
                   help="also run one input stream fanned out to this many output links (own lab, IPv4; 0: off)")
    p.add_argument("--fanout-relays", default="kernel,mcrelay,mcrelay-xdp",
                   help="relays of the fan-out case (default kernel,mcrelay,mcrelay-xdp; socat cannot send one "
                        "stream to several links without one process per output)")
    p.add_argument("--fanout-payloads", default="64,1316", help="payloads of the fan-out case (default 64,1316)")
    p.add_argument("--curve", action="store_true",
                   help="delivered-versus-offered curves: one trial per rate of --curve-rates per relay (IPv4 lab)")
    p.add_argument("--curve-rates", default="50000,100000,200000,300000,400000,600000,800000,max",
                   help="offered rates of the curve, pps; `max`: the generator unpaced (its ceiling)")
    p.add_argument("--curve-relays", default=None, help="relays of the curves (default: --relays)")
    p.add_argument("--curve-streams", type=int, default=1, help="streams of the curves (default 1)")
    p.add_argument("--curve-payload", type=int, default=64, help="payload of the curves (default 64)")
    p.add_argument("--curve-fanout", action="store_true",
                   help="with --curve and --fanout: the curves also in the fan-out lab (one input, every copy counted), "
                        "where the relays' work per offered datagram is several times larger, so the generator can overload them")
    p.add_argument("--streams", default=None, help="comma list of stream counts (default 1,100; smoke: 3)")
    p.add_argument("--payloads", default="64,1316", help="comma list of UDP payload sizes (bytes)")
    p.add_argument("--family", default="ipv4",
                   help="comma list of address families, ipv4 and/or ipv6 (default ipv4): every relay × streams × "
                        "payload runs once per family, each family in its own lab (bench/README.md)")
    p.add_argument("--trial-seconds", type=float, default=2.0, help="length of one trial (default 2)")
    p.add_argument("--settle", type=float, default=0.4, help="wait after a burst before counting (s)")
    p.add_argument("--min-rate", type=float, default=2000, help="search floor, pps (default 2000)")
    p.add_argument("--max-rate", type=float, default=500000, help="first trial / ceiling, pps (default 500000)")
    p.add_argument("--precision", type=float, default=1.05, help="stop when hi/lo <= this (default 1.05)")
    p.add_argument("--max-trials", type=int, default=16, help="per relay and configuration (default 16)")
    p.add_argument("--budget", type=float, default=150, help="seconds per relay and configuration (default 150)")
    p.add_argument("--generator", choices=["mcgen", "trafgen"], default="mcgen",
                   help="mcgen (paced, default) or trafgen (unpaced: every trial at its ceiling)")
    p.add_argument("--udp-checksum", action="store_true",
                   help="IPv4 frames carry a valid UDP checksum, as the kernel's UDP sockets send (default 0, which "
                        "IPv4 allows; IPv6 frames always carry one)")
    p.add_argument("--burst", type=int, default=16,
                   help="mcgen sends paced bursts of this many frames (1...64, default 16), like a NIC's "
                        "interrupt coalescing; 1 paces frame by frame")
    p.add_argument("--nice", type=int, default=-20,
                   help="nice level of generator, counter and relay processes (default -20: the machine is shared)")
    p.add_argument("--gen-cpu", type=int, default=0,
                   help="CPU of the generator and the receiver counter (default 0)")
    p.add_argument("--relay-cpu", type=int, default=1,
                   help="CPU of the relay's processes and of rin0's receive softirq (RPS), so every relay, "
                        "the kernel included, gets this one core (default 1; -1: no pinning, no steering)")
    p.add_argument("--mcrelay", default=str(REPO / ".build/release/mcrelay"), help="mcrelay binary")
    p.add_argument("--mcrelay-workers", type=int, default=None, help="--workers for the mcrelay daemon (default 1 with --relay-cpu, else the daemon's default)")
    p.add_argument("--mcrelay-input-napi-nice", type=int, default=None,
                   help="--input-napi-nice for the mcrelay daemon's packet-path rows (default: the daemon's, 19)")
    p.add_argument("--json", default=None, help="write every trial here (default: bench/results/e2e-latest.json; smoke: none)")
    p.add_argument("--markdown", default=None, help="update this file's generated block (default: BENCHMARKS.md in full mode)")
    p.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    p.add_argument("--steer-receiver", action="store_true",
                   help="RPS rcv0's receive softirq to --gen-cpu. Off by default: on this VM the inter-processor "
                        "interrupt it costs per transmit (~16%% of the relay core for packet-at-a-time senders, "
                        "measured) is dearer than the receiving itself, and it penalises relays that send one "
                        "datagram per syscall while the kernel's softirq batches its IPIs")
    p.add_argument("--perf", action="store_true",
                   help="after each search, one more trial at the zero-loss rate under `perf record` on the relay's "
                        "core; reports in bench/results/perf-*.txt")
    p.add_argument("--cost-rate", type=float, default=100000,
                   help="with --perf: one more profiled trial per row at this offered rate (pps; default 100000, "
                        "0: none), the same for every relay, so that their CPU per datagram is compared at equal "
                        "load (a relay's cost per datagram at its own zero-loss rate depends on that rate: wake-ups "
                        "and batches are shared by fewer datagrams at a lower one)")
    p.add_argument("--fanout-cost-rate", type=float, default=15000,
                   help="--cost-rate of the fan-out rows, input datagrams per second (default 15000: 120,000 "
                        "copies/s to 8 outputs; 0: none)")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="measure nothing: print the tables of a results file and update --markdown (default "
                        "BENCHMARKS.md) from it (after a change to the report)")
    p.add_argument("--prefix", default=f"mcb{os.getpid() % 100000}", help="lab namespace prefix")
    a = p.parse_args(argv)
    a.relay_list = [r for r in a.relays.split(",") if r]
    a.fanout_relay_list = [r for r in a.fanout_relays.split(",") if r]
    a.curve_relay_list = [r for r in (a.curve_relays or a.relays).split(",") if r]
    for flag, names in (("--relays", a.relay_list), ("--fanout-relays", a.fanout_relay_list),
                        ("--curve-relays", a.curve_relay_list)):
        for r in names:
            if r not in RELAYS:
                p.error(f"{flag}: unknown relay {r!r} ({', '.join(RELAYS)})")
    if "socat" in a.fanout_relay_list:
        p.error("--fanout-relays: socat is not measured fanned out (one process per stream and output)")
    if a.fanout and not 2 <= a.fanout <= 16:
        p.error("--fanout must be 2...16 output links (0: off)")
    try:
        a.curve_rate_list = curve_rates(a.curve_rates)
        a.fanout_payload_list = [int(x) for x in a.fanout_payloads.split(",") if x]
    except ValueError as e:
        p.error(f"--curve-rates/--fanout-payloads: {e}")
    a.family_list = [f for f in a.family.split(",") if f]
    for f in a.family_list:
        if f not in FAMILIES:
            p.error(f"--family: unknown family {f!r} (ipv4, ipv6)")
    if not a.family_list or len(set(a.family_list)) != len(a.family_list):
        p.error("--family: one or both of ipv4, ipv6, each once")
    if a.generator == "trafgen" and "ipv6" in a.family_list:
        p.error("--generator trafgen builds IPv4 frames only; IPv6 needs mcgen")
    try:
        a.stream_list = [int(x) for x in (a.streams or ("3" if a.smoke else "1,100")).split(",") if x]
        a.payload_list = [int(x) for x in a.payloads.split(",") if x]
    except ValueError as e:
        p.error(f"--streams/--payloads: {e}")
    if not 1 <= a.burst <= 64:
        p.error("--burst must be 1...64")
    if a.min_rate <= 0 or a.max_rate <= a.min_rate or a.precision <= 1.0:
        p.error("need 0 < --min-rate < --max-rate and --precision > 1")
    return a


RELAYS = ("socat", "kernel", "mcrelay", "mcrelay-napi", "mcrelay-softirq", "mcrelay-udp", "mcrelay-udp-on", "mcrelay-udp-nic", "mcrelay-xdp",
          "mcrelay-xdp-generic", "afxdp-c", "packet-c", "tpacket-c", "tpacket-rx-c", "kernel-nft")


def machine() -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "kernel": platform.release(), "cpu": cpu}


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="mcbench."))
        self.lab = Lab(args.prefix)
        self.lab.nice = args.nice
        self.family = "ipv4"
        self.counter: Counter | None = None
        self.rows: list[dict] = []
        self.fanout_rows: list[dict] = []
        self.curves: list[dict] = []
        self.trials: list[dict] = []
        self.invalid = 0   # rows a NotCarried check refused

    def close_lab(self) -> None:
        for c in getattr(self, "counters", {}).values():
            c.close()
        self.counters = {}
        self.counter = None
        self.lab.down()

    def close(self) -> None:
        self.close_lab()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- setup -----------------------------------------------------------------------------
    def setup(self, family: str, outputs: int = 1) -> None:
        """A fresh lab for one address family (the previous family's is removed first); `outputs`
        output links (the fan-out case)."""
        for tool in ("ip", "taskset", "cc", *(["trafgen"] if self.args.generator == "trafgen" else [])):
            if not shutil.which(tool):
                raise HarnessError(f"{tool} not found (make deps installs netsniff-ng, socat, smcroute)")
        self.close_lab()
        self.family = family
        self.addr = addresses(family)
        self.lab = Lab(self.args.prefix, family, outputs)
        self.lab.nice = self.args.nice
        log(f"{family} lab {self.lab.prefix}-{{snd,rly,rcv}}, {outputs} output link(s), work folder {self.workdir}")
        self.lab.up()
        a = self.args
        self.gen_cpu = None if a.gen_cpu < 0 else a.gen_cpu
        self.relay_cpu = None if a.relay_cpu < 0 else a.relay_cpu
        if self.relay_cpu is not None:
            self.lab.steer_receive(self.lab.rly, "rin0", self.relay_cpu)
        if a.steer_receiver and self.gen_cpu is not None:
            self.lab.steer_receive(self.lab.rcv, "rcv0", self.gen_cpu)
        mccount = self.workdir / "mccount"
        if not mccount.exists():
            build_tool(self.workdir, "mccount")
        self.counters = {dev: Counter(self.lab, mccount, dev=dev, cpu=self.gen_cpu) for dev in self.lab.rcv_devs}
        self.counter = self.counters["rcv0"]
        mcgen = None
        if self.args.generator == "mcgen":
            mcgen = self.workdir / "mcgen"
            if not mcgen.exists():
                build_tool(self.workdir, "mcgen")
        self.gen = Generator(self.lab, self.workdir, self.gen_cpu, self.args.generator, mcgen, self.args.burst,
                             self.args.udp_checksum)
        self.runner = TrialRunner(self.lab, self.gen, self.counters, self.args.settle, self.relay_cpu)
        self.snd_mac = self.lab.mac(self.lab.snd, "snd0")
        self.counter_self_test()

    def counter_self_test(self) -> None:
        """Known frames straight onto rout0 -> rcv0 must be counted exactly, per group (and on every
        other output link of a fan-out lab, at the low rate)."""
        k = max(self.args.stream_list)
        ss = make_streams(k, self.family)
        cases = [(10_000, 64, 0.3, "rout0", "rcv0")]
        if not self.args.smoke:
            cases += [(300_000, 64, 1.0, "rout0", "rcv0"), (300_000, 1316, 1.0, "rout0", "rcv0")]
        cases += [(10_000, 64, 0.3, rout, rcv) for rout, rcv in zip(self.lab.out_devs[1:], self.lab.rcv_devs[1:])]
        for rate, payload, seconds, rout, rcv in cases:
            rout_mac = self.lab.mac(self.lab.rly, rout)
            cfg = self.gen.load("selftest", ss, payload, rout_mac, self.addr["rout"], use_out=True)
            per = max(1, round(rate * seconds / k))
            counter = self.counters[rcv]
            links0, snap0 = self.runner.links(), counter.snap()
            burst = self.gen.send(cfg, per * k, rate, ns=self.lab.rly, dev=rout)
            time.sleep(self.args.settle)
            snap1, links1 = counter.snap(), self.runner.links()
            got = delta(snap0, snap1)
            want = {(s.out_group, s.out_port): per for s in ss}
            # ICMPv6 the relay namespace's own stack sent meanwhile (IPv6 lab only) is not the test's
            icmp6 = snap1.icmp6 - snap0.icmp6
            rx = links1[rcv]["rx_packets"] - links0[rcv]["rx_packets"] - icmp6
            drops = snap1.ring_drops - snap0.ring_drops
            if burst.sent != per * k or got != want or rx != per * k or drops:
                wrong = {key: (got.get(key, 0), n) for key, n in want.items() if got.get(key, 0) != n}
                raise HarnessError(
                    f"counter self-test ({self.family}, {rcv}) at {rate} pps, {payload} B: generator sent {burst.sent}/{per * k}, "
                    f"{rcv} rx {rx} (+{icmp6} ICMPv6), ring drops {drops}, wrong groups (got, want): {dict(list(wrong.items())[:5])}"
                    f", unexpected: {[key for key in got if key not in want][:5]}")
            log(f"counter self-test ({self.family}, {rcv}): {per * k} frames at {burst.rate:,.0f} pps, {payload} B, "
                f"{k} groups: counted exactly")

    def null_check(self, after: str) -> None:
        """With no relay running nothing may reach the receiver (catches leftover forwarding state).
        The one exception is ICMPv6 in the IPv6 lab: the relay namespace's own IPv6 stack sends
        router/neighbour solicitations and MLD reports out of rout0 on its own schedule; the
        counter tells them apart (next header 58), and they are never UDP."""
        ss = make_streams(max(self.args.stream_list), self.family)
        cfg = self.gen.load("null", ss, 64, self.snd_mac, self.addr["snd"])
        t = self.runner.run(NoRelay(self.lab, self.workdir), ss, cfg, 10_000, 0.2, 64)
        arrived = sum(t.links.get(dev, {}).get("rx_packets", 0) for dev in self.lab.rcv_devs) - t.receiver_icmp6
        if arrived or t.receiver_udp:
            raise HarnessError(f"{arrived} frames ({t.receiver_udp} UDP) reached the receiver with no relay running "
                               f"({self.family}, {after})")
        if t.receiver_icmp6:
            log(f"  null check ({self.family}, {after}): {t.receiver_icmp6} ICMPv6 frame(s) of the relay namespace's "
                "own stack, no UDP")

    # -- measuring -------------------------------------------------------------------------
    def driver(self, name: str) -> RelayDriver:
        if name == "socat":
            return SocatDriver(self.lab, self.workdir, self.relay_cpu)
        if name == "kernel":
            return KernelDriver(self.lab, self.workdir, self.relay_cpu)
        if name == "kernel-nft":
            return KernelNftDriver(self.lab, self.workdir, self.relay_cpu)
        if name == "afxdp-c":
            return AfxdpDriver(self.lab, self.workdir, self.relay_cpu, Path(self.args.afxdp_relay), nice=self.args.nice)
        if name in TPACKET_MODES:
            return TpacketDriver(self.lab, self.workdir, self.relay_cpu, Path(self.args.tpacket_relay), self.args.nice, name)
        # one core for the relay: one worker unless asked otherwise (two workers on one core only
        # add context switches)
        workers = self.args.mcrelay_workers or (1 if self.relay_cpu is not None else None)
        if name in McrelayXDPDriver.MODES:
            return McrelayXDPDriver(self.lab, self.workdir, self.relay_cpu, Path(self.args.mcrelay), workers,
                                    variant=name, xdp_object=Path(self.args.xdp_object), nice=self.args.nice)
        return McrelayDriver(self.lab, self.workdir, self.relay_cpu, Path(self.args.mcrelay), workers,
                             variant=name, input_napi_nice=self.args.mcrelay_input_napi_nice)

    def measure(self, relays: list[str] | None = None, streams_list: list[int] | None = None,
                payloads: list[int] | None = None, rows: list[dict] | None = None) -> int:
        """Every relay × streams × payload in the current lab; rows go to `rows` (default the
        standard table). In the fan-out lab every row has `fanout` = the number of output links."""
        a = self.args
        failures = 0
        family = self.family
        rows = self.rows if rows is None else rows
        fanout = self.lab.outputs if self.lab.outputs > 1 else None
        self.null_check("before any relay")
        for name in relays or a.relay_list:
            d = self.driver(name)
            ok, why = d.available()
            if not ok:
                log(f"{name}: skipped: {why}")
            for streams in streams_list or a.stream_list:
                for payload in payloads or a.payload_list:
                    row = {"relay": name, "family": family, "streams": streams, "payload": payload,
                           "cpu_kind": d.cpu_kind, "min_rate": a.min_rate}
                    if fanout:
                        row["fanout"] = fanout
                    if d.settings:
                        row["settings"] = d.settings
                    rows.append(row)
                    if not ok:
                        row["status"] = f"not measured: {why}"
                        continue
                    log(f"{d.describe()}: {family}, {streams} stream(s), {payload}-byte payloads"
                        + (f", fanned out to {fanout} output links" if fanout else ""))
                    ss = make_streams(streams, family)
                    cfg = self.gen.load("load", ss, payload, self.snd_mac, self.addr["snd"])
                    try:
                        d.start(ss)
                    except (HarnessError, NotCarried) as e:
                        row["status"] = f"not measured: failed to start: {str(e).splitlines()[0]}"
                        log("  " + str(e))
                        d.stop()
                        failures += 1
                        continue
                    try:
                        if a.smoke:
                            failures += self.smoke_trial(d, ss, cfg, payload, row)
                        else:
                            self.search(d, ss, cfg, payload, row)
                        row["extra"] = d.extra_stats()
                    except NotCarried as e:
                        row["status"] = f"INVALID: {e}"
                        log(f"  {name}: INVALID, not carried as labelled: {e}")
                        self.invalid += 1
                        failures += 1
                    finally:
                        d.stop()
                    self.null_check(f"after {name}")
        return failures

    def measure_curves(self) -> int:
        """Delivered versus offered (--curve) for every curve relay in the current (IPv4) lab."""
        a = self.args
        failures = 0
        ss = make_streams(a.curve_streams, self.family)
        cfg = self.gen.load("curve", ss, a.curve_payload, self.snd_mac, self.addr["snd"])
        self.null_check("before the curves")
        for name in a.curve_relay_list:
            d = self.driver(name)
            curve = {"relay": name, "family": self.family, "streams": a.curve_streams, "payload": a.curve_payload,
                     "outputs": self.lab.outputs,
                     "cpu_kind": d.cpu_kind, "settings": d.settings, "points": []}
            self.curves.append(curve)
            ok, why = d.available()
            if not ok:
                log(f"{name}: curve skipped: {why}")
                curve["status"] = f"not measured: {why}"
                continue
            log(f"{d.describe()}: delivered versus offered, {a.curve_streams} stream(s), {a.curve_payload} B")
            try:
                d.start(ss)
            except (HarnessError, NotCarried) as e:
                curve["status"] = f"not measured: failed to start: {str(e).splitlines()[0]}"
                log("  " + str(e))
                d.stop()
                failures += 1
                continue
            try:
                def run_at(rate):
                    # a frame the link refuses is lost, as at a NIC's full ring (curve.py)
                    t = self.runner.run(d, ss, cfg, rate, a.trial_seconds, a.curve_payload,
                                        expected_rate=max(r for r in a.curve_rate_list if r) if rate is None else None,
                                        drop_refused=True)
                    self.trials.append({"relay": d.name, "family": self.family, "streams": len(ss),
                                        "payload": a.curve_payload, "curve": True, **t.to_dict()})
                    return t
                run_curve(curve, a.curve_rate_list, run_at, log)
                curve["status"] = "measured"
                curve["extra"] = d.extra_stats()
            except NotCarried as e:
                curve["status"] = f"INVALID: {e}"
                log(f"  {name}: curve INVALID, not carried as labelled: {e}")
                self.invalid += 1
                failures += 1
            finally:
                d.stop()
            self.null_check(f"after {name}'s curve")
        return failures

    def smoke_trial(self, d: RelayDriver, ss, cfg, payload: int, row: dict) -> int:
        """One low-rate trial: every stream must arrive at all; how fast is not judged."""
        t = self.runner.run(d, ss, cfg, 2000, 0.5, payload)
        self.trials.append({"relay": d.name, "family": self.family, "streams": len(ss), "payload": payload, **t.to_dict()})
        starved = [i for i, n in enumerate(t.stream_received) if n == 0]
        log(f"  smoke: sent {t.sent}, received {t.received}, lost {t.lost}, dup {t.duplicates}, "
            f"stray {t.stray}, streams with nothing: {starved[:10]}")
        row.update(smoke=True, status="measured" if not starved else f"smoke: streams {starved[:10]} carried nothing",
                   zero_loss_pps=t.offered_rate if t.zero_loss else 0.0, generator_limited=False,
                   below_floor=not t.zero_loss, confirmed=True, trials=1,
                   mbit_s=t.offered_rate * payload * 8 / 1e6, relay_cpu_us=t.cpu_us_per_packet("process"),
                   softirq_us=t.cpu_us_per_packet("softirq"), relay_softirq_us=t.cpu_us_per_packet("relay_softirq"),
                   kthread_us=t.cpu_us_per_packet("kthread"), relay_busy_us=t.cpu_us_per_packet("relay_busy"),
                   copies=t.copies, xdp=t.xdp)
        if t.xdp:
            # what the driver's own counters saw of the trial (the XDP program's, the nftables chains')
            log("  smoke: the relay's own counters: " + ", ".join(f"{k} +{v}" for k, v in t.xdp.items()))
        return 1 if starved else 0

    def search(self, d: RelayDriver, ss, cfg, payload: int, row: dict) -> None:
        a = self.args
        paced = self.gen.paced
        def run_at(rate: float):
            # an unpaced generator (trafgen) offers its ceiling whatever is asked: one trial says it all
            t = self.runner.run(d, ss, cfg, rate if paced else None, a.trial_seconds, payload,
                                expected_rate=a.max_rate)
            self.trials.append({"relay": d.name, "family": self.family, "streams": len(ss), "payload": payload,
                                **t.to_dict()})
            return t
        r = zero_loss_search(run_at, a.min_rate, a.max_rate, a.precision, a.max_trials if paced else 1, a.budget, log)
        best = r.best
        row.update(status="measured", zero_loss_pps=r.rate, generator_limited=r.generator_limited,
                   below_floor=r.below_floor, confirmed=r.confirmed, trials=len(r.trials), stopped_by=r.stopped_by,
                   mbit_s=r.rate * payload * 8 / 1e6 if best else 0.0,
                   relay_cpu_us=best.cpu_us_per_packet("process") if best else None,
                   softirq_us=best.cpu_us_per_packet("softirq") if best else None,
                   relay_softirq_us=best.cpu_us_per_packet("relay_softirq") if best else None,
                   kthread_us=best.cpu_us_per_packet("kthread") if best else None,
                   relay_busy_us=best.cpu_us_per_packet("relay_busy") if best and self.relay_cpu is not None else None,
                   relay_busy_us_per_input=best.cpu_us_per_input("relay_busy") if best and self.relay_cpu is not None else None,
                   copies=best.copies if best else None,
                   # fan-out: per input datagram = per copy × copies
                   relay_cpu_us_per_input=best.cpu_us_per_input("process") if best else None,
                   relay_softirq_us_per_input=best.cpu_us_per_input("relay_softirq") if best else None,
                   softirq_us_per_input=best.cpu_us_per_input("softirq") if best else None,
                   best_trial=best.to_dict() if best else None)
        # IPv4 keeps its file names (perf-RELAY-STREAMSxPAYLOAD); IPv6 adds -ipv6
        suffix = ("" if self.family == "ipv4" else f"-{self.family}") + \
            (f"-fanout{self.lab.outputs}" if self.lab.outputs > 1 else "")
        if a.perf and best and self.relay_cpu is not None:
            out = REPO / "bench/results"
            out.mkdir(parents=True, exist_ok=True)
            profiled = profile_trial(self.relay_cpu, out, f"perf-{d.name}-{len(ss)}x{payload}{suffix}",
                                     lambda: run_at(best.requested_rate or a.max_rate), log,
                                     relay_pids=d.pids(), keep=os.environ.get("BENCH_KEEP_PERF"))
            if profiled:
                report, busy = profiled
                row["perf_report"] = str(report.relative_to(REPO))
                log(f"  perf report: {report}")
                # the core's busy time by perf's samples (profile.py: /proc/stat misses softirq
                # from idle), per packet of the profiled trial
                t = busy.get("trial")
                if busy.get("busy_s") is not None and t is not None and t.received:
                    row["perf_busy_us"] = busy["busy_s"] * 1e6 / t.received
                    row["perf_busy_us_per_input"] = row["perf_busy_us"] * t.copies
                    row["perf_trial_proc_busy_us"] = t.cpu_us_per_packet("relay_busy")
                    log(f"  core busy by perf samples: {row['perf_busy_us']:.2f} µs/pkt "
                        f"(/proc/stat, same trial: {row['perf_trial_proc_busy_us'] or 0:.2f})")
        if a.perf and self.relay_cpu is not None and paced:
            self.equal_load_cost(d, run_at, f"perf-{d.name}-{len(ss)}x{payload}{suffix}", row)
        log(f"  => {r.rate:,.0f} pps zero loss" + (" (generator limit)" if r.generator_limited else "")
            + ("" if r.confirmed else " (unconfirmed)") + f", {len(r.trials)} trials, stopped by {r.stopped_by}")


    def equal_load_cost(self, d: RelayDriver, run_at, name: str, row: dict) -> None:
        """The relay core's busy time per datagram by perf samples in one trial at --cost-rate
        (--fanout-cost-rate in the fan-out lab), the same offered rate for every relay: issue
        #14's CPU goal is judged on it (report.py `cost_rows`). Its loss is kept beside it: a
        relay that cannot carry that rate pays for what it drops too, and the report says so."""
        a = self.args
        rate = a.fanout_cost_rate if self.lab.outputs > 1 else a.cost_rate
        if not rate:
            return
        out = REPO / "bench/results"
        out.mkdir(parents=True, exist_ok=True)
        profiled = profile_trial(self.relay_cpu, out, f"{name}-at{rate / 1000:g}k", lambda: run_at(rate), log,
                                 relay_pids=d.pids(), keep=os.environ.get("BENCH_KEEP_PERF"))
        if not profiled:
            return
        report, busy = profiled
        t = busy.get("trial")
        self.trials[-1]["equal_load"] = True
        if busy.get("busy_s") is None or t is None or not t.received:
            log(f"  at {rate:,.0f} pps offered: nothing measured (no perf samples or nothing delivered)")
            return
        expected = t.sent * t.copies
        row.update(cost_rate=rate, cost_offered=t.offered_rate, cost_perf_report=str(report.relative_to(REPO)),
                   cost_loss_pct=100.0 * t.lost / expected if expected else 0.0,
                   cost_perf_busy_us=busy["busy_s"] * 1e6 / t.received,
                   cost_perf_busy_us_per_input=busy["busy_s"] * 1e6 / t.received * t.copies)
        log(f"  at {t.offered_rate:,.0f} pps offered (--{'fanout-' if self.lab.outputs > 1 else ''}cost-rate): "
            f"core busy by perf samples {row['cost_perf_busy_us']:.2f} µs per delivered datagram"
            + (f" ({row['cost_perf_busy_us_per_input']:.2f} per input)" if t.copies > 1 else "")
            + f", lost {row['cost_loss_pct']:.2f}%; report {report}")


def prioritise(nice: int) -> None:
    """With CFS autogroups (sched_autogroup_enabled=1 here) a process's nice level only counts
    inside its session: a build in another session gets an equal share of a core however niced
    the benchmark is (measured: nice -20 mcgen got 6% of its core beside a nice-0 fuzzer). So
    the benchmark starts its own session and gives that autogroup the nice level."""
    if nice == 0:
        return
    try:
        os.setsid()
    except OSError:
        pass  # already a session leader
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
    except OSError as e:
        log(f"bench-e2e: cannot set the autogroup's nice level ({e}); other sessions' load will show in the numbers")


def render(args: argparse.Namespace) -> int:
    data = json.loads(Path(args.render).read_text())
    rows, fanout, curves = data["rows"], data.get("fanout", []), data.get("curves", [])
    print(print_report(rows, fanout, curves))
    if not args.no_markdown:
        md = Path(args.markdown or REPO / "BENCHMARKS.md")
        update_markdown(md, markdown_block(rows, data["meta"], fanout, curves))
        log(f"{md} updated from {args.render}")
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.render:
        return render(args)
    if os.geteuid() != 0:
        log("bench-e2e: must run as root (network namespaces, AF_PACKET)")
        return 2
    command = "scripts/bench-e2e.sh" + ("" if not argv else " " + " ".join(shlex.quote(x) for x in argv))
    meta = {**machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": command,
            "load_start": load(),
            "knobs": (f"trial {args.trial_seconds} s, settle {args.settle} s, search {args.min_rate:.0f}–"
                      f"{args.max_rate:.0f} pps to within ×{args.precision}, ≤ {args.max_trials} trials / "
                      f"{args.budget:.0f} s per relay and configuration, bursts of {args.burst} frames, "
                      f"IPv4 UDP checksum {'valid' if args.udp_checksum else '0'}, "
                      f"generator {args.generator} + counter + the harness on CPU {args.gen_cpu}, relay processes + "
                      f"rin0 softirq (RPS) on CPU {args.relay_cpu}, rcv0 softirq "
                      f"{'on CPU ' + str(args.gen_cpu) if args.steer_receiver else 'where the relay sends'}, nice {args.nice} (own autogroup), "
                      "links at their defaults (only mcrelay-udp-nic turns rout0's tx-udp-segmentation off while it runs, and "
                      "mcrelay-xdp turns GRO on on the receivers' veth ends and threaded NAPI on rin0, its kthread "
                      f"pinned to CPU {args.relay_cpu}, while it runs; afxdp-c turns threaded NAPI on rin0 the same way, "
                      "packet-c and tpacket-c GRO and threaded NAPI on rin0 as the mcrelay daemon does)"
                      + (f", curves: {args.curve_streams} stream(s) × {args.curve_payload} B at "
                         + ", ".join("max" if r is None else f"{r:.0f}" for r in args.curve_rate_list) + " pps"
                         if args.curve else "")
                      + (f", fan-out: 1 stream to {args.fanout} output links (own IPv4 lab)" if args.fanout else "")
                      + (", families " + " then ".join(args.family_list) + " (IPv6: nodad global addresses, "
                         "sender namespace without IPv6)" if args.family_list != ["ipv4"] else ""))}
    prioritise(args.nice)
    if args.relay_cpu >= 0:
        # The harness itself (and what it runs: ip, bpftool, cc) stays off the relay's core, where
        # every busy sample is charged to the relay: unpinned, it took 3.5% of that core in an
        # mcrelay-xdp trial (perf, 2026-12-07), 14% of what that row was charged. The relays and
        # napi/rin0 are pinned to the relay's CPU explicitly (lab.py, drivers.py).
        os.sched_setaffinity(0, {args.gen_cpu})
    bench = Bench(args)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        failures = 0
        for family in args.family_list:
            bench.setup(family)
            failures += bench.measure()
            if args.curve and family == "ipv4":
                failures += bench.measure_curves()
        if args.curve and "ipv4" not in args.family_list:
            bench.setup("ipv4")
            failures += bench.measure_curves()
        if args.fanout:
            bench.setup("ipv4", outputs=args.fanout)
            failures += bench.measure(args.fanout_relay_list, [1], args.fanout_payload_list, bench.fanout_rows)
            if args.curve and args.curve_fanout:
                failures += bench.measure_curves()
    except HarnessError as e:
        log(f"bench-e2e: HARNESS FAILURE: {e}")
        return 3
    except KeyboardInterrupt:
        log("bench-e2e: interrupted")
        return 130
    finally:
        bench.close()
    meta["load_end"] = load()
    if args.smoke:
        print("smoke run: one 2000 pps trial per row; rates below are not a measurement")
    print(print_report(bench.rows, bench.fanout_rows, bench.curves))
    if not args.smoke or args.json:
        path = Path(args.json or REPO / "bench/results/e2e-latest.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"meta": meta, "rows": bench.rows, "fanout": bench.fanout_rows,
                                   "curves": bench.curves, "trials": bench.trials}, indent=1,
                                   sort_keys=True, default=str) + "\n")
        log(f"trials written to {path}")
    if not args.no_markdown and (args.markdown or not args.smoke):
        md = Path(args.markdown or REPO / "BENCHMARKS.md")
        update_markdown(md, markdown_block(bench.rows, meta, bench.fanout_rows, bench.curves))
        log(f"{md} updated")
    if bench.invalid:
        log(f"bench-e2e: {bench.invalid} row(s) INVALID: the relay did not carry the trials as labelled")
        return 1
    if args.smoke:
        return 1 if failures else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
