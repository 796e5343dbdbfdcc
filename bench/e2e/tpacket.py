"""Rows `packet-c` and `tpacket-c`: the AF_PACKET relay experiment of issue #14 in C
(bench/experiments/tpacket/tpacket_relay.c, built by its build.sh into .build/tpacket/).

One program, two modes, so that the kernel's packet rings are measured apart from the difference
between mcrelay's Swift workers and C: `packet-c` receives with recvmmsg and sends with sendmmsg
(the packet path's syscalls, as mcrelay's workers make them), `tpacket-c` receives from a
TPACKET_V3 ring and sends through a TPACKET_V2 transmit ring per output, `tpacket-rx-c` takes the
receive ring and sendmmsg. The gain of the rings is
tpacket-c against packet-c; the language's, packet-c against mcrelay.

The receive work gets what mcrelay's packet path gives it (the daemon's --input-napi threaded,
its default, which these rows cannot ask of a C program, so the driver does it the same way):
GRO on rin0 (the veth has no NAPI without it; its UDP GRO merges nothing here: no socket asked
for it and rx-udp-gro-forwarding is off, which the relay's counters confirm: one frame in per
datagram sent), /sys/class/net/rin0/threaded = 1, the new napi/rin0-N kthread pinned to the
relay's CPU at 10 nice levels above the relay and counted as the relay's. Both are put back at
stop. rin0's RPS stays as the lab sets it for every row (the relay core): on veth the
generator's frames bypass rin0's NAPI (see McrelayDriver._place_receive_thread), so RPS is what
puts their receive work on the relay core.

Every trial is checked with the relay's own counters (SIGUSR1 makes it write them to a file): it
must have taken at least as many datagrams of its rules as the busiest output received and
handed the kernel at least as many copies as arrived; else NotCarried (INVALID). IPv4 only.
"""
from __future__ import annotations

from pathlib import Path

from .drivers import RelayDriver, napi_threads, place_new_napi_thread, signalled_counters
from .errors import HarnessError, NotCarried
from .lab import Lab
from .streams import Stream
from .system import run, wait_until

# row -> (--rx, --tx); tpacket-rx-c: the receive ring alone (the transmit ring lost, BENCHMARKS.md)
MODES = {"packet-c": ("mmsg", "mmsg"), "tpacket-c": ("ring", "ring"), "tpacket-rx-c": ("ring", "mmsg")}


class TpacketDriver(RelayDriver):
    def __init__(self, lab: Lab, workdir: Path, cpu: int | None, binary: Path, nice: int, variant: str):
        super().__init__(lab, workdir, cpu)
        self.name = variant
        self.rx, self.tx = MODES[variant]
        self.binary = binary
        self.stats_file = workdir / f"{variant}-stats.json"
        self.kthreads: list[int] = []
        self.kthread_nice = nice + 10
        self.restore: list[str] = []
        self.settings = (f"rin0 GRO on and threaded NAPI (as mcrelay's --input-napi threaded sets them), its kthread "
                         f"pinned to CPU {cpu} at nice {self.kthread_nice}; rin0's RPS to CPU {cpu} as for every row" if cpu is not None
                         else "rin0 GRO on, NAPI not threaded (no --relay-cpu)")
        how = {("mmsg", "mmsg"): "recvmmsg and sendmmsg (the packet path's syscalls)",
               ("ring", "ring"): "TPACKET_V3 receive ring, TPACKET_V2 transmit rings",
               ("ring", "mmsg"): "TPACKET_V3 receive ring, sendmmsg"}[(self.rx, self.tx)]
        self.title = f"AF_PACKET relay experiment in C (bench/experiments/tpacket: one thread, {how}; {self.settings})"

    def available(self) -> tuple[bool, str]:
        if self.lab.family != "ipv4":
            return False, "the AF_PACKET experiment relays IPv4 only"
        if not self.binary.is_file():
            return False, f"{self.binary} not built (bench/experiments/tpacket/build.sh {self.binary.parent}, or make tpacket-experiment)"
        return True, ""

    def describe(self) -> str:
        return f"{self.name} ({self.binary} --rx {self.rx} --tx {self.tx}); {self.settings}"

    def kthread_pids(self) -> list[int]:
        return list(self.kthreads)

    def _rly_sh(self, script: str, check: bool = True):
        return run(["ip", "netns", "exec", self.lab.rly, "sh", "-c", script], check=check)

    def _receive_like_mcrelay(self) -> None:
        """rin0's receive setting as the daemon makes it, each change remembered to be undone."""
        gro = self._rly_sh("ethtool -k rin0 | awk '/^generic-receive-offload:/ {print $2}'").stdout.strip()
        if gro == "off":
            self._rly_sh("ethtool -K rin0 gro on")
            self.restore.append("ethtool -K rin0 gro off")
        before = napi_threads("napi/rin0-")
        self._rly_sh("echo 1 > /sys/class/net/rin0/threaded")
        # undone first (the list runs backwards): threaded goes to 0 while GRO still holds the NAPI
        self.restore.append("echo 0 > /sys/class/net/rin0/threaded")
        self.kthreads = place_new_napi_thread(before, self.cpu, self.kthread_nice)

    def start(self, streams: list[Stream]) -> None:
        self.logs, self.kthreads, self.restore = [], [], []
        if any(s.family != "ipv4" for s in streams):
            raise HarnessError(f"{self.name} relays IPv4 only")
        rules = self.workdir / f"{self.name}-rules.txt"
        rules.write_text("".join(f"{s.in_group} {s.in_port} {s.out_group} {s.out_port}\n" for s in streams))
        if self.stats_file.exists():
            self.stats_file.unlink()
        args = [str(self.binary), "--in", "rin0", "--out", ",".join(self.lab.out_devs), "--rules", str(rules),
                "--ttl", "16", "--stats", str(self.stats_file), "--rx", self.rx, "--tx", self.tx]
        if self.cpu is not None:
            args += ["--cpu", str(self.cpu)]
            self._receive_like_mcrelay()
        self._spawn(args, f"{self.name}.log")

        def ready():
            if not self.alive():
                raise HarnessError("tpacket_relay exited at start:\n" + self.log_tail())
            return self.stats_file.exists()
        wait_until(ready, 10, "tpacket_relay to open its sockets and write its counters", interval=0.1)

    def counters(self) -> dict:
        return signalled_counters(self, "tpacket_relay")

    def trial_begin(self):
        return self.counters()

    def trial_end(self, mark, received: int, most_per_output: int) -> dict:
        c1 = self.counters()
        keys = ("rx", "forwarded", "unmatched", "bad", "tx", "ring_full", "wrong_format", "send_errors", "dropped",
                "syscalls", "polls", "kernel_packets", "kernel_drops", "kernel_freeze_q")
        seen = {k: c1[k] - mark[k] for k in keys}
        # the harness's fields of the report and smoke log: datagrams taken, copies handed over
        seen.update(accepted=seen["forwarded"], sent=seen["tx"])
        if seen["forwarded"] < most_per_output or seen["tx"] < received:
            raise NotCarried(f"tpacket_relay took {seen['forwarded']} datagrams of its rules and handed the kernel "
                             f"{seen['tx']} copies, but {received} copies arrived (up to {most_per_output} on one "
                             "output): something else carried them")
        return seen

    def extra_stats(self) -> dict:
        return {"stats": self.counters(), "settings": self.settings, "napi_kthreads": self.kthread_pids()}

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.kthreads = []
            for script in reversed(self.restore):
                self._rly_sh(script, check=False)
            self.restore = []
