"""Stream numbering shared by the generator, the drivers and the receiver counter.

IPv4: stream i (0-based) enters as 239.1.H.L:(5001+i) and, for relays that rewrite, leaves as
239.10.H.L:(6001+i), where H.L = divmod(i, 250) + (0, 1).
IPv6: stream i enters as [ff3e::8000:N]:(5001+i) and leaves as [ff3e::10:N]:(6001+i), N = i + 1
in hex (ff3e::/32 with a 32-bit group id: global scope, the SSM range SMPTE 2110 networks use;
the relays join them any-source, which Linux allows). Addresses are written in their canonical
(RFC 5952) form, which is also what the counter prints.
Distinct ports keep one-socket-per-stream relays (socat) from receiving each other's traffic
through IP_MULTICAST_ALL / IPV6_MULTICAST_ALL.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

MAX_STREAMS = 250 * 250
FAMILIES = ("ipv4", "ipv6")


@dataclass(frozen=True)
class Stream:
    index: int
    in_group: str
    in_port: int
    out_group: str
    out_port: int
    family: str = "ipv4"


def streams(count: int, family: str = "ipv4") -> list[Stream]:
    if not 1 <= count <= MAX_STREAMS:
        raise ValueError(f"stream count must be 1...{MAX_STREAMS}, got {count}")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    result = []
    for i in range(count):
        if family == "ipv6":
            result.append(Stream(i, canonical(f"ff3e::8000:{i + 1:x}"), 5001 + i,
                                 canonical(f"ff3e::10:{i + 1:x}"), 6001 + i, "ipv6"))
            continue
        high, low = divmod(i, 250)
        result.append(Stream(i, f"239.1.{high}.{low + 1}", 5001 + i, f"239.10.{high}.{low + 1}", 6001 + i))
    return result


def canonical(address: str) -> str:
    """RFC 5952 text (IPv6) or dotted quad (IPv4), as mccount prints it."""
    return str(ipaddress.ip_address(address))


def multicast_mac(group: str) -> list[int]:
    """IPv4: 01:00:5e + the low 23 bits of the group (RFC 1112). IPv6: 33:33 + the low 32 bits (RFC 2464)."""
    address = ipaddress.ip_address(group)
    if address.version == 6:
        return [0x33, 0x33, *address.packed[12:]]
    a = address.packed
    return [0x01, 0x00, 0x5E, a[1] & 0x7F, a[2], a[3]]


def endpoint(group: str, port: int) -> str:
    """group:port, the IPv6 group in brackets (mcrelay's rule syntax, socat's address syntax)."""
    return f"[{group}]:{port}" if ":" in group else f"{group}:{port}"
