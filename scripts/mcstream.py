"""Shared payload format for mcsend.py / mcrecv.py (test traffic for the relay).

Payload = stream_id (4 bytes, big-endian) | seq (8 bytes, big-endian) | filler.
The filler is deterministic in (stream_id, seq): byte i of the filler is
PATTERN[(start + i) % 256] where start = (stream_id * 131 + seq * 31) % 256 and PATTERN is a
fixed permutation of 0..255, so any shifted, swapped or corrupted byte is detected.
"""

import ipaddress
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


def parse_stream(spec: str, default_id: int):
    """GROUP:PORT[:ID] -> (group, port, stream_id). Only 239.0.0.0/8 groups are allowed."""
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"bad stream '{spec}', want GROUP:PORT[:ID]")
    group = str(ipaddress.IPv4Address(parts[0]))
    if ipaddress.IPv4Address(group) not in ipaddress.IPv4Network("239.0.0.0/8"):
        raise ValueError(f"group {group} is outside 239.0.0.0/8")
    port = int(parts[1])
    if not 1 <= port <= 65535:
        raise ValueError(f"bad port in '{spec}'")
    sid = int(parts[2]) if len(parts) == 3 else default_id
    if not 0 <= sid <= 0xFFFFFFFF:
        raise ValueError(f"bad stream id in '{spec}'")
    return group, port, sid


def check_lab_address(addr: str) -> str:
    """Test hosts live in 198.18.0.0/15 (or loopback)."""
    a = ipaddress.IPv4Address(addr)
    if a not in ipaddress.IPv4Network("198.18.0.0/15") and not a.is_loopback:
        raise ValueError(f"address {addr} is outside 198.18.0.0/15")
    return str(a)
