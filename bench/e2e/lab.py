"""The benchmark's own three-namespace lab (same shape as scripts/netns-lab.sh, one output link).

    PREFIX-snd  snd0 198.18.1.1/24 <--veth--> rin0 198.18.1.2/24   PREFIX-rly
                                              rout0 198.18.2.1/24 <--veth--> rcv0 198.18.2.2/24  PREFIX-rcv

Only 198.18.0.0/15 addresses; groups come from 239.0.0.0/8 (see streams.py).

The IPv6 lab (`Lab(prefix, "ipv6")`) has the same shape and the same IPv4 addresses, plus

    snd0 (no IPv6)          rin0 2001:db8:1::2/64   rout0 2001:db8:2::1/64          rcv0 2001:db8:2::2/64

all added `nodad`. The sender namespace keeps IPv6 disabled: the generator writes whole frames
(source 2001:db8:1::1) through AF_PACKET and needs no stack, and an IPv6 stack there would send
router solicitations, DAD probes and MLD reports out of snd0, which the harness's check "snd0
transmitted exactly the generator's frames" rightly refuses. The relay and receiver namespaces
keep the kernel's IPv6 defaults (the receiver's stack then handles what arrives as the IPv4 lab's
does). Their automatic link-local addresses still do DAD (~1.1 s, `nodad` only covers the global
ones): up() waits until no address is tentative. The ICMPv6 the relay namespace's stack sends on
its own (router solicitations, neighbour solicitations, MLD reports) reaches rcv0; the counter
classifies it as ICMPv6 and the harness leaves it out of the null check (it is never UDP). Every process the
harness starts is registered here and ended by pid on close(), which also deletes the namespaces;
close() runs from a finally block and from the SIGINT/SIGTERM handlers in main.py.
"""
from __future__ import annotations

import re
import subprocess
import time

from .errors import HarnessError
from .system import run

SND_ADDR, RIN_ADDR, ROUT_ADDR, RCV_ADDR = "198.18.1.1", "198.18.1.2", "198.18.2.1", "198.18.2.2"
SND6_ADDR, RIN6_ADDR, ROUT6_ADDR, RCV6_ADDR = "2001:db8:1::1", "2001:db8:1::2", "2001:db8:2::1", "2001:db8:2::2"


def out_addr(i: int) -> str:
    """The relay's address on output link i (rout0 is ROUT_ADDR)."""
    return f"198.18.{2 + i}.1"


def rcv_addr(i: int) -> str:
    return f"198.18.{2 + i}.2"


def addresses(family: str) -> dict[str, str]:
    """The generator's source and the relay's output address of one family."""
    if family == "ipv6":
        return {"snd": SND6_ADDR, "rin": RIN6_ADDR, "rout": ROUT6_ADDR, "rcv": RCV6_ADDR}
    return {"snd": SND_ADDR, "rin": RIN_ADDR, "rout": ROUT_ADDR, "rcv": RCV_ADDR}


