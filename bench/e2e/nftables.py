"""`kernel-nft`: the kernel forwarding the relay's streams itself, with nftables at rin0's ingress.

Why this row exists: the `kernel` row (smcroute driving the kernel's multicast routing, ipmr) is
issue #14's reference, but a kernel built without CONFIG_IP_MROUTE/CONFIG_IPV6_MROUTE has no
multicast routing at all (seen here: 6.18.44-fc-v1252), so that row cannot run and no figure of
the XDP path has the kernel's beside it in the same run. nftables' netdev family needs no
multicast routing: a chain on rin0's ingress hook matches each stream's (group, port), rewrites
the frame as mcrelay does (group, port, TTL 16, the group's MAC, each output's own source MAC) and
hands it to each output device itself (`dup to` for every output but the last, `fwd to` the last).
That is the kernel's own in-path forwarding, done where the XDP path works (before the IP stack),
with no user space: no route lookup, no netfilter forward hooks, no neighbour step, unlike ipmr's
route through ip_rcv, ip_mr_input and ip_output. It is not the same reference as `kernel`: the
report's CPU ratios stay against `kernel`, and this row's CPU figures are not yet trusted
(bench/README.md).

It runs where the kernel row runs: in rin0's receive softirq, steered to the relay core by RPS
(the lab's setting for every relay), so its cost is that core's busy time like every row's
(`cpu_kind` softirq: there is no relay process). It changes no link or kernel setting. Every
trial is checked with the rule counters: the stream chains must have taken at least as many
frames as the busiest output received, or the trial is NotCarried (INVALID).
"""
from __future__ import annotations

import ipaddress
import json
import shutil

from .drivers import RelayDriver
from .errors import HarnessError, NotCarried
from .streams import Stream
from .system import run

TABLE = "mcbench"


def group_mac(group: str) -> str:
    """The Ethernet address a group's frames go to (RFC 1112 §6.4; RFC 2464 §7)."""
    addr = ipaddress.ip_address(group)
    if addr.version == 4:
        low = int(addr) & 0x7FFFFF
        octets = [0x01, 0x00, 0x5E, low >> 16, (low >> 8) & 0xFF, low & 0xFF]
    else:
        octets = [0x33, 0x33, *addr.packed[12:]]
    return ":".join(f"{o:02x}" for o in octets)


class KernelNftDriver(RelayDriver):
    name = "kernel-nft"
    title = ("Linux forwarding with nftables at rin0's ingress (netdev family: match (group, port), rewrite as "
             "mcrelay does, dup/fwd to each output; no multicast routing needed)")
    cpu_kind = "softirq"

    def available(self) -> tuple[bool, str]:
        if not shutil.which("nft"):
            return False, "nft not installed (make deps installs nftables)"
        done = run(["ip", "netns", "exec", self.lab.rly, "nft", "list", "tables"], check=False)
        if done.returncode != 0:
            return False, f"nftables does not answer in the relay namespace: {done.stderr.strip()}"
        return True, ""

    def ruleset(self, streams: list[Stream]) -> str:
        """One chain per stream; the base chain on rin0's ingress jumps to it through one verdict
        map keyed by (group, port), so 100 streams cost one lookup, as mcrelay's rule table does."""
        macs = {dev: self.lab.mac(self.lab.rly, dev) for dev in self.lab.out_devs}
        ip, ttl = ("ip6", "ip6 hoplimit") if streams[0].family == "ipv6" else ("ip", "ip ttl")
        chains, elements = [], []
        for s in streams:
            # the fields every copy shares are written once, before the first copy leaves; a
            # copy's source MAC is written just before it goes (dup clones the frame as it is then)
            steps = [f"counter ether daddr set {group_mac(s.out_group)} {ip} daddr set {s.out_group} "
                     f"udp dport set {s.out_port} {ttl} set 16"]
            for i, dev in enumerate(self.lab.out_devs):
                last = i == len(self.lab.out_devs) - 1
                steps.append(f"ether saddr set {macs[dev]} {'fwd' if last else 'dup'} to \"{dev}\"")
            chains.append(f"  chain s{s.index} {{\n    {' '.join(steps)}\n  }}\n")
            elements.append(f"{s.in_group} . {s.in_port} : jump s{s.index}")
        return (f"table netdev {TABLE} {{\n" + "".join(chains) +
                "  chain rin0 {\n    type filter hook ingress device \"rin0\" priority 0; policy accept;\n"
                f"    {ip} daddr . udp dport vmap {{ {', '.join(elements)} }}\n  }}\n}}\n")

    def start(self, streams: list[Stream]) -> None:
        self.logs = []
        self.delete_table()
        path = self.workdir / "kernel-nft.nft"
        path.write_text(self.ruleset(streams))
        done = run(["ip", "netns", "exec", self.lab.rly, "nft", "-f", str(path)], check=False)
        if done.returncode != 0:
            raise HarnessError(f"nft -f {path} failed: {done.stderr.strip()}")
        self.chains = len(streams)
        if len(self.counters()) != len(streams):
            raise HarnessError(f"nft loaded {len(self.counters())} stream chains for {len(streams)} streams")

    def counters(self) -> dict[str, int]:
        """Frames each stream chain took, by chain name."""
        out = run(["ip", "netns", "exec", self.lab.rly, "nft", "-j", "list", "table", "netdev", TABLE]).stdout
        found: dict[str, int] = {}
        for item in json.loads(out).get("nftables", []):
            rule = item.get("rule")
            if not rule:
                continue
            for expr in rule.get("expr", []):
                if "counter" in expr and rule["chain"].startswith("s"):
                    found[rule["chain"]] = expr["counter"]["packets"]
        return found

    def trial_begin(self):
        return sum(self.counters().values())

    def trial_end(self, mark, received: int, most_per_output: int) -> dict:
        taken = sum(self.counters().values()) - mark
        if taken < most_per_output:
            raise NotCarried(f"the nftables stream chains took {taken} frames but {most_per_output} arrived on one "
                             "output: something else carried them")
        return {"nft_chain_frames": taken}

    def delete_table(self) -> None:
        run(["ip", "netns", "exec", self.lab.rly, "nft", "delete", "table", "netdev", TABLE], check=False)

    def stop(self) -> None:
        self.delete_table()
        super().stop()

    def describe(self) -> str:
        return self.title
