#!/usr/bin/env python3
"""When the sender's link refuses frames during a bench-e2e.sh run (issue #14's zero-loss goal).

A frame refused at snd0 is one the relay's input ring (rin0's 256-frame veth ring) had no room
for: the relay's core did not drain it for 256 frames' time. This prints when that happened and
how many: start it, then the benchmark; it waits for the lab's `*-snd` namespace, keeps one
`sleep` in it (so that /proc/PID/net/dev shows that namespace's devices without an `ip netns
exec` per read) and polls snd0's tx drop counter every 2 ms until the namespace goes away. Run it
on the generator's CPU (`taskset -c 0`), not the relay's. Pair it with
`perf sched record -C RELAY_CPU` and `perf sched timehist` to see what held the relay's core.

Output: one line per rise of the counter, (seconds since start, frames refused, snd0 tx packets).
Used for BENCHMARKS.md "What stalls the relay's core" (2026-12-08).
"""
import subprocess
import sys
import time


def lab_sender_pid(timeout: float) -> int | None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for line in listed.splitlines():
            ns = line.split()[0]
            if ns.endswith("-snd"):
                holder = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "900"])
                time.sleep(0.3)
                return holder.pid
        time.sleep(0.2)
    return None


def main() -> int:
    pid = lab_sender_pid(300)
    if pid is None:
        print("no *-snd namespace appeared within 300 s", file=sys.stderr)
        return 1
    start, last, events = time.time(), None, 0
    while True:
        try:
            text = open(f"/proc/{pid}/net/dev").read()
        except OSError:
            break  # the lab is gone (its namespace's processes were killed)
        for line in text.splitlines():
            if line.strip().startswith("snd0:"):
                fields = line.split(":", 1)[1].split()
                tx_packets, tx_dropped = int(fields[9]), int(fields[11])
                if last is not None and tx_dropped != last:
                    events += 1
                    print((round(time.time() - start, 4), tx_dropped - last, tx_packets), flush=True)
                last = tx_dropped
        time.sleep(0.002)
    print(f"{events} rises of snd0's tx drops")
    return 0


if __name__ == "__main__":
    sys.exit(main())
