#!/usr/bin/env python3
"""Receive and verify test multicast streams (see mcstream.py for the payload format).

  mcrecv.py --iface-addr 198.18.2.2 --stream 239.1.1.1:5000 --stream 239.1.1.2:5000:7 \
            --expect 1000 --duration 10 --ready-file /tmp/ready

One socket per GROUP:PORT, bound to GROUP:PORT, IP_MULTICAST_ALL=0, joined with
IP_ADD_MEMBERSHIP on the interface address. IPv6 streams ([GROUP]:PORT[:ID], keyed so in the
JSON): an AF_INET6 socket bound to [GROUP]:PORT, IPV6_MULTICAST_ALL=0, joined with
MCAST_JOIN_GROUP on the interface that holds the IPv6 --iface-addr (by index), or with
MCAST_JOIN_SOURCE_GROUP when --source-filter names an IPv6 source; ttl_min/max are then the
hop limits (IPV6_RECVHOPLIMIT). --iface-addr may be given twice, once per family. An IPv4
--source-filter joins with IP_ADD_SOURCE_MEMBERSHIP. Stops after --duration seconds, or when every
stream has --expect unique datagrams, or after --idle seconds without traffic (once some
arrived). Writes --ready-file (and prints "ready" to stderr) once all joins succeeded.

Per stream: received (unique seqs), duplicates (same seq again), corrupt (short, wrong stream
id, filler mismatch, or length != --size), out_of_order (seq below the highest seen, first time), missing
(with --expect: expected seqs start-seq..start-seq+expect-1 not received), bytes, ttl_min/max,
sources. Exit: 0 ok; 1 if --expect was not met or (with --strict) any duplicate / corrupt /
out-of-order datagram; 2 on bad arguments or a failed bind/join.

With --gaps (and --expect), each stream also lists its losses as runs of consecutive missing
seqs: {"first", "last", "count", "before_at", "after_at"}, the arrival times
(time.monotonic(), i.e. CLOCK_MONOTONIC seconds) of the nearest datagrams received before and
after the run (null at either end), plus "first_at"/"last_at" of the stream. Outage tests use
it to say exactly which datagrams were lost and when forwarding resumed.
"""

import argparse
import json
import os
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcstream  # noqa: E402

IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IP_TTL = getattr(socket, "IP_TTL", 2)
IP_ADD_SOURCE_MEMBERSHIP = getattr(socket, "IP_ADD_SOURCE_MEMBERSHIP", 39)


