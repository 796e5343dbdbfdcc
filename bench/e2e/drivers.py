"""Relay drivers: each relay under test behind the same start/stop/cpu interface.

A driver starts its relay in the lab's relay namespace for a list of streams, says where each
stream leaves (group, port) so the counter knows what to expect, reports which processes' CPU
time is the relay's, and stops everything it started. To add a relay, subclass RelayDriver and
list it in DRIVERS.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from .errors import HarnessError
from .lab import ROUT_ADDR, SND6_ADDR, SND_ADDR, Lab, stop_process
from .streams import Stream, endpoint
from .system import ns_pids, run, wait_until


class RelayDriver:
    name = "?"
    title = "?"
    # "process": utime+stime of the relay's processes is its cost; "softirq": the kernel forwards
    # in softirq context, so /proc/stat softirq time is the cost (there is no relay process)
    cpu_kind = "process"

    def __init__(self, lab: Lab, workdir: Path, cpu: int | None = None):
        self.lab = lab
        self.workdir = workdir
        self.cpu = cpu  # pin the relay's processes here (the lab steers rin0's softirq here too)
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def available(self) -> tuple[bool, str]:
        return True, ""

    def out_key(self, s: Stream) -> tuple[str, int]:
        return (s.out_group, s.out_port)

    def start(self, streams: list[Stream]) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        """Every process in the relay namespace (supervisor and workers alike)."""
        return ns_pids(self.lab.rly)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def extra_stats(self) -> dict:
        return {}

    def stop(self) -> None:
        for p in self.procs:
            stop_process(p)
            self.lab.forget(p)
        self.procs.clear()
        # anything the relay forked and left behind in its namespace, by pid
        for pid in ns_pids(self.lab.rly):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    def describe(self) -> str:
        return self.title

    def log_tail(self, chars: int = 1500) -> str:
        text = ""
        for path in self.logs:
            if path.exists():
                text += f"--- {path.name}\n" + path.read_text(errors="replace")[-chars:]
        return text

    def _spawn(self, args: list[str], log_name: str | None, env: dict | None = None) -> subprocess.Popen:
        """Starts one relay process in the relay namespace, pinned and niced like every relay;
        its output goes to LOG_NAME in the work folder (None: discarded)."""
        if log_name is None:
            p = self.lab.spawn(self.lab.rly, args, cpu=self.cpu, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
        else:
            log = self.workdir / log_name
            self.logs.append(log)
            with open(log, "w") as f:
                p = self.lab.spawn(self.lab.rly, args, cpu=self.cpu, stdout=f, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env)
        self.procs.append(p)
        return p


def joined_groups(ns: str, dev: str) -> set[str]:
    """IPv4 and IPv6 groups joined on the device (`ip maddr` prints both canonically)."""
    out = run(["ip", "-n", ns, "maddr", "show", "dev", dev]).stdout
    return {line.split()[1] for line in out.splitlines() if line.strip().startswith(("inet ", "inet6 "))}


class SocatDriver(RelayDriver):
    name = "socat"
    title = "socat 1.7 (one process per stream, UDP in, UDP out)"

    def start(self, streams: list[Stream]) -> None:
        self.logs = []
        for s in streams:
            if s.family == "ipv6":
                # socat 1.7.4 has ipv6-join-group but no IPV6_MULTICAST_IF/HOPS/LOOP options (its
                # ip-multicast-* set the IPv4 options, which an IPv6 send ignores): the output
                # interface comes from SO_BINDTODEVICE (`so-bindtodevice`), the hop limit stays the
                # socket default for multicast, 1 (the receiver is on the link), and loopback does
                # not matter (nothing in the relay namespace listens on the output groups)
                src = (f"UDP6-RECV:{s.in_port},bind=[{s.in_group}],ipv6-join-group=[{s.in_group}]:rin0,"
                       "reuseaddr")
                dst = f"UDP6-SENDTO:{endpoint(s.out_group, s.out_port)},so-bindtodevice=rout0"
            else:
                # bind to the group (not INADDR_ANY) so a socket only gets its own group's frames
                src = f"UDP4-RECV:{s.in_port},bind={s.in_group},ip-add-membership={s.in_group}:rin0,reuseaddr"
                dst = (f"UDP4-SENDTO:{s.out_group}:{s.out_port},ip-multicast-if={ROUT_ADDR},"
                       "ip-multicast-ttl=16,ip-multicast-loop=0")
            # keep the first three logs, not one per stream
            self._spawn(["socat", "-u", src, dst], f"socat-{s.index}.log" if s.index < 3 else None)
        want = {s.in_group for s in streams}

        def ready():
            if not self.alive():
                raise HarnessError("a socat exited at start:\n" + self.log_tail())
            return want <= joined_groups(self.lab.rly, "rin0")
        wait_until(ready, 15, f"{len(streams)} socat processes to join their groups on rin0")


class KernelDriver(RelayDriver):
    name = "kernel"
    title = "Linux multicast forwarding (smcroute static (S,G) routes)"
    cpu_kind = "softirq"
    family = "ipv4"

    def out_key(self, s: Stream) -> tuple[str, int]:
        return (s.in_group, s.in_port)  # the kernel forwards unchanged

    def start(self, streams: list[Stream]) -> None:
        self.logs = []
        conf = self.workdir / "smcroute.conf"
        # (S,G) routes are installed at start; (*,G) ones only on the first packet's upcall,
        # which would lose the first frames of every trial's first burst
        # IPv6: the same line with IPv6 addresses (smcroute.conf(5)); smcrouted then opens the
        # kernel's IPv6 multicast routing (MRT6_INIT, one MIF per interface), which is what turns
        # net.ipv6.conf.{all,rin0,rout0}.mc_forwarding on (read-only sysctls the kernel sets itself;
        # start() records them). net.ipv6.conf.*.forwarding stays 0: multicast forwarding does not need it.
        self.family = streams[0].family if streams else "ipv4"
        source = SND6_ADDR if self.family == "ipv6" else SND_ADDR
        conf.write_text("".join(f"mroute from rin0 source {source} group {s.in_group} to rout0\n" for s in streams))
        self._spawn(["smcrouted", "-n", "-f", str(conf), "-u", str(self.workdir / "smcroute.sock"),
                     "-P", str(self.workdir / "smcroute.pid"), "-l", "notice"], "smcroute.log")

        def ready():
            if not self.alive():
                raise HarnessError("smcrouted exited at start:\n" + self.log_tail())
            return self.mfc_entries() >= len(streams)
        wait_until(ready, 15, f"smcrouted to install {len(streams)} kernel multicast routes")
        self.sysctls = self.forwarding_sysctls()
        if self.family == "ipv6" and self.sysctls.get("net.ipv6.conf.all.mc_forwarding") != "1":
            raise HarnessError(f"smcrouted runs but IPv6 mc_forwarding is not on: {self.sysctls}")

    def _proc(self, name: str) -> str:
        # IPv4: /proc/net/ip_mr_cache, ip_mr_vif; IPv6: ip6_mr_cache, ip6_mr_vif
        return f"/proc/net/{'ip6' if self.family == 'ipv6' else 'ip'}_mr_{name}"

    def mfc_entries(self) -> int:
        out = run(["ip", "netns", "exec", self.lab.rly, "cat", self._proc("cache")]).stdout
        return max(0, len(out.strip().splitlines()) - 1)

    def forwarding_sysctls(self) -> dict:
        """The forwarding switches as the kernel shows them while smcrouted runs (none set by the harness)."""
        if self.family == "ipv6":
            names = [f"net.ipv6.conf.{d}.{k}" for d in ("all", "rin0", "rout0") for k in ("mc_forwarding", "forwarding")]
        else:
            names = ["net.ipv4.conf.all.mc_forwarding", "net.ipv4.conf.rin0.mc_forwarding",
                     "net.ipv4.conf.rout0.mc_forwarding", "net.ipv4.ip_forward"]
        done = run(["ip", "netns", "exec", self.lab.rly, "sysctl", *names], check=False).stdout
        return dict(line.split(" = ", 1) for line in done.strip().splitlines() if " = " in line)

    def extra_stats(self) -> dict:
        vif = run(["ip", "netns", "exec", self.lab.rly, "cat", self._proc("vif")], check=False).stdout
        return {self._proc("vif").rsplit("/", 1)[1]: vif.strip().splitlines(), "sysctls": getattr(self, "sysctls", {})}


class McrelayDriver(RelayDriver):
    name = "mcrelay"
    title = "mcrelay daemon"

    # Relay rows of the mcrelay daemon: name -> (daemon flags, emulate a NIC without USO on rout0).
    # "mcrelay": the defaults (packet egress, one frame per datagram). "mcrelay-udp": the kernel's
    # UDP path; toward the veth `--segmentation auto` sends no GSO. "mcrelay-udp-on": `--segmentation
    # on`, GSO super-frames cross the veth whole (what the relay did before it decided per device):
    # the cost of not merging is mcrelay-udp against it. "mcrelay-udp-nic": rout0 with
    # tx-udp-segmentation off, as a NIC without USO, where auto keeps GSO and the kernel segments
    # before the device: the gain of GSO where it is kept is mcrelay-udp-nic against mcrelay-udp.
    VARIANTS = {
        "mcrelay": ([], False),
        "mcrelay-udp": (["--egress", "udp"], False),
        "mcrelay-udp-on": (["--egress", "udp", "--segmentation", "on"], False),
        "mcrelay-udp-nic": (["--egress", "udp"], True),
    }

    def __init__(self, lab: Lab, workdir: Path, cpu: int | None, binary: Path, workers: int | None,
                 variant: str = "mcrelay"):
        super().__init__(lab, workdir, cpu)
        self.binary = binary
        self.workers = workers
        self.control = workdir / "mcrelay.sock"
        self.flags, self.emulate_nic = self.VARIANTS[variant]
        self.name = variant
        if self.flags or self.emulate_nic:
            self.title = "mcrelay daemon (" + " ".join(self.flags) + \
                (", rout0 tx-udp-segmentation off: a NIC without USO, emulated" if self.emulate_nic else "") + ")"

    def available(self) -> tuple[bool, str]:
        if not self.binary.exists():
            return False, f"{self.binary} not built"
        done = subprocess.run([str(self.binary), "daemon", "--help"], capture_output=True, text=True,
                              env={**os.environ, "SWIFT_BACKTRACE": "enable=no"}, timeout=20)
        text = done.stdout + done.stderr
        if done.returncode != 0 or "--config" not in text or "--control" not in text:
            return False, f"`{self.binary} daemon --help` does not show a daemon (exit {done.returncode})"
        if "not yet" in text.lower() or "not implemented" in text.lower():
            return False, "`mcrelay daemon --help` says it is not implemented yet"
        return True, ""

    def describe(self) -> str:
        return f"mcrelay daemon ({self.binary}, workers={self.workers or 'default'}, flags={' '.join(self.flags) or 'none'}" + \
            (", rout0 emulates a NIC without USO (tx-udp-segmentation off)" if self.emulate_nic else "") + ")"

    def start(self, streams: list[Stream]) -> None:
        self.logs = []
        config = self.workdir / "mcrelay.json"
        # IPv6 endpoints bracketed: rin0:[ff3e::8000:1]:5001 -> rout0:[ff3e::10:1]:6001:16
        rules = [{"name": f"s{s.index}", "in": f"rin0:{endpoint(s.in_group, s.in_port)}",
                  "out": [f"rout0:{endpoint(s.out_group, s.out_port)}:16"]} for s in streams]
        config.write_text(json.dumps({"rules": rules}, indent=1, sort_keys=True) + "\n")
        if self.control.exists():
            self.control.unlink()
        args = [str(self.binary), "daemon", "--config", str(config), "--control", str(self.control)]
        if self.workers:
            args += ["--workers", str(self.workers)]
        args += self.flags
        if self.emulate_nic:
            run(["ip", "netns", "exec", self.lab.rly, "ethtool", "-K", "rout0", "tx-udp-segmentation", "off"])
        self._spawn(args, "mcrelay.log", env={**os.environ, "SWIFT_BACKTRACE": "enable=no"})

        def ready():
            if not self.alive():
                raise HarnessError("mcrelay daemon exited at start:\n" + self.log_tail())
            return self.stats() is not None
        wait_until(ready, 20, "mcrelay to answer `stats` on its control socket", interval=0.2)
        time.sleep(0.5)  # workers bind their rings after the supervisor answers

    def stats(self) -> dict | None:
        done = subprocess.run([str(self.binary), "stats", "--json", "--control", str(self.control)],
                              capture_output=True, text=True, timeout=10,
                              env={**os.environ, "SWIFT_BACKTRACE": "enable=no"})
        if done.returncode != 0:
            return None
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError:
            return {"unparsed": done.stdout[-2000:]}

    def extra_stats(self) -> dict:
        return {"stats": self.stats()}

    def stop(self) -> None:
        super().stop()
        if self.emulate_nic:
            run(["ip", "netns", "exec", self.lab.rly, "ethtool", "-K", "rout0", "tx-udp-segmentation", "on"])


class NoRelay(RelayDriver):
    """Nothing in the relay namespace: proves nothing reaches the receiver without a relay."""
    name = "none"
    title = "no relay"

    def start(self, streams: list[Stream]) -> None:
        pass
