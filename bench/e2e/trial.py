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
    links: dict = field(default_factory=dict)
    receiver_udp: int = 0        # UDP frames of any group the counter saw
    receiver_icmp6: int = 0      # ICMPv6 frames the counter saw (a host's own IPv6 control traffic)
    stream_received: list = field(default_factory=list)  # frames per stream, in stream order

    @property
    def zero_loss(self) -> bool:
        return (self.lost == 0 and self.duplicates == 0 and self.stray == 0 and self.bad_length == 0
                and self.relay_alive and self.sent > 0)

    def cpu_us_per_packet(self, kind: str) -> float | None:
        seconds = {"process": self.relay_cpu_s, "softirq": self.softirq_s, "relay_softirq": self.relay_softirq_s}[kind]
        return seconds * 1e6 / self.received if self.received else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["zero_loss"] = self.zero_loss
        return d


def link_delta(before: dict, after: dict, ns_dev: str, key: str) -> int:
    return after[ns_dev][key] - before[ns_dev][key]


class TrialRunner:
    def __init__(self, lab: Lab, generator: Generator, counter: Counter, settle: float, relay_cpu: int | None):
        self.lab = lab
        self.gen = generator
        self.counter = counter
        self.settle = settle
        self.relay_cpu = relay_cpu
        self.last_lossy = False

    def links(self) -> dict:
        flat = {}
        for ns, devs in ((self.lab.snd, ["snd0"]), (self.lab.rly, ["rin0", "rout0"]), (self.lab.rcv, ["rcv0"])):
            stats = link_stats(ns)
            for dev in devs:
                flat[dev] = stats[dev]
        return flat

    def run(self, driver: RelayDriver, streams: list[Stream], config: Path, rate: float | None,
            seconds: float, payload: int, expected_rate: float | None = None) -> Trial:
        k = len(streams)
        if self.last_lossy:
            time.sleep(1.0)  # an overloaded relay may still be digesting queued frames
        per_stream = max(1, round((rate or expected_rate or 100_000) * seconds / k))
        count = per_stream * k
        pids = driver.pids()
        links0, snap0, cpu0, stat0 = self.links(), self.counter.snap(), cpu_snapshot(pids), proc_stat()
        burst = self.gen.send(config, count, rate, deadline=seconds * 1.5 + 0.5)
        time.sleep(self.settle)  # let queued frames through the relay before counting
        cpu1, stat1 = cpu_snapshot(pids + [p for p in driver.pids() if p not in pids]), proc_stat()
        snap1, links1 = self.counter.snap(), self.links()

        # --- harness checks -----------------------------------------------------------------
        if burst.sent != count and (not self.gen.paced or burst.sent > count or burst.sent == 0):
            raise HarnessError(f"{self.gen.kind} sent {burst.sent} frames, asked for {count}")
        tx = link_delta(links0, links1, "snd0", "tx_packets")
        if tx != burst.sent:
            raise HarnessError(f"sender link snd0 transmitted {tx} frames, {self.gen.kind} says it sent {burst.sent}")
        count = burst.sent
        base, extra = divmod(count, k)
        drops = snap1.ring_drops - snap0.ring_drops
        if drops:
            raise HarnessError(f"the receiver counter dropped {drops} frames on its ring: counts untrustworthy")
        seen = (snap1.udp + snap1.other) - (snap0.udp + snap0.other)
        rx = link_delta(links0, links1, "rcv0", "rx_packets")
        if seen != rx:
            raise HarnessError(f"receiver counter saw {seen} frames but rcv0 counted {rx}")
        if snap1.table_full:
            raise HarnessError("receiver counter's group table is full")

        # --- relay outcome -------------------------------------------------------------------
        # datagrams = payload bytes / payload size: right for plain frames and for UDP GSO
        # super-frames a relay may send over veth (veth never segments them)
        frames_got = delta(snap0, snap1)
        bytes_got = payload_delta(snap0, snap1)
        got = {key: b // payload for key, b in bytes_got.items()}
        gso_frames = sum(frames_got.get(key, 0) for key in got if got[key] > frames_got.get(key, 0))
        expected = {driver.out_key(s) for s in streams}
        lost = dups = received = worst = bad_len = 0
        per_stream_got = []
        for s in streams:
            key = driver.out_key(s)
            n = got.get(key, 0)
            per_stream_got.append(n)
            want = base + (1 if s.index < extra else 0)  # round robin from the first frame
            received += min(n, want)
            lost += max(0, want - n)
            worst = max(worst, want - n)
            dups += max(0, n - want)
            if bytes_got.get(key, 0) % payload:
                bad_len += 1
        stray = sum(max(n, frames_got.get(key, 0)) for key, n in got.items() if key not in expected)
        links = {dev: {k2: links1[dev][k2] - links0[dev][k2] for k2 in links1[dev]
                       if links1[dev][k2] != links0[dev][k2]} for dev in links1}
        if gso_frames:
            links["receiver"] = {"frames_carrying_several_datagrams": gso_frames}
        self.last_lossy = lost > 0
        return Trial(requested_rate=rate or 0.0, offered_rate=burst.rate, seconds=burst.seconds, sent=count,
                     per_stream=base, received=received, lost=lost, worst_stream_loss=max(0, worst),
                     duplicates=dups, stray=stray, bad_length=bad_len, relay_alive=driver.alive(),
                     relay_cpu_s=cpu_seconds_between(cpu0, cpu1), softirq_s=softirq_seconds_between(stat0, stat1),
                     relay_softirq_s=softirq_seconds_between(stat0, stat1, self.relay_cpu),
                     busy_s=busy_seconds_between(stat0, stat1), links=links,
                     receiver_udp=snap1.udp - snap0.udp, receiver_icmp6=snap1.icmp6 - snap0.icmp6,
                     stream_received=per_stream_got)
