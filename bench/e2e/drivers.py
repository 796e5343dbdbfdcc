"""Relay drivers: each relay under test behind the same start/stop/cpu interface.

A driver starts its relay in the lab's relay namespace for a list of streams, says where each
stream leaves (group, port) so the counter knows what to expect, reports which processes' CPU
time is the relay's, and stops everything it started. To add a relay, subclass RelayDriver and
list it in DRIVERS.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from .errors import HarnessError, NotCarried
from .lab import ROUT_ADDR, SND6_ADDR, SND_ADDR, Lab, stop_process
from .streams import Stream, endpoint
from .system import link_stats, ns_pids, run, wait_until


class RelayDriver:
    name = "?"
    title = "?"
    # "process": utime+stime of the relay's processes is its cost; "softirq": the kernel forwards
    # in softirq context, so /proc/stat softirq time is the cost (there is no relay process)
    cpu_kind = "process"
    # link or kernel settings the row changes (shown beside its figures; "" = none)
    settings = ""

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

    def out_keys(self, s: Stream) -> list[tuple[str, tuple[str, int]]]:
        """Where each copy of the stream leaves: (receiving link, (group, port)), one per output
        link of the lab (the fan-out lab has several; every relay sends the stream to each)."""
        return [(rcv, self.out_key(s)) for rcv in self.lab.rcv_devs]

    def start(self, streams: list[Stream]) -> None:
        raise NotImplementedError

    def kthread_pids(self) -> list[int]:
        """Kernel threads doing this relay's work (their CPU is the relay's); none by default."""
        return []

    def trial_begin(self):
        """A mark taken just before the generator starts (trial_end gets it back)."""
        return None

    def trial_end(self, mark, received: int, most_per_output: int) -> dict:
        """Called after a trial is counted: what the driver saw of it (recorded with the trial).
        May raise NotCarried when the relay did not do the work the row claims."""
        return {}

    def pids(self) -> list[int]:
        """Every process in the relay namespace (supervisor and workers alike), and the kernel
        threads counted as the relay's."""
        return ns_pids(self.lab.rly) + self.kthread_pids()

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

    def available(self) -> tuple[bool, str]:
        # a kernel built without CONFIG_IP_MROUTE / CONFIG_IPV6_MROUTE has no multicast routing at
        # all (seen here: 6.18.44-fc-v1252): say so instead of failing on its missing /proc files
        missing = [f for f in ("/proc/net/ip_mr_cache", "/proc/net/ip6_mr_cache") if not os.path.exists(f)]
        if missing:
            return False, (f"this kernel ({os.uname().release}) has no multicast routing "
                           f"({', '.join(missing)} missing: CONFIG_IP_MROUTE/CONFIG_IPV6_MROUTE not set)")
        if not shutil.which("smcrouted"):
            return False, "smcrouted not installed (make deps)"
        return True, ""

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
        outs = " ".join(self.lab.out_devs)
        conf.write_text("".join(f"mroute from rin0 source {source} group {s.in_group} to {outs}\n" for s in streams))
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
        # the receive work as the kernel has it (softirq, steered to the relay core by RPS): the
        # packet path before --input-napi threaded became the default (receive livelock)
        "mcrelay-softirq": (["--input-napi", "kernel"], False),
        # the defaults, with the generator's veth end snd0 without TSO, so that rin0 takes every
        # frame through its NAPI as a NIC does (a veth sends a socket's frames from a TSO device
        # past its NAPI: InputNAPIThreads.vethCaveat) and the daemon's receive thread does the work
        "mcrelay-napi": ([], False),
    }
    # variants whose lab takes rin0's frames through rin0's NAPI (snd0 tso off)
    NAPI_RECEIVE = {"mcrelay-napi"}

    def __init__(self, lab: Lab, workdir: Path, cpu: int | None, binary: Path, workers: int | None,
                 variant: str = "mcrelay", input_napi_nice: int | None = None):
        super().__init__(lab, workdir, cpu)
        # the daemon's --input-napi-nice (None: its default); the rows' settings say which
        self.input_napi_nice = DAEMON_INPUT_NAPI_NICE if input_napi_nice is None else input_napi_nice
        self.binary = binary
        self.workers = workers
        self.control = workdir / "mcrelay.sock"
        self.flags, self.emulate_nic = self.VARIANTS[variant]
        self.napi_receive = variant in self.NAPI_RECEIVE
        self.name = variant
        if self.flags or self.emulate_nic:
            self.title = "mcrelay daemon (" + " ".join(self.flags) + \
                (", rout0 tx-udp-segmentation off: a NIC without USO, emulated" if self.emulate_nic else "") + ")"
        if self.napi_receive:
            self.title = "mcrelay daemon (defaults; lab: snd0 tso off, so rin0 receives through its NAPI as a NIC does)"
        # known before the first row is written (main copies it into each row before start)
        self.settings = self.receive_settings()

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
        # one output per output link of the lab (the fan-out lab has several)
        rules = [{"name": f"s{s.index}", "in": f"rin0:{endpoint(s.in_group, s.in_port)}",
                  "out": [f"{dev}:{endpoint(s.out_group, s.out_port)}:16" for dev in self.lab.out_devs]}
                 for s in streams]
        config.write_text(json.dumps({"rules": rules}, indent=1, sort_keys=True) + "\n")
        if self.control.exists():
            self.control.unlink()
        args = [str(self.binary), "daemon", "--config", str(config), "--control", str(self.control)]
        if self.workers:
            args += ["--workers", str(self.workers)]
        args += self.flags
        if self.input_napi_nice != DAEMON_INPUT_NAPI_NICE:
            args += ["--input-napi-nice", str(self.input_napi_nice)]
        if self.emulate_nic:
            run(["ip", "netns", "exec", self.lab.rly, "ethtool", "-K", "rout0", "tx-udp-segmentation", "off"])
        if self.napi_receive:
            run(["ip", "netns", "exec", self.lab.snd, "ethtool", "-K", "snd0", "tso", "off"])
        before = napi_threads("napi/rin0-")
        self._spawn(args, "mcrelay.log", env={**os.environ, "SWIFT_BACKTRACE": "enable=no"})

        def ready():
            if not self.alive():
                raise HarnessError("mcrelay daemon exited at start:\n" + self.log_tail())
            return self.stats() is not None
        wait_until(ready, 20, "mcrelay to answer `stats` on its control socket", interval=0.2)
        time.sleep(0.5)  # workers bind their rings after the supervisor answers
        if self.input_napi_threaded():
            self._place_receive_thread(before)

    # -- the packet path's threaded receive (the daemon's --input-napi threaded, its default) ----
    input_threads: list[int] = []

    def input_napi_threaded(self) -> bool:
        """Whether this row's daemon makes rin0's receive work threaded (the packet path's default)."""
        return "--data-path" not in self.flags and "--input-napi" not in self.flags

    def _place_receive_thread(self, before: set[int]) -> None:
        """The daemon made rin0's NAPI threaded (napi/rin0-N). Like every relay's receive work it
        goes on the relay's core: pinned there. Its nice value is the daemon's own choice
        (--input-napi-nice, 19: InputNAPIThreadPriority), checked, not changed; until 2026-12-07
        the harness set it to its --nice + 10 (-10), under which the thread outweighed the
        daemon's session and the row collapsed (BENCHMARKS.md, "Receive work yields to the workers").

        rin0's RPS stays as the lab sets it for every row (the relay core). Until 2026-12-06 the
        harness turned it off for this row, on the belief that the thread did the receive work.
        On this lab it does none: veth passes a frame through its NAPI only when an XDP program
        is attached, the sender has no TSO, or (a socket's frame) the receiver has
        rx-udp-gro-forwarding or rx-gro-list on (drivers/net/veth.c,
        veth_skb_is_eligible_for_gro). None holds for the generator's frames into rin0, so they
        take netif_rx and the backlog of whichever CPU RPS names; with RPS off, that was the
        generator's CPU, which left the row's receive work off the relay core (its napi thread
        had no samples in perf, its kthread time read 0, and the softirq time was on the other CPU:
        BENCHMARKS.md, "The packet path's receive work on veth")."""
        threaded = run(["ip", "netns", "exec", self.lab.rly, "cat", "/sys/class/net/rin0/threaded"], check=False).stdout.strip()
        if threaded != "1":
            raise HarnessError(f"mcrelay (--input-napi threaded) left /sys/class/net/rin0/threaded at {threaded!r}:\n" + self.log_tail())
        self.input_threads = place_new_napi_thread(before, self.cpu, None)
        for pid in self.input_threads:
            nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
            if nice != self.input_napi_nice:
                raise HarnessError(f"mcrelay left its receive thread napi/rin0 (pid {pid}) at nice {nice}, "
                                   f"not {self.input_napi_nice} (--input-napi-nice):\n" + self.log_tail())
        self.settings = self.receive_settings()

    def receive_settings(self) -> str:
        if not self.input_napi_threaded():
            return ""
        nice = ("" if self.input_napi_nice == DAEMON_INPUT_NAPI_NICE
                else f", --input-napi-nice {self.input_napi_nice} (not the default)")
        common = (f"rin0 threaded NAPI and GRO on, its thread at nice {self.input_napi_nice} (set by the daemon: "
                  f"--input-napi threaded, its default{nice}); the harness pins napi/rin0 to CPU {self.cpu}; ")
        if self.napi_receive:
            return common + ("lab: snd0 tso off, so that rin0 takes every frame through its NAPI, into that thread, "
                             "as a NIC's frames go")
        return common + (f"rin0's RPS to CPU {self.cpu} as for every row (on veth the generator's frames bypass rin0's "
                         "NAPI: received in the backlog RPS names, in softirq)")

    def kthread_pids(self) -> list[int]:
        return list(self.input_threads)

    def rin0_receive_counts(self) -> tuple[int, int]:
        """(frames rin0 received, frames its NAPI took): veth's rx_queue_0_xdp_packets counts every
        frame its NAPI polls from the ring, with or without an XDP program (checked here: 0 of 26
        socket datagrams from a sender with TSO, 21 of 21 without)."""
        stats = run(["ip", "netns", "exec", self.lab.rly, "ethtool", "-S", "rin0"]).stdout
        napi = sum(int(line.split(":")[1]) for line in stats.splitlines() if line.strip().startswith("rx_queue_") and "_xdp_packets:" in line)
        return link_stats(self.lab.rly)["rin0"]["rx_packets"], napi

    def trial_begin(self):
        return self.rin0_receive_counts() if self.napi_receive else None

    def trial_end(self, mark, received: int, most_per_output: int) -> dict:
        """mcrelay-napi: every frame rin0 received went through its NAPI (the row's claim)."""
        if not self.napi_receive or mark is None:
            return {}
        (rx0, napi0), (rx1, napi1) = mark, self.rin0_receive_counts()
        seen = {"rin0_rx": rx1 - rx0, "rin0_napi": napi1 - napi0}
        if seen["rin0_napi"] < seen["rin0_rx"]:
            raise NotCarried(f"rin0 received {seen['rin0_rx']} frames but its NAPI took {seen['rin0_napi']}: "
                             "the row claims every frame through the receive thread")
        return seen

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
        extra = {"stats": self.stats()}
        if self.input_threads:
            extra.update(settings=self.receive_settings(), napi_kthreads=self.kthread_pids())
        return extra

    def stop(self) -> None:
        super().stop()
        self.input_threads = []
        if self.napi_receive:
            run(["ip", "netns", "exec", self.lab.snd, "ethtool", "-K", "snd0", "tso", "on"])
        if self.emulate_nic:
            run(["ip", "netns", "exec", self.lab.rly, "ethtool", "-K", "rout0", "tx-udp-segmentation", "on"])


