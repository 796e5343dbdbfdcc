#!/usr/bin/env python3
"""One receiver host of the listener-churn benchmark (bench/e2e/churn.py), run inside its namespace.

It joins and leaves groups with ordinary sockets (IP_ADD_MEMBERSHIP / IP_DROP_MEMBERSHIP, so the
host's own kernel sends the IGMP reports and leaves) at a steady rate, one random group toggled
per step, and measures join -> first datagram (the relay's follow output opening, within the
stream's packet interval). "Cold" joins are those of a group this host never joined or left more
than --cold seconds ago (the relay has then closed the output); a quick rejoin may find it still
open during the last-member queries. Prints one JSON object at the end.

    churn_listener.py ADDR GROUP:PORT[,GROUP:PORT...] OPS_PER_S SECONDS SEED [--cold S]
"""
from __future__ import annotations

import json
import random
import select
import socket
import struct
import sys
import time


def main(argv: list[str]) -> int:
    cold_after = 1.0
    if "--cold" in argv:
        i = argv.index("--cold")
        cold_after = float(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    addr, spec, rate, seconds, seed = argv[0], argv[1], float(argv[2]), float(argv[3]), int(argv[4])
    groups = [(g, int(p)) for g, p in (item.rsplit(":", 1) for item in spec.split(","))]
    rng = random.Random(seed)
    socks = []
    for group, port in groups:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((group, port))
        s.setblocking(False)
        socks.append(s)
    by_fd = {s.fileno(): i for i, s in enumerate(socks)}
    joined = [False] * len(groups)
    join_at: list[float | None] = [None] * len(groups)   # waiting for the first datagram since this join
    left_at: list[float | None] = [None] * len(groups)
    cold = [True] * len(groups)
    received = [0] * len(groups)
    latencies, cold_latencies = [], []
    joins = leaves = unanswered = 0
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLIN)

    def membership(i: int) -> bytes:
        return struct.pack("4s4s", socket.inet_aton(groups[i][0]), socket.inet_aton(addr))

    start = time.monotonic()
    end = start + seconds
    step = 1.0 / rate if rate > 0 else seconds
    next_op = start + rng.random() * step
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_op:
            i = rng.randrange(len(groups))
            if joined[i]:
                if join_at[i] is not None:
                    unanswered += 1   # left before anything arrived
                socks[i].setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, membership(i))
                joined[i], join_at[i], left_at[i] = False, None, now
                leaves += 1
            else:
                cold[i] = left_at[i] is None or now - left_at[i] > cold_after
                socks[i].setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership(i))
                joined[i], join_at[i] = True, now
                joins += 1
            next_op += step
        timeout_ms = max(0, min(next_op, end) - time.monotonic()) * 1000
        for fd, _ in poller.poll(timeout_ms):
            i = by_fd[fd]
            while True:
                try:
                    socks[i].recv(2048)
                except BlockingIOError:
                    break
                received[i] += 1
                if join_at[i] is not None:
                    ms = (time.monotonic() - join_at[i]) * 1000
                    latencies.append(ms)
                    if cold[i]:
                        cold_latencies.append(ms)
                    join_at[i] = None
    for i, s in enumerate(socks):
        if joined[i]:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, membership(i))
            leaves += 1
        if join_at[i] is not None:
            unanswered += 1
    print(json.dumps({"joins": joins, "leaves": leaves, "unanswered_joins": unanswered,
                      "latencies_ms": [round(x, 2) for x in latencies],
                      "cold_latencies_ms": [round(x, 2) for x in cold_latencies],
                      "received": {f"{g}:{p}": n for (g, p), n in zip(groups, received)}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
