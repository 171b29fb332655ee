"""Archive and member faults: the real export zip, rewritten with one thing wrong.

Each fault changes one gzip member (or the zip's directory) and the zip is written again around
it with valid CRCs, the way a server that built a bad member would serve it: only a reader that
looks inside the member can tell. Test archives are small, so this works in memory.
"""

from __future__ import annotations

import functools
import gzip
import io
import struct
import zipfile
import zlib
from collections.abc import Sequence

from simulator.faults import Fault
from simulator.generator import utc_hour

_EOCD = struct.Struct("<4s4H2LH")  # the end-of-central-directory record, without its comment


def empty_zip(folder: str | None) -> bytes:
    """A zip holding no member: only the ``folder`` entry, if any."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        if folder:
            info = zipfile.ZipInfo(f"{folder}/", (2026, 1, 1, 0, 0, 0))
            info.external_attr = (0o40755 << 16) | 0x10
            zf.writestr(info, b"")
    return buffer.getvalue()


def tamper(data: bytes, faults: Sequence[Fault]) -> bytes:
    """The zip ``data`` with ``faults`` applied in order (faults whose member it lacks do
    nothing)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        entries = [(info, zf.read(info)) for info in zf.infolist()]
    for fault in faults:
        if fault.kind == "damaged_directory":
            continue
        index = _target(entries, fault)
        if index is not None:
            entries[index] = _change(*entries[index], fault)
    out = _write(entries)
    if any(f.kind == "damaged_directory" for f in faults):
        out = _damage_directory(out)
    return out


def _target(entries: list[tuple[zipfile.ZipInfo, bytes]], fault: Fault) -> int | None:
    """The index of the member ``fault`` changes, or None when the archive has no such member."""
    files = [i for i, (info, _) in enumerate(entries) if not info.is_dir()]
    if fault.hour is not None:
        hour = utc_hour(fault.hour)
        tag = f"_{hour:%Y-%m-%d}_{hour.hour}#"
        files = [i for i in files if tag in entries[i][0].filename]
    return files[fault.member] if fault.member < len(files) else None


def _change(info: zipfile.ZipInfo, data: bytes, fault: Fault) -> tuple[zipfile.ZipInfo, bytes]:
    if fault.kind == "member_name":
        assert fault.name is not None
        renamed = zipfile.ZipInfo("x", info.date_time)
        renamed.filename = fault.name  # after the constructor, which would cut a NUL off
        renamed.external_attr = info.external_attr
        return renamed, data
    if fault.kind == "not_gzip":
        return info, gzip.decompress(data)
    if fault.kind == "bomb":
        return info, bomb(fault.size)
    lines = gzip.decompress(data).splitlines(keepends=True)
    if fault.kind == "cut_member":
        keep = len(lines) // 2 if fault.at is None else fault.at
        return info, cut_gzip(b"".join(lines[:keep]))
    if fault.kind == "insert_line":
        assert fault.line is not None
        at = len(lines) // 2 if fault.at is None else fault.at
        lines.insert(at, fault.line + b"\n")
        return info, _gzip(b"".join(lines))
    raise ValueError(f"not a member fault: {fault.kind}")


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def cut_gzip(data: bytes) -> bytes:
    """A gzip member of ``data`` cut at a flush point: header and blocks, no final block, no
    trailer. Inflating it gives exactly ``data``, and no error, to a reader that does not ask
    whether the stream ended."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


@functools.lru_cache(maxsize=4)
def bomb(size: int) -> bytes:
    """A gzip member (honest trailer) of ``size`` bytes of ``{}`` lines."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"{}\n" * (1 << 18)
    parts = [compressor.compress(block) for _ in range(size // len(block))]
    parts.append(compressor.compress(block[: size % len(block)]))
    parts.append(compressor.flush())
    return b"".join(parts)


def _write(entries: list[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for info, data in entries:
            fresh = zipfile.ZipInfo("x", info.date_time)
            fresh.filename = info.filename
            fresh.external_attr = info.external_attr
            fresh.compress_type = zipfile.ZIP_STORED
            zf.writestr(fresh, data)
    return buffer.getvalue()


def _damage_directory(data: bytes) -> bytes:
    """Break the central directory's first signature (found through the end record)."""
    eocd = data.rindex(b"PK\x05\x06")
    offset = _EOCD.unpack_from(data, eocd)[6]
    damaged = bytearray(data)
    damaged[offset : offset + 4] = b"PK\x01\x99"
    return bytes(damaged)
