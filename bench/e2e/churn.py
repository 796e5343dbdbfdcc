"""scripts/bench-churn.sh: listener churn on many interfaces while static streams forward (issue #13).

    PREFIX-snd snd0 ──veth── rin0  PREFIX-rly  rout0 ──veth── rcv0 PREFIX-rcv   (static streams, mccount)
                                               rch0  ──veth── hst0 PREFIX-h0    (follow outputs, churn)
                                               ...
                                               rchN-1 ─veth── hst0 PREFIX-hN-1

One generator (bench/mcgen.c) sends S static streams (rin0 239.1.0.x -> rout0 239.10.0.x, counted
per stream by bench/mccount.c on rcv0) and K churn streams (rin0 239.2.0.k:8001+k), round robin.
Each churn stream's rule has one follow output per churn link (`rchI:239.20.0.k:9001+k:16:listeners`)
and the relay is the IGMP querier on every churn link. Each host namespace runs
bench/churn_listener.py: ordinary sockets joining and leaving the K groups at a fixed rate (its
own kernel sends IGMPv3 reports; nothing is set on the hosts but their address and IPv6 off).

Measured: static streams sent vs received per stream (must be exactly equal), plans and gate
deltas the supervisor sent (its `--log-level debug` lines `send plan v…` / `send gates v…`),
join -> first datagram per host. Exit: 0 pass, 1 static loss or churn that opened nothing,
2 usage, 3 harness failure (nothing judged), 130 interrupted. The lab is removed in every case.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .counter import Counter, build_tool, delta
from .errors import HarnessError
from .generator import Generator
from .lab import Lab
from .streams import Stream, streams as make_streams
from .system import link_stats, run, wait_until

REPO = Path(__file__).resolve().parents[2]
LISTENER = REPO / "bench/churn_listener.py"
ENV = {**os.environ, "SWIFT_BACKTRACE": "enable=no"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench-churn.sh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mcrelay", default=str(REPO / ".build/release/mcrelay"))
    p.add_argument("--smoke", action="store_true", help="small and short (< 60 s): 4 links, 10 s of churn")
    p.add_argument("--links", type=int, default=16, help="churn links (receiver hosts), 1..64")
    p.add_argument("--groups", type=int, default=8, help="follow groups per churn link (K), 1..200")
    p.add_argument("--static", type=int, default=16, help="static streams (S)")
    p.add_argument("--stream-pps", type=int, default=200, help="packets per second of every stream")
    p.add_argument("--churn", type=float, default=80.0, help="joins+leaves per second across all links")
    p.add_argument("--seconds", type=float, default=30.0, help="churn duration")
    p.add_argument("--lmqi", type=float, default=0.1, help="the relay's last_member_query_interval (s)")
    p.add_argument("--gen-cpu", type=int, default=0)
    p.add_argument("--relay-cpu", type=int, default=1)
    p.add_argument("--nice", type=int, default=-20)
    p.add_argument("--prefix", default=f"mcc{os.getpid() % 100000:05d}")
    p.add_argument("--json", help="write results here (default bench/results/churn-latest.json, not in --smoke)")
    a = p.parse_args(argv)
    if a.smoke:
        a.links, a.groups, a.static, a.seconds, a.churn = min(a.links, 4), min(a.groups, 4), min(a.static, 8), 10.0, 20.0
    if not 1 <= a.links <= 64 or not 1 <= a.groups <= 200 or not 1 <= a.static <= 250:
        p.error("--links 1..64, --groups 1..200, --static 1..250")
    return a


def churn_streams(k: int, first_index: int) -> list[Stream]:
    return [Stream(first_index + i, f"239.2.0.{i + 1}", 8001 + i, f"239.20.0.{i + 1}", 9001 + i) for i in range(k)]


class ChurnLab(Lab):
    """The e2e lab plus one veth per churn link into its own host namespace (198.19.I.0/24)."""

    def __init__(self, prefix: str, links: int):
        super().__init__(prefix)
        self.hosts = [f"{prefix}-h{i}" for i in range(links)]

    def host_addr(self, i: int) -> str:
        return f"198.19.{i}.2"

    def up(self) -> None:
        super().up()
        for i, ns in enumerate(self.hosts):
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            # test hosts only: no IPv6, so no MLD or router solicitations beside the IGMP under test
            run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                 "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
            run(["ip", "-n", self.rly, "link", "add", f"rch{i}", "type", "veth", "peer", "name", "hst0", "netns", ns])
            run(["ip", "-n", self.rly, "addr", "add", f"198.19.{i}.1/24", "dev", f"rch{i}"])
            run(["ip", "-n", ns, "addr", "add", f"{self.host_addr(i)}/24", "dev", "hst0"])
            run(["ip", "-n", self.rly, "link", "set", f"rch{i}", "up"])
            run(["ip", "-n", ns, "link", "set", "hst0", "up"])
            run(["ip", "-n", ns, "route", "add", "239.0.0.0/8", "dev", "hst0"])
        for i, ns in enumerate(self.hosts):
            wait_until(lambda: run(["ip", "netns", "exec", ns, "cat", "/sys/class/net/hst0/operstate"]).stdout.strip() == "up",
                       3, f"{ns}/hst0 up")

    def down(self) -> None:
        super().down()
        existing = run(["ip", "netns", "list"], check=False).stdout.split()
        for ns in getattr(self, "hosts", []):
            if ns in existing:
                for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
                    run(["kill", "-9", pid], check=False)
                run(["ip", "netns", "del", ns], check=False)


def relay_config(a, static: list[Stream], churn: list[Stream]) -> dict:
    rules = [{"name": f"s{s.index}", "in": f"rin0:{s.in_group}:{s.in_port}", "out": [f"rout0:{s.out_group}:{s.out_port}:16"]}
             for s in static]
    rules += [{"name": f"c{s.index}", "in": f"rin0:{s.in_group}:{s.in_port}",
               "out": [f"rch{i}:{s.out_group}:{s.out_port}:16:listeners" for i in range(a.links)]} for s in churn]
    # the relay's own config: a short last-member query interval so leaves close within ~2 × lmqi
    queriers = [{"interface": f"rch{i}", "families": ["ipv4"], "last_member_query_interval": a.lmqi}
                for i in range(a.links)]
    return {"rules": rules, "queriers": queriers}


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def run_bench(a, lab: ChurnLab, workdir: Path) -> dict:
    for tool in ("ip", "taskset", "cc", "python3"):
        if not shutil.which(tool):
            raise HarnessError(f"{tool} not found")
    binary = Path(a.mcrelay)
    if not binary.exists():
        raise HarnessError(f"{binary} not built (swift build --product mcrelay)")
    log(f"lab {lab.prefix}-{{snd,rly,rcv,h0..h{a.links - 1}}}, work folder {workdir}")
    lab.up()
    lab.steer_receive(lab.rly, "rin0", a.relay_cpu)
    build_tool(workdir, "mccount")
    build_tool(workdir, "mcgen")
    counter = Counter(lab, workdir / "mccount", cpu=a.gen_cpu)
    gen = Generator(lab, workdir, a.gen_cpu, "mcgen", workdir / "mcgen")
    static = make_streams(a.static)
    churn = churn_streams(a.groups, a.static)
    every = static + churn

    # counter self-test: known frames straight onto rout0 must be counted exactly
    rout_mac = lab.mac(lab.rly, "rout0")
    cfg = gen.load("selftest", static, 64, rout_mac, "198.18.2.1", use_out=True)
    snap0, rx0 = counter.snap(), link_stats(lab.rcv)["rcv0"]["rx_packets"]
    burst = gen.send(cfg, 100 * len(static), 5000, ns=lab.rly, dev="rout0")
    time.sleep(0.3)
    got, rx1 = delta(snap0, counter.snap()), link_stats(lab.rcv)["rcv0"]["rx_packets"]
    if burst.sent != 100 * len(static) or got != {(s.out_group, s.out_port): 100 for s in static} or rx1 - rx0 != burst.sent:
        raise HarnessError(f"counter self-test: sent {burst.sent}, rcv0 rx {rx1 - rx0}, counted {sum(got.values())}")
    log(f"counter self-test: {burst.sent} frames counted exactly")

    config = workdir / "mcrelay.json"
    config.write_text(json.dumps(relay_config(a, static, churn), indent=1) + "\n")
    control = workdir / "mcrelay.sock"
    relay_log = workdir / "mcrelay.log"

    def stats(*what: str) -> dict | None:
        done = subprocess.run([str(binary), *what, "--json", "--control", str(control)], capture_output=True,
                              text=True, timeout=10, env=ENV)
        return json.loads(done.stdout) if done.returncode == 0 else None

    with open(relay_log, "w") as out:
        relay = lab.spawn(lab.rly, [str(binary), "daemon", "--config", str(config), "--control", str(control),
                                    "--workers", "1", "--log-level", "debug"], cpu=a.relay_cpu,
                          stdout=out, stderr=subprocess.STDOUT, env=ENV)

    def ready():
        if relay.poll() is not None:
            raise HarnessError("mcrelay exited at start:\n" + relay_log.read_text()[-1500:])
        return stats("stats") is not None
    wait_until(ready, 20, "mcrelay to answer stats", interval=0.2)
    time.sleep(1.0)  # workers bind, startup queries go out
    before = stats("stats")

    snd_mac = lab.mac(lab.snd, "snd0")
    load = gen.load("load", every, 64, snd_mac, "198.18.1.1")
    total_pps = a.stream_pps * len(every)
    frames = int(total_pps * (a.seconds + 1.0))
    per_host = a.churn / a.links
    spec = ",".join(f"{s.out_group}:{s.out_port}" for s in churn)
    cold = max(1.0, 4 * a.lmqi + 0.5)
    links0, snap0 = link_stats(lab.snd), counter.snap()
    log_mark = relay_log.stat().st_size
    listeners = [lab.spawn(ns, ["python3", str(LISTENER), lab.host_addr(i), spec, f"{per_host:.3f}", f"{a.seconds:.3f}",
                                str(1000 + i), "--cold", f"{cold:.2f}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True) for i, ns in enumerate(lab.hosts)]
    log(f"churn: {a.links} links × {a.groups} groups, {a.churn:g} joins+leaves/s for {a.seconds:g} s; "
        f"{len(static)} static + {len(churn)} churn streams at {a.stream_pps} pps each ({total_pps} pps offered)")
    burst = gen.send(load, frames, total_pps, deadline=1.5 * (a.seconds + 1.0))
    time.sleep(0.5)
    snap1, links1 = counter.snap(), link_stats(lab.snd)
    hosts = []
    for ns, p in zip(lab.hosts, listeners):
        out, err = p.communicate(timeout=a.seconds + 20)
        lab.forget(p)
        if p.returncode != 0:
            raise HarnessError(f"churn listener in {ns} failed ({p.returncode}): {err.strip()[-800:]}")
        hosts.append(json.loads(out))
    after, igmp = stats("stats"), stats("igmp", "interfaces")
    if relay.poll() is not None:
        raise HarnessError("mcrelay died during the run:\n" + relay_log.read_text()[-1500:])

    # the generator's own checks: what it sent left snd0, the counter dropped nothing and saw all rcv0 got
    if links1["snd0"]["tx_packets"] - links0["snd0"]["tx_packets"] != burst.sent:
        raise HarnessError(f"snd0 sent {links1['snd0']['tx_packets'] - links0['snd0']['tx_packets']}, mcgen {burst.sent}")
    if snap1.ring_drops != snap0.ring_drops:
        raise HarnessError(f"counter ring dropped {snap1.ring_drops - snap0.ring_drops} frames")
    got = delta(snap0, snap1)
    m = len(every)
    expected = {(s.out_group, s.out_port): burst.sent // m + (1 if j < burst.sent % m else 0) for j, s in enumerate(static)}
    lost = {f"{k[0]}:{k[1]}": n - got.get(k, 0) for k, n in expected.items() if got.get(k, 0) != n}
    stray = {f"{k[0]}:{k[1]}": n for k, n in got.items() if k not in expected}

    text = relay_log.read_text()[log_mark:]
    plans = len(re.findall(r"send plan v\d+", text))
    gates = len(re.findall(r"send gates v\d+->v\d+", text))
    gate_entries = sum(int(x) for x in re.findall(r"send gates v\d+->v\d+ for .*? \((\d+) entries\)", text))
    changes = len(re.findall(r"listeners of .* changed", text))
    lat = [x for h in hosts for x in h["latencies_ms"]]
    cold_lat = [x for h in hosts for x in h["cold_latencies_ms"]]
    joins, leaves = sum(h["joins"] for h in hosts), sum(h["leaves"] for h in hosts)
    suppressed = sum(o.get("suppressed_no_listener", 0) for r in (after or {}).get("rules", [])
                     for o in r.get("outputs", []))

    def dist(xs):
        return {"n": len(xs), "p50": percentile(xs, 0.5), "p90": percentile(xs, 0.9), "p99": percentile(xs, 0.99),
                "max": max(xs) if xs else None, "mean": round(statistics.fmean(xs), 2) if xs else None}
    return {
        "knobs": {k: getattr(a, k) for k in ("links", "groups", "static", "stream_pps", "churn", "seconds", "lmqi")},
        "generator": {"sent": burst.sent, "asked": frames, "rate": round(burst.rate)},
        "static": {"sent": sum(expected.values()), "received": sum(got.get(k, 0) for k in expected),
                   "lost_by_stream": lost, "stray": stray},
        "churn": {"joins": joins, "leaves": leaves, "unanswered_joins": sum(h["unanswered_joins"] for h in hosts),
                  "join_to_first_datagram_ms": dist(lat), "cold_join_to_first_datagram_ms": dist(cold_lat),
                  "packet_interval_ms": round(1000 / a.stream_pps, 2)},
        "control": {"plans_sent": plans, "gate_deltas_sent": gates, "gate_entries_sent": gate_entries,
                    "listener_changes": changes,
                    "plan_version_before": (before or {}).get("plan_version"),
                    "plan_version_after": (after or {}).get("plan_version"),
                    "suppressed_no_listener": suppressed,
                    "igmp_reports_received": sum(n for i in (igmp or []) for n in i.get("reports_received", {}).values()),
                    "specific_queries_sent": sum(i.get("specific_queries_sent", 0) for i in (igmp or []))},
        "igmp_interfaces": igmp,
    }


def summary(r: dict) -> str:
    k, s, c, ctl = r["knobs"], r["static"], r["churn"], r["control"]
    j, cj = c["join_to_first_datagram_ms"], c["cold_join_to_first_datagram_ms"]
    return "\n".join([
        f"listener churn: {k['links']} links × {k['groups']} follow groups, {k['churn']:g} joins+leaves/s for {k['seconds']:g} s, "
        f"{k['static']} static streams, every stream {k['stream_pps']} pps, lmqi {k['lmqi']} s",
        f"static streams: sent {s['sent']}, received {s['received']}, lost {sum(s['lost_by_stream'].values())}"
        f" ({len(s['lost_by_stream'])} streams), stray {sum(s['stray'].values())}",
        f"churn: {c['joins']} joins, {c['leaves']} leaves ({c['unanswered_joins']} joins left or ended before a datagram)",
        f"join -> first datagram (ms, packet interval {c['packet_interval_ms']}): all n={j['n']} p50={j['p50']} p90={j['p90']} "
        f"p99={j['p99']} max={j['max']}; cold n={cj['n']} p50={cj['p50']} p90={cj['p90']} p99={cj['p99']} max={cj['max']}",
        f"control plane: {ctl['listener_changes']} listener changes -> {ctl['gate_deltas_sent']} gate deltas "
        f"({ctl['gate_entries_sent']} entries) and {ctl['plans_sent']} plans sent; {ctl['igmp_reports_received']} IGMP reports in, "
        f"{ctl['specific_queries_sent']} group-specific queries out; plan version "
        f"{ctl['plan_version_before']} -> {ctl['plan_version_after']}; {ctl['suppressed_no_listener']} datagrams suppressed (no listener)",
    ])


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    if os.geteuid() != 0:
        log("bench-churn: must run as root (network namespaces, AF_PACKET); not run")
        return 2
    if a.nice:
        try:
            os.setsid()
        except OSError:
            pass
        try:
            Path("/proc/self/autogroup").write_text(str(a.nice))
        except OSError as e:
            log(f"bench-churn: cannot set the autogroup's nice level ({e})")
    workdir = Path(tempfile.mkdtemp(prefix="mcchurn."))
    lab = ChurnLab(a.prefix, a.links)
    lab.nice = a.nice

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    started = time.monotonic()
    with open("/proc/loadavg") as f:
        load_start = f.read().split()[:3]
    try:
        result = run_bench(a, lab, workdir)
    except HarnessError as e:
        log(f"bench-churn: HARNESS FAILURE: {e}")
        return 3
    except KeyboardInterrupt:
        log("bench-churn: interrupted")
        return 130
    finally:
        lab.down()
        shutil.rmtree(workdir, ignore_errors=True)
    with open("/proc/loadavg") as f:
        result["meta"] = {"loadavg_start": load_start, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "loadavg_end": f.read().split()[:3],
                          "wall_s": round(time.monotonic() - started, 1), "smoke": a.smoke,
                          "build": "debug" if "/debug/" in a.mcrelay else "release" if "/release/" in a.mcrelay else a.mcrelay}
    print(summary(result))
    if not a.smoke or a.json:
        path = Path(a.json or REPO / "bench/results/churn-latest.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1, sort_keys=True, default=str) + "\n")
        log(f"results written to {path}")
    s, c, ctl = result["static"], result["churn"], result["control"]
    failed = []
    if s["lost_by_stream"] or s["stray"] or s["received"] == 0:
        failed.append("static streams lost datagrams or carried stray ones")
    if c["joins"] and not c["join_to_first_datagram_ms"]["n"]:
        failed.append("no join ever received a datagram")
    if c["joins"] and not ctl["gate_deltas_sent"]:
        failed.append("no gate delta was sent")
    for why in failed:
        log(f"bench-churn: FAIL: {why}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
