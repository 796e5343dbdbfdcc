"""Stream numbering shared by the generator, the drivers and the receiver counter.

Stream i (0-based) enters as 239.1.H.L:(5001+i) and, for relays that rewrite, leaves as
239.10.H.L:(6001+i), where H.L = divmod(i, 250) + (0, 1). Distinct ports keep one-socket-per-
stream relays (socat) from receiving each other's traffic through IP_MULTICAST_ALL.
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_STREAMS = 250 * 250


@dataclass(frozen=True)
class Stream:
    index: int
    in_group: str
    in_port: int
    out_group: str
    out_port: int


def streams(count: int) -> list[Stream]:
    if not 1 <= count <= MAX_STREAMS:
        raise ValueError(f"stream count must be 1...{MAX_STREAMS}, got {count}")
    result = []
    for i in range(count):
        high, low = divmod(i, 250)
        result.append(Stream(i, f"239.1.{high}.{low + 1}", 5001 + i, f"239.10.{high}.{low + 1}", 6001 + i))
    return result


def multicast_mac(group: str) -> list[int]:
    """01:00:5e + the low 23 bits of the group (RFC 1112)."""
    a = [int(x) for x in group.split(".")]
    return [0x01, 0x00, 0x5E, a[1] & 0x7F, a[2], a[3]]