class Lab:
    def __init__(self, prefix: str, family: str = "ipv4", outputs: int = 1):
        if not 1 <= outputs <= 16 or (outputs > 1 and family != "ipv4"):
            raise HarnessError(f"a lab has 1...16 output links (more than one: IPv4 only), asked {outputs} ({family})")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,11}", prefix):
            raise HarnessError(f"lab prefix must be 1-11 of [A-Za-z0-9_-], got {prefix!r}")
        self.prefix = prefix
        self.family = family
        self.snd, self.rly, self.rcv = f"{prefix}-snd", f"{prefix}-rly", f"{prefix}-rcv"
        # output link i: rout{i} 198.18.{2+i}.1/24 (relay) <-> rcv{i} 198.18.{2+i}.2/24 (receiver)
        self.outputs = outputs
        self.out_devs = [f"rout{i}" for i in range(outputs)]
        self.rcv_devs = [f"rcv{i}" for i in range(outputs)]
        self.processes: list[subprocess.Popen] = []
        # every process of the benchmark (generator, counter, relays alike) runs at this nice
        # level, so that builds sharing the machine disturb the measurement less
        self.nice = 0

    # -- lifecycle -------------------------------------------------------------------------
    def up(self) -> None:
        self.down()  # a previous run killed with SIGKILL may have left the same names behind
        for ns in (self.snd, self.rly, self.rcv):
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            if self.family == "ipv4" or ns == self.snd:
                # no IPv6: no router solicitations or MLD reports in the counters (IPv6 lab: the
                # sender only, see the module comment)
                run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                     "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
        run(["ip", "-n", self.snd, "link", "add", "snd0", "type", "veth", "peer", "name", "rin0", "netns", self.rly])
        links = [(self.snd, "snd0", SND_ADDR), (self.rly, "rin0", RIN_ADDR)]
        for i, (rout, rcv) in enumerate(zip(self.out_devs, self.rcv_devs)):
            run(["ip", "-n", self.rly, "link", "add", rout, "type", "veth", "peer", "name", rcv, "netns", self.rcv])
            links += [(self.rly, rout, out_addr(i)), (self.rcv, rcv, rcv_addr(i))]
        for ns, dev, addr in links:
            run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev])
            if self.family == "ipv6" and ns != self.snd:
                addr6 = {"rin0": RIN6_ADDR, "rout0": ROUT6_ADDR, "rcv0": RCV6_ADDR}[dev]
                run(["ip", "-n", ns, "addr", "add", f"{addr6}/64", "dev", dev, "nodad"])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        run(["ip", "-n", self.snd, "route", "add", "239.0.0.0/8", "dev", "snd0"])
        # socat sends to groups through rout0 (it also sets IP_MULTICAST_IF; the route is a backstop)
        run(["ip", "-n", self.rly, "route", "add", "239.0.0.0/8", "dev", "rout0"])
        # veth carriers come up a moment after `link set up`; frames sent earlier are lost
        deadline = time.monotonic() + 3
        for ns, dev, _ in links:
            while run(["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{dev}/operstate"]).stdout.strip() != "up":
                if time.monotonic() > deadline:
                    raise HarnessError(f"lab link {ns}/{dev} did not come up")
                time.sleep(0.05)
        if self.family == "ipv6":
            # the automatic link-local addresses do DAD (~1.1 s) even though the global ones are nodad
            deadline = time.monotonic() + 5
            for ns in (self.rly, self.rcv):
                while run(["ip", "-n", ns, "-6", "addr", "show", "tentative"]).stdout.strip():
                    if time.monotonic() > deadline:
                        raise HarnessError(f"IPv6 addresses in {ns} still tentative after 5 s")
                    time.sleep(0.1)

    def down(self) -> None:
        for p in reversed(self.processes):
            stop_process(p)
        self.processes.clear()
        existing = run(["ip", "netns", "list"], check=False).stdout.split()
        for ns in (self.snd, self.rly, self.rcv):
            if ns in existing:
                # processes left inside (a relay's workers): end them by pid before deleting
                for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
                    run(["kill", "-9", pid], check=False)
                run(["ip", "netns", "del", ns], check=False)

    # -- processes -------------------------------------------------------------------------
    def spawn(self, ns: str, args: list[str], cpu: int | None = None, **kwargs) -> subprocess.Popen:
        """Starts a process inside a namespace, optionally pinned to one CPU (ip netns exec, nice
        and taskset all exec, so the pid is the program's)."""
        niced = ["nice", "-n", str(self.nice)] if self.nice else []
        pinned = ["taskset", "-c", str(cpu)] if cpu is not None else []
        p = subprocess.Popen(["ip", "netns", "exec", ns, *niced, *pinned, *args], **kwargs)
        self.processes.append(p)
        return p

    def forget(self, p: subprocess.Popen) -> None:
        if p in self.processes:
            self.processes.remove(p)

    def steer_receive(self, ns: str, dev: str, cpu: int) -> None:
        """RPS: the link's receive processing (softirq) runs on `cpu`, whoever transmitted into it."""
        run(["ip", "netns", "exec", ns, "sh", "-c", f"echo {1 << cpu:x} > /sys/class/net/{dev}/queues/rx-0/rps_cpus"])

    def mac(self, ns: str, dev: str) -> str:
        return run(["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{dev}/address"]).stdout.strip()


def stop_process(p: subprocess.Popen, grace: float = 2.0) -> None:
    if p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=grace)
