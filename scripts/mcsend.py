#!/usr/bin/env python3
"""Send test multicast streams (see mcstream.py for the payload format).

  mcsend.py --source 198.18.1.1 --stream 239.1.1.1:5000 --stream 239.1.1.2:5000:7 \
            --count 1000 --rate 500 --size 200 --ttl 8
  mcsend.py --source 2001:db8:1::1 --stream [ff3e::8000:1]:5000 ...      (IPv6)

IPv6 streams ([GROUP]:PORT[:ID]) go through an AF_INET6 socket bound to the IPv6 --source,
IPV6_MULTICAST_IF by the index of the interface holding it, IPV6_MULTICAST_HOPS = --ttl,
IPV6_MULTICAST_LOOP as --loop. --source may be given twice, once per family, to send IPv4
and IPv6 streams interleaved from one process; each stream uses the source of its family.

Streams are interleaved round-robin (seq 0 of every stream, then seq 1, ...). --rate is packets
per second per stream (0 = as fast as possible). Stream ids default to 1, 2, ... in order.
Prints {"sent": {"GROUP:PORT": {"stream_id", "sent", "errors"}}, "errors": N, ...} on stdout
("start_monotonic": when seq start-seq was due, time.monotonic() seconds; seq n was due
(n - start-seq) / rate later)
and exits 1 if any send failed, 2 on bad arguments or socket setup failure.
"""

import argparse
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcstream  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", action="append", required=True,
                    help="interface address to send from (198.18.0.0/15; IPv6: 2001:db8::/32, fd00::/8); once per family")
    ap.add_argument("--stream", action="append", required=True, metavar="GROUP:PORT[:ID]")
    ap.add_argument("--count", type=int, default=100, help="datagrams per stream")
    ap.add_argument("--rate", type=float, default=1000.0, help="datagrams/s per stream (0: unpaced)")
    ap.add_argument("--size", type=int, default=64, help="UDP payload bytes (>= 12)")
    ap.add_argument("--ttl", type=int, default=1, help="IP_MULTICAST_TTL (default 1)")
    ap.add_argument("--loop", action="store_true", help="enable IP_MULTICAST_LOOP (default off)")
    ap.add_argument("--start-seq", type=int, default=0)
    ap.add_argument("--source-port", type=int, default=0,
                    help="UDP source port (default: any); fixed, two runs are the same flows to PACKET_FANOUT's hash")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds to wait before sending")
    ap.add_argument("--start-file", metavar="PATH",
                    help="set up the socket, then start sending within ~1 ms of PATH appearing (gives up after 60 s)")
    args = ap.parse_args()

    try:
        sources = {}
        for text in args.source:
            address = mcstream.check_lab_address(text)
            family = 6 if mcstream.is_ipv6(address) else 4
            if family in sources:
                raise ValueError("--source given twice for one address family")
            sources[family] = address
        streams = [mcstream.parse_stream(s, i + 1) for i, s in enumerate(args.stream)]
        for group, _, _ in streams:
            if (6 if mcstream.is_ipv6(group) else 4) not in sources:
                raise ValueError(f"stream group {group} has no --source of its address family")
        if not mcstream.HEADER_LEN <= args.size <= 65507:
            raise ValueError(f"--size must be in {mcstream.HEADER_LEN}..65507")
        if not 0 <= args.ttl <= 255 or args.count < 0 or args.rate < 0 or not 0 <= args.source_port <= 65535:
            raise ValueError("bad --ttl, --count, --rate or --source-port")
    except ValueError as e:
        print(f"mcsend: {e}", file=sys.stderr)
        return 2

    socks = {}
    try:
        if 4 in sources:
            source = sources[4]
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, args.ttl)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1 if args.loop else 0)
            sock.bind((source, args.source_port))
            socks[4] = sock
        if 6 in sources:
            source6 = sources[6]
            index = mcstream.ipv6_interface_index(source6)
            sock6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock6.setsockopt(socket.IPPROTO_IPV6, mcstream.IPV6_MULTICAST_IF, index)
            sock6.setsockopt(socket.IPPROTO_IPV6, mcstream.IPV6_MULTICAST_HOPS, args.ttl)
            sock6.setsockopt(socket.IPPROTO_IPV6, mcstream.IPV6_MULTICAST_LOOP, 1 if args.loop else 0)
            sock6.bind((source6, args.source_port, 0, 0))
            socks[6] = sock6
    except (OSError, ValueError) as e:
        print(f"mcsend: socket setup failed: {e}", file=sys.stderr)
        return 2
    # Per stream: its socket and destination address (IPv6 with scope 0: IPV6_MULTICAST_IF picks the interface).
    targets = [(socks[6], (g, p, 0, 0)) if mcstream.is_ipv6(g) else (socks[4], (g, p)) for g, p, _ in streams]

    if args.delay > 0:
        time.sleep(args.delay)
    if args.start_file:
        # Polled, not inotify: a millisecond of reaction time is all a readiness test needs.
        give_up = time.monotonic() + 60
        while not os.path.exists(args.start_file):
            if time.monotonic() > give_up:
                print(f"mcsend: {args.start_file} did not appear within 60 s", file=sys.stderr)
                return 2
            time.sleep(0.001)

    sent = {mcstream.stream_key(g, p): {"stream_id": sid, "sent": 0, "errors": 0} for g, p, sid in streams}
    errors = 0
    error_kinds = {}
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    start = time.monotonic()
    for i in range(args.count):
        seq = args.start_seq + i
        if interval:
            due = start + i * interval
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
        for (group, port, sid), (sock, target) in zip(streams, targets):
            key = mcstream.stream_key(group, port)
            try:
                sock.sendto(mcstream.payload(sid, seq, args.size), target)
                sent[key]["sent"] += 1
            except OSError as e:
                errors += 1
                sent[key]["errors"] += 1
                name = os.strerror(e.errno) if e.errno else str(e)
                error_kinds[name] = error_kinds.get(name, 0) + 1
    elapsed = time.monotonic() - start
    for sock in socks.values():
        sock.close()
    print(json.dumps({
        "sent": sent,
        "errors": errors,
        "error_kinds": error_kinds,
        "source": sources.get(4) or sources.get(6),
        "sources": [sources[f] for f in sorted(sources)],
        "size": args.size,
        "ttl": args.ttl,
        "elapsed_s": round(elapsed, 3),
        "start_monotonic": start,
    }, sort_keys=True))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