class NoRelay(RelayDriver):
    """Nothing in the relay namespace: proves nothing reaches the receiver without a relay."""
    name = "none"
    title = "no relay"

    def start(self, streams: list[Stream]) -> None:
        pass


# the daemon's --input-napi-nice default (Sources/LinuxIO/Supervisor/InputNAPIThreadPriority.swift)
DAEMON_INPUT_NAPI_NICE = 19


def place_new_napi_thread(before: set[int], cpu: int | None, nice: int | None) -> list[int]:
    """The one napi/rin0-N kernel thread that appeared since `before` (the lab's rin0 has one
    queue), pinned to `cpu` and reniced to `nice` where given; its pid, as a list."""
    mine = wait_until(lambda: napi_threads("napi/rin0-") - before, 5, "rin0's threaded-NAPI kernel thread (napi/rin0-N) to appear")
    if len(mine) != 1:
        raise HarnessError(f"expected one new napi/rin0-N thread for the lab's rin0 (one queue), found {sorted(mine)}")
    for pid in mine:
        if cpu is not None:
            run(["taskset", "-p", "-c", str(cpu), str(pid)])
        if nice is not None:
            run(["renice", "-n", str(nice), "-p", str(pid)])
    return sorted(mine)


def napi_threads(name_prefix: str) -> set[int]:
    """Pids of the kernel's threaded-NAPI threads named `napi/DEV-ID` (global: any namespace)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip().startswith(name_prefix):
                    found.add(int(entry))
        except OSError:
            continue
    return found


def signalled_counters(driver: RelayDriver, program: str) -> dict:
    """The counters of a C experiment (afxdp_relay, tpacket_relay) as of now: SIGUSR1, then its
    next write of `driver.stats_file` (a JSON object with a rising "seq")."""
    def read() -> dict | None:
        try:
            return json.loads(driver.stats_file.read_text())
        except (OSError, json.JSONDecodeError):
            return None
    if not driver.alive():
        raise NotCarried(f"{program} exited:\n" + driver.log_tail())
    old = read()
    seq = old.get("seq", -1) if old else -1
    os.kill(driver.procs[0].pid, signal.SIGUSR1)
    return wait_until(lambda: (lambda c: c if c and c.get("seq", -1) > seq else None)(read()), 3,
                      f"{program} to write its counters (SIGUSR1)", interval=0.02)


class Rin0XDP:
    """What the rows with their own XDP program on rin0 share (mcrelay-xdp, afxdp-c): rin0's
    program and mode as iproute2 reports it, its veth redirect counter, and threaded NAPI on rin0
    so that native XDP runs on the relay's core (see McrelayXDPDriver). `threaded` goes back to 0
    while the program still holds rin0's NAPI: written after the detach (no NAPI), the kernel
    keeps it at 1 and the next attach would start a thread unpinned."""
    lab: Lab
    threaded_set = False

    def _rly_sh(self, script: str, check: bool = True):
        return run(["ip", "netns", "exec", self.lab.rly, "sh", "-c", script], check=check)

    def check_rin0_xdp(self, want: int, what: str) -> None:
        """NotCarried unless rin0 has an XDP program in iproute2's mode `want` (XDP_ATTACHED_DRV 1,
        SKB, i.e. generic, 2)."""
        link = json.loads(run(["ip", "-n", self.lab.rly, "-j", "-d", "link", "show", "rin0"]).stdout)[0]
        xdp = link.get("xdp") or {}
        if xdp.get("mode") != want:
            raise NotCarried(f"rin0 has XDP {xdp or 'none'}, want mode {want} ({what})")

    def rin0_redirects(self) -> int:
        """rin0's frames redirected by its XDP program (ethtool -S, every queue's xdp_redirect)."""
        out = run(["ip", "netns", "exec", self.lab.rly, "ethtool", "-S", "rin0"], check=False).stdout
        return sum(int(v) for name, _, v in (line.strip().partition(":") for line in out.splitlines())
                   if name.endswith("xdp_redirect"))

    def thread_rin0(self, before: set[int], cpu: int | None, nice: int | None) -> list[int]:
        """Threaded NAPI on rin0 (after the attach, when veth has created its NAPI) and the new
        napi/rin0-N kthread placed on `cpu` at `nice`: its pid, as a list."""
        self._rly_sh("echo 1 > /sys/class/net/rin0/threaded")
        self.threaded_set = True
        return place_new_napi_thread(before, cpu, nice)

    def unthread_rin0(self) -> None:
        if self.threaded_set:
            self._rly_sh("echo 0 > /sys/class/net/rin0/threaded", check=False)
            self.threaded_set = False

    def rin0_threaded_extra(self) -> dict:
        if not self.threaded_set:
            return {}
        return {"rin0_threaded": self._rly_sh("cat /sys/class/net/rin0/threaded", check=False).stdout.strip()}


class McrelayXDPDriver(Rin0XDP, McrelayDriver):
    """`mcrelay daemon --data-path xdp`, native (`mcrelay-xdp`) or generic (`mcrelay-xdp-generic`).

    Native XDP on a veth runs where the veth's NAPI runs, which is the *sender's* CPU (softirq
    raised by the generator's transmit on CPU 0), not the relay's. To give it the relay's one core
    like every other relay's receive work, the driver turns on threaded NAPI for rin0
    (/sys/class/net/rin0/threaded = 1, after the daemon attached, which is when veth creates its
    NAPI) and pins the new `napi/rin0-N` kernel thread to the relay's CPU with taskset (nice level
    of the harness); that thread's utime+stime is the relay's (counted in its process CPU, and
    shown apart as kthread). A native redirect into a veth needs the peer (rcvN) to have GRO or an
    XDP program, so the native row sets `ethtool -K rcvN gro on` (receiver side) and restores it
    at stop; the row's `settings` says so wherever the figure appears. Generic mode changes no
    setting (its program runs after RPS, on the relay's core).

    Every trial is checked: the XDP program's own rule counter (read from the daemon's maps) must
    have accepted at least as many datagrams as the busiest output received, and its output
    counters at least as many copies as arrived; and before and after each row `mcrelay stats`
    must show every rule on path xdp and rin0 the program attached in the right mode. Otherwise
    NotCarried: the row is INVALID, never a packet-path figure under an XDP label.
    """
    MODES = {"mcrelay-xdp": "native", "mcrelay-xdp-generic": "generic"}

    def __init__(self, lab: Lab, workdir: Path, cpu: int | None, binary: Path, workers: int | None,
                 variant: str, xdp_object: Path, nice: int):
        self.mode = self.MODES[variant]
        self.xdp_object = xdp_object
        self.nice = nice
        super().__init__(lab, workdir, cpu, binary, workers)
        self.name = variant
        self.flags = ["--data-path", "xdp", "--xdp-object", str(xdp_object), "--xdp-mode", self.mode]
        self.kthreads: list[int] = []
        self.gro_restore: dict[str, str] = {}
        self.threaded_set = False
        self.settings = (f"{', '.join(lab.rcv_devs)} GRO on (receiver side, needed for redirects into a veth), "
                         f"rin0 threaded NAPI, its kthread pinned to CPU {cpu}") if self.mode == "native" else \
            "no setting changed (generic XDP runs after RPS)"
        self.title = f"mcrelay daemon (--data-path xdp --xdp-mode {self.mode}; {self.settings})"

    def available(self) -> tuple[bool, str]:
        ok, why = super().available()
        if not ok:
            return ok, why
        done = subprocess.run([str(self.binary), "daemon", "--help"], capture_output=True, text=True,
                              env={**os.environ, "SWIFT_BACKTRACE": "enable=no"}, timeout=20)
        if "--data-path" not in done.stdout + done.stderr:
            return False, f"`{self.binary} daemon --help` has no --data-path (an mcrelay without the XDP path)"
        if not self.xdp_object.is_file():
            return False, (f"XDP object {self.xdp_object} not built (make bpf SCRATCH=...; or --xdp-object PATH, "
                           "$MCRELAY_XDP_OBJECT)")
        return True, ""

    def describe(self) -> str:
        return f"{super().describe()}; {self.settings}"

    def kthread_pids(self) -> list[int]:
        return list(self.kthreads)

    def _rcv(self, *args: str, check: bool = True):
        return run(["ip", "netns", "exec", self.lab.rcv, *args], check=check)

    def start(self, streams: list[Stream]) -> None:
        self.kthreads, self.gro_restore, self.threaded_set = [], {}, False
        if self.mode == "native":
            for dev in self.lab.rcv_devs:
                text = self._rcv("ethtool", "-k", dev).stdout
                state = "on" if "generic-receive-offload: on" in text else "off"
                self.gro_restore[dev] = state
                if state != "on":
                    self._rcv("ethtool", "-K", dev, "gro", "on")
        # napi/rin0-N threads before the daemon attaches (other labs' rin0s have threads of that name too)
        before = napi_threads("napi/rin0-")
        super().start(streams)
        # every rule on XDP (the daemon re-reads the outputs' XDP features every second)
        why: list[str | None] = [None]

        def on_xdp():
            why[0] = self.carried_by_xdp(len(streams))
            return why[0] is None
        try:
            wait_until(on_xdp, 10, "every rule on path xdp in `mcrelay stats` data_path", interval=0.2)
        except HarnessError as e:
            raise HarnessError(f"{e}: {why[0]}") from e
        self.check_attached()
        if self.mode == "native" and self.cpu is not None:
            self.kthreads = self.thread_rin0(before, self.cpu, self.nice or None)

    def carried_by_xdp(self, rules: int) -> str | None:
        """None when `mcrelay stats` says every rule is on path xdp, else why not."""
        st = self.stats()
        dp = (st or {}).get("data_path")
        if not dp:
            return f"no data_path in `mcrelay stats --json` ({'no reply' if st is None else 'packet path only'})"
        if dp.get("mode") != f"xdp {self.mode}":
            return f"data_path mode {dp.get('mode')!r}, want 'xdp {self.mode}'"
        entries = dp.get("rules", [])
        off = [f"{e.get('name')}: {e.get('path')} ({e.get('reason')})" for e in entries if e.get("path") != "xdp"]
        if off or len(entries) < rules:
            return f"rules not on xdp: {off[:3]} ({len(entries)} rules listed, {rules} configured)"
        return None

    def check_attached(self) -> None:
        self.check_rin0_xdp(1 if self.mode == "native" else 2, self.mode)

    def trial_begin(self):
        from .bpfmaps import xdp_counters
        return (xdp_counters(self.procs[0].pid), self.rin0_redirects())

    def trial_end(self, mark, received: int, most_per_output: int) -> dict:
        from .bpfmaps import xdp_counters
        (c0, r0) = mark
        c1, r1 = xdp_counters(self.procs[0].pid), self.rin0_redirects()
        seen = {"accepted": c1["accepted"] - c0["accepted"], "sent": c1["sent"] - c0["sent"],
                "rin0_xdp_redirect": r1 - r0}
        if seen["accepted"] < most_per_output or seen["sent"] < received:
            raise NotCarried(f"the XDP program accepted {seen['accepted']} datagrams and sent {seen['sent']} copies, "
                             f"but {received} copies arrived (up to {most_per_output} on one output): "
                             "something else carried them")
        if self.mode == "native" and seen["rin0_xdp_redirect"] < most_per_output:
            raise NotCarried(f"rin0 counted {seen['rin0_xdp_redirect']} XDP redirects for {most_per_output} datagrams")
        return seen

    def extra_stats(self) -> dict:
        st = self.stats()
        why = self.carried_by_xdp(len((st or {}).get("rules", [])) or 1)
        if why:
            raise NotCarried(f"after the row: {why}")
        self.check_attached()
        return {"stats": st, "settings": self.settings, "napi_kthreads": self.kthread_pids(), **self.rin0_threaded_extra()}

    def stop(self) -> None:
        try:
            self.unthread_rin0()  # while the daemon's program still holds rin0's NAPI
            super().stop()
        finally:
            for dev, state in self.gro_restore.items():
                self._rcv("ethtool", "-K", dev, "gro", state, check=False)
            self.gro_restore = {}
            self.kthreads = []


class AfxdpDriver(Rin0XDP, RelayDriver):
    """`afxdp-c`: the AF_XDP relay experiment of issue #14 (bench/experiments/afxdp/afxdp_relay.c,
    built by its build.sh into .build/afxdp/): a one-thread C relay, native XDP on rin0 that
    redirects IPv4 UDP to 224/4 into an AF_XDP socket (copy mode: veth has no zero copy), user
    space matching the exact (group, port), writing mcrelay's output frame and sending it on one
    AF_XDP TX socket per output device that shares the input's UMEM (the first output's copy is
    the received frame with the new header written in place; further outputs get a memcpy each).

    rin0's native XDP runs in rin0's NAPI, which without threading runs in the softirq of the
    generator's transmit, on the generator's CPU. As for mcrelay-xdp the driver turns threaded
    NAPI on for rin0 after the relay attached (veth creates the NAPI then), pins the new
    napi/rin0-N kthread to the relay's CPU at 10 nice levels above the relay (the packet path's
    gap) and counts it as the relay's; `threaded` goes back to 0 at stop while the program is still attached. Copy-mode
    AF_XDP transmit is the kernel's skb transmit into rout0 (veth_xmit), so the receivers' ends
    need no GRO: nothing is set there.

    Every trial is checked with the relay's own counters (SIGUSR1 makes it write them to a file):
    its socket must have taken at least as many datagrams of the rules as the busiest output
    received, the kernel must have completed at least as many transmits as copies arrived, and
    rin0 must have counted as many XDP redirects; else NotCarried (INVALID), never a figure
    for frames the kernel forwarded some other way. IPv4 only.
    """
    name = "afxdp-c"

    def __init__(self, lab: Lab, workdir: Path, cpu: int | None, binary: Path, nice: int):
        super().__init__(lab, workdir, cpu)
        self.binary = binary
        self.obj = binary.parent / "afxdp_redirect.bpf.o"
        self.nice = nice
        self.stats_file = workdir / "afxdp-stats.json"
        self.kthreads: list[int] = []
        self.threaded_set = False
        # The receive thread gets the packet path's gap (10 nice levels above the relay, as the
        # daemon's --worker-nice -10 is to the kernel's 0): here too a user-space forwarder shares
        # the core with a kernel thread that takes frames in faster than it can drain them. At
        # equal nice the experiment collapsed (2026-12-04 21:00 run: 399k -> 251k delivered, the
        # AF_XDP RX ring full), as the packet path did in softirq.
        self.kthread_nice = nice + 10
        self.settings = (f"rin0 native XDP with threaded NAPI, its kthread pinned to CPU {cpu} at nice {self.kthread_nice} "
                         "(10 above the relay thread's, the packet path's gap)" if cpu is not None
                         else "rin0 native XDP, NAPI not threaded (no --relay-cpu)")
        self.title = ("AF_XDP relay experiment in C (bench/experiments/afxdp: one thread, copy mode, "
                      f"UMEM shared with the TX sockets, first output sent in place; {self.settings})")

    def available(self) -> tuple[bool, str]:
        if self.lab.family != "ipv4":
            return False, "the AF_XDP experiment relays IPv4 only"
        for path in (self.binary, self.obj):
            if not path.is_file():
                return False, f"{path} not built (bench/experiments/afxdp/build.sh {self.binary.parent}, or make afxdp-experiment)"
        try:
            socket.socket(44, socket.SOCK_RAW, 0).close()  # AF_XDP
        except OSError as e:
            return False, f"this kernel has no AF_XDP sockets ({e})"
        return True, ""

    def describe(self) -> str:
        return f"afxdp-c ({self.binary}); {self.settings}"

    def kthread_pids(self) -> list[int]:
        return list(self.kthreads)

    def start(self, streams: list[Stream]) -> None:
        self.logs, self.kthreads, self.threaded_set = [], [], False
        if any(s.family != "ipv4" for s in streams):
            raise HarnessError("afxdp-c relays IPv4 only")
        rules = self.workdir / "afxdp-rules.txt"
        rules.write_text("".join(f"{s.in_group} {s.in_port} {s.out_group} {s.out_port}\n" for s in streams))
        if self.stats_file.exists():
            self.stats_file.unlink()
        args = [str(self.binary), "--in", "rin0", "--out", ",".join(self.lab.out_devs), "--rules", str(rules),
                "--ttl", "16", "--stats", str(self.stats_file), "--obj", str(self.obj)]
        if self.cpu is not None:
            args += ["--cpu", str(self.cpu)]
        before = napi_threads("napi/rin0-")
        self._spawn(args, "afxdp.log")

        def ready():
            if not self.alive():
                raise HarnessError("afxdp_relay exited at start:\n" + self.log_tail())
            return self.stats_file.exists()
        wait_until(ready, 10, "afxdp_relay to attach and write its counters", interval=0.1)
        self.check_attached()
        if self.cpu is not None:
            self.kthreads = self.thread_rin0(before, self.cpu, self.kthread_nice)

    def counters(self) -> dict:
        return signalled_counters(self, "afxdp_relay")

    def check_attached(self) -> None:
        self.check_rin0_xdp(1, "the relay's program in native mode")

    def trial_begin(self):
        return (self.counters(), self.rin0_redirects())

    def trial_end(self, mark, received: int, most_per_output: int) -> dict:
        c0, r0 = mark
        c1, r1 = self.counters(), self.rin0_redirects()
        keys = ("rx", "forwarded", "unmatched", "bad", "tx", "completed", "no_frame", "ring_full", "sent_in_place",
                "sent_copied")
        seen = {k: c1[k] - c0[k] for k in keys}
        seen["rin0_xdp_redirect"] = r1 - r0
        # the harness's XDP fields (report, smoke log): accepted = datagrams of the rules taken from
        # the socket, sent = copies the kernel completed
        seen.update(accepted=seen["forwarded"], sent=seen["completed"])
        if seen["forwarded"] < most_per_output or seen["completed"] < received:
            raise NotCarried(f"afxdp_relay took {seen['forwarded']} datagrams of its rules and the kernel completed "
                             f"{seen['completed']} of its transmits, but {received} copies arrived (up to "
                             f"{most_per_output} on one output): something else carried them")
        if seen["rin0_xdp_redirect"] < most_per_output:
            raise NotCarried(f"rin0 counted {seen['rin0_xdp_redirect']} XDP redirects for {most_per_output} datagrams")
        return seen

    def extra_stats(self) -> dict:
        self.check_attached()
        return {"stats": self.counters(), "settings": self.settings, "napi_kthreads": self.kthread_pids(),
                **self.rin0_threaded_extra()}

    def stop(self) -> None:
        try:
            self.unthread_rin0()  # while the relay's program still holds rin0's NAPI
            super().stop()
        finally:
            self.kthreads = []
        # the program is a bpf link of the relay's: gone with the process
        link = json.loads(run(["ip", "-n", self.lab.rly, "-j", "-d", "link", "show", "rin0"], check=False).stdout or "[{}]")[0]
        if link.get("xdp"):
            raise HarnessError(f"afxdp_relay stopped but rin0 still has XDP {link['xdp']}")
