"""Shared payload format for mcsend.py / mcrecv.py (test traffic for the relay).

Payload = stream_id (4 bytes, big-endian) | seq (8 bytes, big-endian) | filler.
The filler is deterministic in (stream_id, seq): byte i of the filler is
PATTERN[(start + i) % 256] where start = (stream_id * 131 + seq * 31) % 256 and PATTERN is a
fixed permutation of 0..255, so any shifted, swapped or corrupted byte is detected.
"""

import ipaddress
import socket
import struct

HEADER = struct.Struct(">IQ")
HEADER_LEN = HEADER.size  # 12

# A fixed permutation of 0..255 (multiplicative, odd step) repeated, to slice filler from.
_PATTERN = bytes((i * 167 + 13) % 256 for i in range(256))
_PATTERN_REPEATED = _PATTERN * ((65536 // 256) + 2)


def filler(stream_id: int, seq: int, length: int) -> bytes:
    if length <= 0:
        return b""
    if length > 65536:
        raise ValueError("payload too large")
    start = (stream_id * 131 + seq * 31) % 256
    return _PATTERN_REPEATED[start:start + length]


def payload(stream_id: int, seq: int, size: int) -> bytes:
    """A payload of exactly max(size, HEADER_LEN) bytes."""
    return HEADER.pack(stream_id, seq) + filler(stream_id, seq, size - HEADER_LEN)


def parse(data: bytes):
    """Returns (stream_id, seq, ok) where ok says the filler matches; None if too short."""
    if len(data) < HEADER_LEN:
        return None
    stream_id, seq = HEADER.unpack_from(data, 0)
    ok = data[HEADER_LEN:] == filler(stream_id, seq, len(data) - HEADER_LEN)
    return stream_id, seq, ok


# IPv6 groups the tools may use: site-local ff05::/16 and global source-specific ff3e::/32.
IPV6_GROUPS = (ipaddress.IPv6Network("ff05::/16"), ipaddress.IPv6Network("ff3e::/32"))
# IPv6 test hosts: documentation 2001:db8::/32 and unique-local fd00::/8 (or loopback).
IPV6_HOSTS = (ipaddress.IPv6Network("2001:db8::/32"), ipaddress.IPv6Network("fd00::/8"))


def stream_key(group: str, port: int) -> str:
    """The text a stream goes by in the tools' JSON: GROUP:PORT, or [GROUP]:PORT for IPv6."""
    return f"[{group}]:{port}" if ":" in group else f"{group}:{port}"


def parse_stream(spec: str, default_id: int):
    """GROUP:PORT[:ID] or [GROUP6]:PORT[:ID] -> (group, port, stream_id), the group in its
    canonical text. IPv4 groups must be in 239.0.0.0/8, IPv6 groups in ff05::/16 or ff3e::/32."""
    if spec.startswith("["):
        close = spec.find("]")
        if close < 0 or not spec[close + 1:].startswith(":"):
            raise ValueError(f"bad stream '{spec}', want [GROUP]:PORT[:ID]")
        group = str(ipaddress.IPv6Address(spec[1:close]))
        if not any(ipaddress.IPv6Address(group) in net for net in IPV6_GROUPS):
            raise ValueError(f"group {group} is outside ff05::/16 and ff3e::/32")
        parts = [group] + spec[close + 2:].split(":")
    else:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"bad stream '{spec}', want GROUP:PORT[:ID]")
        group = str(ipaddress.IPv4Address(parts[0]))
        if ipaddress.IPv4Address(group) not in ipaddress.IPv4Network("239.0.0.0/8"):
            raise ValueError(f"group {group} is outside 239.0.0.0/8")
    if len(parts) not in (2, 3):
        raise ValueError(f"bad stream '{spec}', want GROUP:PORT[:ID]")
    port = int(parts[1])
    if not 1 <= port <= 65535:
        raise ValueError(f"bad port in '{spec}'")
    sid = int(parts[2]) if len(parts) == 3 else default_id
    if not 0 <= sid <= 0xFFFFFFFF:
        raise ValueError(f"bad stream id in '{spec}'")
    return group, port, sid


def is_ipv6(addr: str) -> bool:
    return ":" in addr


def check_lab_address(addr: str) -> str:
    """Test hosts live in 198.18.0.0/15, 2001:db8::/32 or fd00::/8 (or loopback)."""
    if is_ipv6(addr):
        a6 = ipaddress.IPv6Address(addr)
        if not any(a6 in net for net in IPV6_HOSTS) and not a6.is_loopback:
            raise ValueError(f"address {addr} is outside 2001:db8::/32 and fd00::/8")
        return str(a6)
    a = ipaddress.IPv4Address(addr)
    if a not in ipaddress.IPv4Network("198.18.0.0/15") and not a.is_loopback:
        raise ValueError(f"address {addr} is outside 198.18.0.0/15")
    return str(a)


def ipv6_interface_index(addr: str) -> int:
    """The index of the interface holding IPv6 address `addr` (/proc/net/if_inet6)."""
    want = ipaddress.IPv6Address(addr).packed.hex()
    with open("/proc/net/if_inet6") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[0] == want:
                return int(fields[1], 16)
    raise ValueError(f"no interface holds {addr}")


# IPv6 multicast socket options (linux/in6.h, linux/in.h), for Pythons that lack the names.
IPV6_MULTICAST_IF = getattr(socket, "IPV6_MULTICAST_IF", 17)
IPV6_MULTICAST_HOPS = getattr(socket, "IPV6_MULTICAST_HOPS", 18)
IPV6_MULTICAST_LOOP = getattr(socket, "IPV6_MULTICAST_LOOP", 19)
IPV6_MULTICAST_ALL = 29
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
MCAST_JOIN_GROUP = 42
MCAST_JOIN_SOURCE_GROUP = 46


def _sockaddr_storage_in6(addr: str) -> bytes:
    """A struct sockaddr_in6 (family, port 0, flowinfo 0, address, scope 0) padded to
    sizeof(struct sockaddr_storage) (128)."""
    sin6 = struct.pack("=HHI16sI", socket.AF_INET6, 0, 0, ipaddress.IPv6Address(addr).packed, 0)
    return sin6 + bytes(128 - len(sin6))


def group_req(ifindex: int, group: str) -> bytes:
    """struct group_req (RFC 3678) as Linux lays it out on 64-bit: uint32 interface, 4 bytes of
    padding (sockaddr_storage is 8-aligned), the group."""
    return struct.pack("=I4x", ifindex) + _sockaddr_storage_in6(group)


def group_source_req(ifindex: int, group: str, source: str) -> bytes:
    """struct group_source_req: uint32 interface, padding, group, source."""
    return struct.pack("=I4x", ifindex) + _sockaddr_storage_in6(group) + _sockaddr_storage_in6(source)