def gaps(want, seen, arrived):
    """Runs of consecutive seqs of `want` that are not in `seen`, with the arrival times of the
    received seqs nearest before and after each run."""
    runs = []
    start = None
    for q in want:
        if q not in seen:
            if start is None:
                start = q
            continue
        if start is not None:
            runs.append((start, q - 1))
            start = None
    if start is not None:
        runs.append((start, want[-1]))
    result = []
    for first, last in runs:
        before = arrived.get(first - 1)
        after = arrived.get(last + 1)
        result.append({"first": first, "last": last, "count": last - first + 1,
                       "before_at": before, "after_at": after})
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iface-addr", action="append", required=True,
                    help="address of the interface to join on (once per address family)")
    ap.add_argument("--source-filter", action="append", default=[], metavar="SOURCE",
                    help="source-specific joins: only datagrams from SOURCE (once per address family)")
    ap.add_argument("--stream", action="append", required=True, metavar="GROUP:PORT[:ID]")
    ap.add_argument("--expect", type=int, default=None, help="datagrams expected per stream")
    ap.add_argument("--start-seq", type=int, default=0)
    ap.add_argument("--duration", type=float, default=10.0, help="maximum seconds to receive")
    ap.add_argument("--idle", type=float, default=0.0, help="stop after this many idle seconds (0: off)")
    ap.add_argument("--ready-file", help="file to create once joined")
    ap.add_argument("--strict", action="store_true", help="fail on duplicates, corruption, reordering")
    ap.add_argument("--size", type=int, default=None, help="expected payload size (others: corrupt)")
    ap.add_argument("--rcvbuf", type=int, default=4 << 20)
    ap.add_argument("--gaps", action="store_true", help="list the missing seqs as runs, with arrival times around them")
    args = ap.parse_args()

    try:
        ifaces = {}
        for text in args.iface_addr:
            address = mcstream.check_lab_address(text)
            family = 6 if mcstream.is_ipv6(address) else 4
            if family in ifaces:
                raise ValueError("--iface-addr given twice for one address family")
            ifaces[family] = address
        filters = {}
        for text in args.source_filter:
            address = mcstream.check_lab_address(text)
            family = 6 if mcstream.is_ipv6(address) else 4
            if family in filters:
                raise ValueError("--source-filter given twice for one address family")
            filters[family] = address
        streams = [mcstream.parse_stream(s, i + 1) for i, s in enumerate(args.stream)]
        for group, _, _ in streams:
            if (6 if mcstream.is_ipv6(group) else 4) not in ifaces:
                raise ValueError(f"stream group {group} has no --iface-addr of its address family")
        index6 = mcstream.ipv6_interface_index(ifaces[6]) if 6 in ifaces else 0
    except ValueError as e:
        print(f"mcrecv: {e}", file=sys.stderr)
        return 2
    iface = ifaces.get(4) or ifaces.get(6)
    keys = [mcstream.stream_key(g, p) for g, p, _ in streams]
    if len(set(keys)) != len(keys):
        print("mcrecv: duplicate GROUP:PORT", file=sys.stderr)
        return 2

    socks = {}
    try:
        for group, port, sid in streams:
            if mcstream.is_ipv6(group):
                s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                socks[s.fileno()] = (s, mcstream.stream_key(group, port), sid)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.IPPROTO_IPV6, mcstream.IPV6_MULTICAST_ALL, 0)
                s.setsockopt(socket.IPPROTO_IPV6, mcstream.IPV6_RECVHOPLIMIT, 1)
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
                except OSError:
                    pass
                s.bind((group, port, 0, 0))
                if 6 in filters:
                    s.setsockopt(socket.IPPROTO_IPV6, mcstream.MCAST_JOIN_SOURCE_GROUP,
                                 mcstream.group_source_req(index6, group, filters[6]))
                else:
                    s.setsockopt(socket.IPPROTO_IPV6, mcstream.MCAST_JOIN_GROUP, mcstream.group_req(index6, group))
                s.setblocking(False)
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks[s.fileno()] = (s, f"{group}:{port}", sid)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
            s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
            except OSError:
                pass
            s.bind((group, port))
            if 4 in filters:
                # struct ip_mreq_source: multiaddr, interface, sourceaddr
                mreq = socket.inet_aton(group) + socket.inet_aton(ifaces[4]) + socket.inet_aton(filters[4])
                s.setsockopt(socket.IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP, mreq)
            else:
                mreq = socket.inet_aton(group) + socket.inet_aton(ifaces[4])
                s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            s.setblocking(False)
    except OSError as e:
        print(f"mcrecv: bind/join failed: {e}", file=sys.stderr)
        print(json.dumps({"error": f"bind/join failed: {e}"}))
        return 2

    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as f:
            f.write("ready\n")
        os.replace(args.ready_file + ".tmp", args.ready_file)
    print("ready", file=sys.stderr, flush=True)

    stats = {}
    seen = {}
    arrived = {}
    high = {}
    for _, key, sid in socks.values():
        stats[key] = {"stream_id": sid, "received": 0, "duplicates": 0, "corrupt": 0,
                      "out_of_order": 0, "bytes": 0, "ttl_min": None, "ttl_max": None,
                      "sources": []}
        seen[key] = set()
        arrived[key] = {}
        high[key] = -1

    poller = select.poll()
    for fd in socks:
        poller.register(fd, select.POLLIN)

    start = time.monotonic()
    deadline = start + args.duration
    last_rx = None
    cmsg_space = socket.CMSG_SPACE(4)

    def done() -> bool:
        return args.expect is not None and all(
            stats[k]["received"] >= args.expect for k in stats)

    while not done():
        now = time.monotonic()
        if now >= deadline:
            break
        if args.idle > 0 and last_rx is not None and now - last_rx >= args.idle:
            break
        timeout = deadline - now
        if args.idle > 0 and last_rx is not None:
            timeout = min(timeout, last_rx + args.idle - now)
        for fd, _ in poller.poll(max(1, int(timeout * 1000))):
            s, key, sid = socks[fd]
            st = stats[key]
            while True:
                try:
                    data, anc, _flags, addr = s.recvmsg(65536, cmsg_space)
                except BlockingIOError:
                    break
                last_rx = time.monotonic()
                for level, typ, cdata in anc:
                    if ((level == socket.IPPROTO_IP and typ == IP_TTL)
                            or (level == socket.IPPROTO_IPV6 and typ == mcstream.IPV6_HOPLIMIT)) and len(cdata) >= 4:
                        ttl = struct.unpack("i", cdata[:4])[0]
                        st["ttl_min"] = ttl if st["ttl_min"] is None else min(st["ttl_min"], ttl)
                        st["ttl_max"] = ttl if st["ttl_max"] is None else max(st["ttl_max"], ttl)
                if addr[0] not in st["sources"] and len(st["sources"]) < 16:
                    st["sources"].append(addr[0])
                parsed = mcstream.parse(data)
                if (parsed is None or parsed[0] != sid or not parsed[2]
                        or (args.size is not None and len(data) != args.size)):
                    st["corrupt"] += 1
                    continue
                seq = parsed[1]
                if seq in seen[key]:
                    st["duplicates"] += 1
                    continue
                seen[key].add(seq)
                if args.gaps:
                    arrived[key][seq] = last_rx
                st["received"] += 1
                st["bytes"] += len(data)
                if seq < high[key]:
                    st["out_of_order"] += 1
                else:
                    high[key] = seq

    elapsed = time.monotonic() - start
    failed = False
    for key, st in stats.items():
        if args.expect is not None:
            want = range(args.start_seq, args.start_seq + args.expect)
            st["missing"] = sum(1 for q in want if q not in seen[key])
            if st["missing"] or st["received"] < args.expect:
                failed = True
            if args.gaps:
                st["gaps"] = gaps(want, seen[key], arrived[key])
                times = arrived[key].values()
                st["first_at"] = min(times) if times else None
                st["last_at"] = max(times) if times else None
        if args.strict and (st["duplicates"] or st["corrupt"] or st["out_of_order"]):
            failed = True
    for s, _, _ in socks.values():
        s.close()
    print(json.dumps({
        "received": stats,
        "iface_addr": iface,
        "iface_addrs": [ifaces[f] for f in sorted(ifaces)],
        "elapsed_s": round(elapsed, 3),
        "complete": done(),
    }, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
