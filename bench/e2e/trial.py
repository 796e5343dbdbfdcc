"""One trial: send a known number of frames at one rate through the relay and count what arrives.

Harness checks (a failure raises HarnessError, the run stops, nothing is reported as a result):
  - the generator sent what it was asked (trafgen), or stopped short only at its deadline
    (mcgen, when softirq work charged to it kept it below the asked rate);
  - the sender link's tx counter moved by exactly the generator's own count;
  - the counter dropped nothing on its ring and saw every frame the receiving link counted.
Relay outcomes (recorded, never raised): loss per stream, duplicates, frames of unexpected
groups, wrong frame lengths, a relay process that died.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .counter import Counter, delta, payload_delta
from .drivers import RelayDriver
from .errors import HarnessError
from .generator import Generator
from .lab import Lab
from .streams import Stream
from .system import (busy_seconds_between, cpu_seconds_between, cpu_snapshot, link_stats, proc_stat,
                     softirq_seconds_between)


@dataclass
class Trial:
    requested_rate: float
    offered_rate: float          # achieved by the generator
    seconds: float
    sent: int
    per_stream: int              # frames each stream got (the first sent % k streams got one more)
    received: int                # frames of the expected (group, port)s at the receiver
    lost: int                    # sum over streams of max(0, sent - received)
    worst_stream_loss: int
    duplicates: int              # sum over streams of max(0, received - sent)
    stray: int                   # frames of groups the relay should not have sent
    bad_length: int              # expected groups whose frames had the wrong length
    relay_alive: bool
    relay_cpu_s: float
    softirq_s: float             # all CPUs
    relay_softirq_s: float       # the relay's CPU only (== softirq_s when the relay is not pinned)
    busy_s: float
    # non-idle time of the relay's CPU: everything that ran there, counted once (process time and
    # softirq overlap under tick accounting: a tick in softirq is charged to the interrupted task
    # too), other sessions' processes on that core included
    relay_busy_s: float = 0.0
    links: dict = field(default_factory=dict)
    receiver_udp: int = 0        # UDP frames of any group the counter saw
    receiver_icmp6: int = 0      # ICMPv6 frames the counter saw (a host's own IPv6 control traffic)
    stream_received: list = field(default_factory=list)  # frames per stream, in stream order (summed over copies)
    copies: int = 1              # outputs per stream (fan-out): received counts copies
    kthread_s: float = 0.0       # of relay_cpu_s: kernel threads the driver counts as the relay's (threaded NAPI)
    xdp: dict = field(default_factory=dict)  # the XDP program's own counters over the trial (mcrelay-xdp rows)
    refused: int = 0             # of `sent`: refused by the sender's link (drop_refused), lost before the relay

    @property
    def zero_loss(self) -> bool:
        return (self.lost == 0 and self.duplicates == 0 and self.stray == 0 and self.bad_length == 0
                and self.relay_alive and self.sent > 0)

    def cpu_us_per_packet(self, kind: str) -> float | None:
        seconds = {"process": self.relay_cpu_s, "softirq": self.softirq_s, "relay_softirq": self.relay_softirq_s,
                   "kthread": self.kthread_s, "relay_busy": self.relay_busy_s}[kind]
        return seconds * 1e6 / self.received if self.received else None

    def cpu_us_per_input(self, kind: str) -> float | None:
        """Per input datagram: per copy × copies (the same as per packet without fan-out)."""
        per_copy = self.cpu_us_per_packet(kind)
        return None if per_copy is None else per_copy * self.copies

    def to_dict(self) -> dict:
        d = asdict(self)
        d["zero_loss"] = self.zero_loss
        return d


def link_delta(before: dict, after: dict, ns_dev: str, key: str) -> int:
    return after[ns_dev][key] - before[ns_dev][key]


class TrialRunner:
    def __init__(self, lab: Lab, generator: Generator, counters: dict[str, Counter], settle: float,
                 relay_cpu: int | None):
        """counters: one per receiving link of the lab (rcv0, and rcv1... in the fan-out lab)."""
        self.lab = lab
        self.gen = generator
        self.counters = counters
        self.settle = settle
        self.relay_cpu = relay_cpu
        self.last_lossy = False

    def links(self) -> dict:
        flat = {}
        for ns, devs in ((self.lab.snd, ["snd0"]), (self.lab.rly, ["rin0", *self.lab.out_devs]),
                         (self.lab.rcv, self.lab.rcv_devs)):
            stats = link_stats(ns)
            for dev in devs:
                flat[dev] = stats[dev]
        return flat

    def quiesce(self, quiet: float = 0.1, limit: float = 3.0) -> None:
        """Waits (at most `limit` s) until no receiving link counted a frame for `quiet` s: an
        overloaded relay may still be emptying its socket queue after the settle, and the counters
        and the links' own counts must be read when nothing moves (else "counter saw N but rcv0
        counted M" for a relay that is merely slow, measured in the fan-out lab)."""
        deadline = time.monotonic() + limit
        before = self.links()
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.links()
            if all(now[d]["rx_packets"] == before[d]["rx_packets"] for d in self.lab.rcv_devs):
                return
            before = now

    def run(self, driver: RelayDriver, streams: list[Stream], config: Path, rate: float | None,
            seconds: float, payload: int, expected_rate: float | None = None, drop_refused: bool = True) -> Trial:
        """One trial. `drop_refused` (default): a frame the sender's veth refuses (the relay side's
        backlog or NAPI ring full) is offered and lost, as at a NIC's full ring; False: the
        generator sends it again (every trial before 2026-12-07), which lets a relay whose
        receive lags slow the generator to its pace and pass for lossless (Burst.refused)."""
        k = len(streams)
        if self.last_lossy:
            time.sleep(1.0)  # an overloaded relay may still be digesting queued frames
        per_stream = max(1, round((rate or expected_rate or 100_000) * seconds / k))
        count = per_stream * k
        pids = driver.pids()
        kthreads = set(driver.kthread_pids())
        links0, cpu0, stat0 = self.links(), cpu_snapshot(pids), proc_stat()
        snaps0 = {dev: c.snap() for dev, c in self.counters.items()}
        mark = driver.trial_begin()
        burst = self.gen.send(config, count, rate, deadline=seconds * 1.5 + 0.5, drop_refused=drop_refused)
        time.sleep(self.settle)  # let queued frames through the relay before counting
        self.quiesce()
        cpu1, stat1 = cpu_snapshot(pids + [p for p in driver.pids() if p not in pids]), proc_stat()
        snaps1 = {dev: c.snap() for dev, c in self.counters.items()}
        links1 = self.links()

        # --- harness checks -----------------------------------------------------------------
        if burst.sent != count and (not self.gen.paced or burst.sent > count or burst.sent == 0):
            raise HarnessError(f"{self.gen.kind} sent {burst.sent} frames, asked for {count}")
        tx = link_delta(links0, links1, "snd0", "tx_packets")
        if tx != burst.sent - burst.refused:
            raise HarnessError(f"sender link snd0 transmitted {tx} frames, {self.gen.kind} says it sent {burst.sent}"
                               + (f" of which the link refused {burst.refused}" if burst.refused else ""))
        if burst.refused:
            dropped = link_delta(links0, links1, "snd0", "tx_dropped")
            # the sender namespace's own frames (none expected, a few allowed) may be dropped too
            if not burst.refused <= dropped <= burst.refused + 16:
                raise HarnessError(f"{self.gen.kind} says snd0 refused {burst.refused} frames, snd0 counted {dropped} tx drops")
        count = burst.sent
        base, extra = divmod(count, k)
        for dev, c in self.counters.items():
            snap0, snap1 = snaps0[dev], snaps1[dev]
            drops = snap1.ring_drops - snap0.ring_drops
            if drops:
                raise HarnessError(f"the receiver counter on {dev} dropped {drops} frames on its ring: counts untrustworthy")
            seen = (snap1.udp + snap1.other) - (snap0.udp + snap0.other)
            rx = link_delta(links0, links1, dev, "rx_packets")
            if seen != rx:
                raise HarnessError(f"receiver counter saw {seen} frames but {dev} counted {rx}")
            if snap1.table_full:
                raise HarnessError(f"receiver counter's group table on {dev} is full")

        # --- relay outcome -------------------------------------------------------------------
        # datagrams = payload bytes / payload size: right for plain frames and for UDP GSO
        # super-frames a relay may send over veth (veth never segments them)
        frames_got = {dev: delta(snaps0[dev], snaps1[dev]) for dev in self.counters}
        bytes_got = {dev: payload_delta(snaps0[dev], snaps1[dev]) for dev in self.counters}
        got = {dev: {key: b // payload for key, b in per.items()} for dev, per in bytes_got.items()}
        gso_frames = sum(frames_got[dev].get(key, 0) for dev in got for key in got[dev]
                         if got[dev][key] > frames_got[dev].get(key, 0))
        outs = {s.index: driver.out_keys(s) for s in streams}
        copies = len(outs[streams[0].index]) if streams else 1
        expected = {dk for keys in outs.values() for dk in keys}
        lost = dups = received = worst = bad_len = 0
        per_stream_got = []
        for s in streams:
            want = base + (1 if s.index < extra else 0)  # round robin from the first frame
            got_s = 0
            for dev, key in outs[s.index]:
                n = got.get(dev, {}).get(key, 0)
                got_s += n
                received += min(n, want)
                lost += max(0, want - n)
                worst = max(worst, want - n)
                dups += max(0, n - want)
                if bytes_got.get(dev, {}).get(key, 0) % payload:
                    bad_len += 1
            per_stream_got.append(got_s)
        stray = sum(max(n, frames_got[dev].get(key, 0)) for dev in got for key, n in got[dev].items()
                    if (dev, key) not in expected)
        links = {dev: {k2: links1[dev][k2] - links0[dev][k2] for k2 in links1[dev]
                       if links1[dev][k2] != links0[dev][k2]} for dev in links1}
        if gso_frames:
            links["receiver"] = {"frames_carrying_several_datagrams": gso_frames}
        # per output: the copies of the stream with the most frames (the XDP check's floor)
        most_per_output = max((got.get(dev, {}).get(key, 0) for keys in outs.values() for dev, key in keys), default=0)
        xdp = driver.trial_end(mark, received=received, most_per_output=most_per_output)
        kthread_s = cpu_seconds_between({p: t for p, t in cpu0.items() if p in kthreads},
                                        {p: t for p, t in cpu1.items() if p in kthreads})
        self.last_lossy = lost > 0
        return Trial(requested_rate=rate or 0.0, offered_rate=burst.rate, seconds=burst.seconds, sent=count, refused=burst.refused,
                     per_stream=base, received=received, lost=lost, worst_stream_loss=max(0, worst),
                     duplicates=dups, stray=stray, bad_length=bad_len, relay_alive=driver.alive(),
                     relay_cpu_s=cpu_seconds_between(cpu0, cpu1), softirq_s=softirq_seconds_between(stat0, stat1),
                     relay_softirq_s=softirq_seconds_between(stat0, stat1, self.relay_cpu),
                     busy_s=busy_seconds_between(stat0, stat1),
                     relay_busy_s=busy_seconds_between(stat0, stat1, self.relay_cpu) if self.relay_cpu is not None else 0.0,
                     links=links,
                     receiver_udp=sum(snaps1[d].udp - snaps0[d].udp for d in self.counters),
                     receiver_icmp6=sum(snaps1[d].icmp6 - snaps0[d].icmp6 for d in self.counters),
                     stream_received=per_stream_got, copies=copies, kthread_s=kthread_s, xdp=xdp)
