"""How a reserved snapshot becomes a file, and how a file becomes a verified array.

tmpfs tier: the file is created ``O_EXCL`` and ``posix_fallocate``-d to its full size
before anything is written through its memory map, so a full tmpfs answers ENOSPC here
and never SIGBUS later; free-list files are overwritten in place through a cached map
(no new pages, no page-table set-up). Spill tier: plain ``pwrite`` into a file created
``O_EXCL``. ENOSPC from either filesystem becomes :class:`NoRoom`; the caller unlinks the
file and rolls the reservation back (then tries spill, or waits).
"""

from __future__ import annotations

import errno
import json
import os

import numpy as np

from noisefs.arena import snapfile
from noisefs.arena.maps import MapCache, map_file
from noisefs.arena.paths import FILE_FLAGS
from noisefs.errors import CorruptSnapshot


class NoRoom(Exception):
    """A filesystem said ENOSPC (or EDQUOT) while a reserved file was written."""


class StaleSlot(Exception):
    """A free-list row whose file is gone or is not a proper slot file (e.g. the unlinks of
    an eviction that was rolled back): the row is dead and must be dropped."""


def _no_room(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def write_tmpfs(maps: MapCache, data_fd: int, p, arr: np.ndarray, src: np.ndarray) -> int:
    """Write ``src`` (flat uint8 bytes of ``arr``) into tmpfs slot ``p``; return its checksum."""
    flags = os.O_RDWR | FILE_FLAGS | (0 if p.recycled else os.O_CREAT | os.O_EXCL)
    try:
        fd = os.open(p.slot, flags, 0o600, dir_fd=data_fd)
    except FileNotFoundError:
        if p.recycled:
            raise StaleSlot(p.slot) from None
        raise
    try:
        st = os.fstat(fd)
        mm = maps.get(p.slot, True, st.st_ino) if p.recycled else None
        if mm is None:
            if not p.recycled:
                try:  # every page now: a full tmpfs gives ENOSPC here, never SIGBUS later
                    os.posix_fallocate(fd, 0, p.alloc)
                except OSError as exc:
                    if _no_room(exc):
                        raise NoRoom(str(exc)) from exc
                    raise
            elif st.st_size != p.alloc or st.st_blocks * 512 < p.alloc:
                raise StaleSlot(p.slot)  # not the fully allocated file this row describes
            mm = map_file(fd, p.alloc, writable=True)
            maps.put(p.slot, True, mm, st.st_ino)
    finally:
        os.close(fd)
    check = snapfile.copy_and_hash(snapfile.data_bytes(mm, src.size), src)
    mm[: snapfile.HEADER_BYTES] = snapfile.encode_header(
        p.key, arr.dtype, arr.shape, src.size, check
    )
    return check


def write_spill(spill_fd: int, p, arr: np.ndarray, src: np.ndarray) -> int:
    """Write ``src`` into a new spill file for slot ``p``; return its checksum."""
    check = snapfile.checksum(src)
    header = snapfile.encode_header(p.key, arr.dtype, arr.shape, src.size, check)
    fd = os.open(p.slot, os.O_WRONLY | os.O_CREAT | os.O_EXCL | FILE_FLAGS, 0o600, dir_fd=spill_fd)
    try:
        pwrite_all(fd, memoryview(header), 0)
        pwrite_all(fd, memoryview(src), snapfile.HEADER_BYTES)
    except OSError as exc:
        if _no_room(exc):
            raise NoRoom(str(exc)) from exc
        raise
    finally:
        os.close(fd)
    return check


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    chunk = 64 << 20
    done = 0
    while done < len(data):
        written = os.pwrite(fd, data[done : done + chunk], offset + done)
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        done += written


def read_verified(maps: MapCache, dir_fd: int | None, key: str, row) -> np.ndarray:
    """Map the file of ledger ``row`` read-only, check header and checksum, return the array.

    Raises :class:`CorruptSnapshot` when anything does not verify.
    """
    _, tier, slot, _, nbytes, dtype, shape, check, *_ = row
    mm = maps.get(slot, False) if tier == "tmpfs" else None
    if mm is None:
        if dir_fd is None:  # the tier's directory is gone: never fall back to the cwd
            raise CorruptSnapshot(f"snapshot {key}: the {tier} directory holding {slot} is missing")
        try:
            fd = os.open(slot, os.O_RDONLY | FILE_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            raise CorruptSnapshot(f"snapshot {key}: its file {slot} is missing") from None
        try:
            st = os.fstat(fd)
            if st.st_size < snapfile.HEADER_BYTES + nbytes:
                raise CorruptSnapshot(
                    f"snapshot {key}: file {slot} is truncated ({st.st_size} bytes)"
                )
            mm = map_file(fd, st.st_size, writable=False, populate=tier == "tmpfs")
        finally:
            os.close(fd)
        if tier == "tmpfs":
            maps.put(slot, False, mm, st.st_ino)
    header = snapfile.decode_header(mm, key)
    expected = (check + (1 << 64)) if check < 0 else check  # SQLite stores it signed
    if (
        header.get("key") != key
        or header.get("nbytes") != nbytes
        or header.get("dtype") != dtype
        or header.get("shape") != json.loads(shape)
        or header.get("checksum") != expected
    ):
        raise CorruptSnapshot(f"snapshot {key}: header of {slot} does not match the ledger")
    if snapfile.checksum(snapfile.data_bytes(mm, nbytes), header.get("block")) != expected:
        raise CorruptSnapshot(f"snapshot {key}: checksum mismatch in {slot}; the data is damaged")
    return snapfile.array_view(mm, header)
