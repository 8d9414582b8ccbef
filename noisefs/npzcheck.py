"""Whole-archive checks of the ``.npz`` files noisefs writes and reads back (results,
checkpoints): a flipped bit anywhere is caught before anything is used.

``np.load`` checks a member's CRC only when that member is read to its end, and never
notices a member that a damaged central directory no longer lists (a flipped bit in a
name length swallows the entries after it: an optional array such as ``rho`` would then
silently be "not kept"). :func:`verify_npz` reads every member (CRC), and checks that the
members listed tile the archive from its first byte to its central directory.
"""

from __future__ import annotations

import os
import struct
import zipfile

LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes: ... name length, extra length
DATA_DESCRIPTOR = 0x08  # general-purpose flag: sizes follow the data (streamed writes)


def verify_npz(path: str | os.PathLike) -> None:
    """Raise ``zipfile.BadZipFile`` (or what ``zipfile`` raises for a damaged header)
    unless every member of ``path`` reads back whole and the members are all listed."""
    with zipfile.ZipFile(path) as archive:
        damaged = archive.testzip()
        if damaged is not None:
            raise zipfile.BadZipFile(f"member {damaged} fails its CRC")
        infos = sorted(archive.infolist(), key=lambda info: info.header_offset)
        if any(info.flag_bits & DATA_DESCRIPTOR for info in infos):
            return  # sizes after the data: the tiling below would need to parse them
        at = 0
        with open(path, "rb") as f:
            for info in infos:
                f.seek(at)
                local = f.read(LOCAL_HEADER.size)
                if info.header_offset != at or len(local) != LOCAL_HEADER.size:
                    raise zipfile.BadZipFile(f"bytes before member {info.filename} are unlisted")
                *_, name_len, extra_len = LOCAL_HEADER.unpack(local)
                at += LOCAL_HEADER.size + name_len + extra_len + info.compress_size
        if at != archive.start_dir:
            raise zipfile.BadZipFile("members are missing from the central directory")
