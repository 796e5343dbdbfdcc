"""The XDP program's own counters, read from the daemon's maps with the bpf(2) syscall (no bpftool).

Used by the mcrelay-xdp rows to prove that the XDP program, not the packet path, carried a trial:
the maps are found among the file descriptors of the daemon's supervisor (which loads the object,
docs/xdp-facts.md), by id (/proc/PID/fdinfo: `map_id`) and name (BPF_OBJ_GET_INFO_BY_FD), then
opened by id and summed over every CPU. `rule_counters` (per-CPU array: packets and payload bytes
each rule accepted) and `output_counters` (per-CPU hash: packets and bytes each output sent) are
the two maps bpf/mcrelay_xdp.c counts in; both values are `struct traffic {u64 packets, bytes}`.
"""
from __future__ import annotations

import ctypes
import os
import platform
import struct
from pathlib import Path

from .errors import HarnessError

_SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine())
BPF_MAP_LOOKUP_ELEM, BPF_MAP_GET_NEXT_KEY, BPF_MAP_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD = 1, 4, 14, 15
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    if _SYS_BPF is None:
        raise HarnessError(f"bpf(2) syscall number unknown on {platform.machine()}")
    r = _libc.syscall(_SYS_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if r < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return r


def possible_cpus() -> int:
    """Per-CPU map values hold one slot per possible CPU (/sys/devices/system/cpu/possible)."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


def map_ids(pid: int) -> list[int]:
    ids = []
    fdinfo = Path(f"/proc/{pid}/fdinfo")
    try:
        entries = list(fdinfo.iterdir())
    except OSError as e:
        raise HarnessError(f"cannot read {fdinfo}: {e}") from e
    for entry in entries:
        try:
            for line in entry.read_text().splitlines():
                if line.startswith("map_id:"):
                    ids.append(int(line.split()[1]))
        except OSError:
            continue  # a descriptor closed meanwhile
    return sorted(set(ids))


def _open(map_id: int) -> int:
    attr = ctypes.create_string_buffer(struct.pack("=III", map_id, 0, 0), 64)
    return _bpf(BPF_MAP_GET_FD_BY_ID, attr)


def _info(fd: int) -> tuple[int, int, int, int, str]:
    """(type, key_size, value_size, max_entries, name) of an open map."""
    info = ctypes.create_string_buffer(128)
    attr = ctypes.create_string_buffer(struct.pack("=IIQ", fd, len(info), ctypes.addressof(info)), 64)
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    typ, _id, key_size, value_size, max_entries, _flags = struct.unpack_from("=6I", info.raw, 0)
    name = info.raw[24:40].split(b"\0", 1)[0].decode(errors="replace")
    return typ, key_size, value_size, max_entries, name


def _lookup(fd: int, key: bytes, value_len: int) -> bytes | None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_len)
    attr = ctypes.create_string_buffer(struct.pack("=IIQQQ", fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0), 64)
    try:
        _bpf(BPF_MAP_LOOKUP_ELEM, attr)
    except OSError:
        return None  # ENOENT: a hash key removed meanwhile
    return v.raw


def _keys(fd: int, key_size: int, max_entries: int, array: bool):
    if array:
        for i in range(max_entries):
            yield struct.pack("=I", i)
        return
    prev = None
    for _ in range(max_entries + 1):
        nxt = ctypes.create_string_buffer(key_size)
        if prev is None:
            attr = ctypes.create_string_buffer(struct.pack("=IIQQ", fd, 0, 0, ctypes.addressof(nxt)), 64)
        else:
            pk = ctypes.create_string_buffer(prev, key_size)
            attr = ctypes.create_string_buffer(struct.pack("=IIQQ", fd, 0, ctypes.addressof(pk), ctypes.addressof(nxt)), 64)
        try:
            _bpf(BPF_MAP_GET_NEXT_KEY, attr)
        except OSError:
            return  # ENOENT: the last key
        prev = nxt.raw
        yield prev


BPF_MAP_TYPE_PERCPU_ARRAY = 6


def xdp_counters(pid: int) -> dict[str, int]:
    """{"accepted": packets over every rule, "sent": packets over every output} of the XDP program
    whose maps the process holds. Raises HarnessError when the process holds no such maps."""
    ncpu = possible_cpus()
    found: dict[str, int] = {}
    for map_id in map_ids(pid):
        try:
            fd = _open(map_id)
        except OSError:
            continue
        try:
            typ, key_size, value_size, max_entries, name = _info(fd)
            if name not in ("rule_counters", "output_counters"):
                continue
            slot = (value_size + 7) // 8 * 8
            total = 0
            for key in _keys(fd, key_size, max_entries, typ == BPF_MAP_TYPE_PERCPU_ARRAY):
                raw = _lookup(fd, key, slot * ncpu)
                if raw:
                    total += sum(struct.unpack_from("=Q", raw, c * slot)[0] for c in range(ncpu))
            found["accepted" if name == "rule_counters" else "sent"] = total
        finally:
            os.close(fd)
    if set(found) != {"accepted", "sent"}:
        raise HarnessError(f"process {pid} holds no XDP rule_counters/output_counters maps "
                           f"(found {sorted(found)}): is the daemon on --data-path xdp?")
    return found
