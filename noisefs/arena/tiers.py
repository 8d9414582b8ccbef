"""The two tiers a snapshot can live in, as objects: where its file is, how it is written,
read and unlinked, and how much room the filesystem under it has left.

:class:`TmpfsTier` (``data/`` under the root, charged against the quota): a new file is
created ``O_EXCL`` and ``posix_fallocate``-d to its full size before anything is written
through its memory map, so a full tmpfs answers ENOSPC here and never SIGBUS later;
recycled files are overwritten in place through a cached map (no new pages, no page-table
set-up). :class:`SpillTier` (the spill directory, bounded by the spill quota): plain
``pwrite`` into a file created ``O_EXCL``. ENOSPC from either filesystem becomes
:class:`NoRoom`; the caller unlinks the file and rolls the reservation back (then tries
the other tier, or waits). The ledger stores a tier by its :attr:`Tier.name`.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import secrets

import numpy as np

from noisefs.arena import snapfile
from noisefs.arena.accounting import META_SLACK
from noisefs.arena.maps import MapCache, map_file
from noisefs.arena.paths import FILE_FLAGS, unlink_quiet
from noisefs.arena.rows import signed_checksum
from noisefs.errors import CorruptSnapshot

SPILL_KEEP_FREE = 0.05  # default spill bound: keep 5 % of that filesystem free


class NoRoom(Exception):
    """A filesystem said ENOSPC (or EDQUOT) while a reserved file was written."""


class StaleSlot(Exception):
    """A free-list row whose file is gone or is not a proper slot file (e.g. the unlinks of
    an eviction that was rolled back): the row is dead and must be dropped."""


def _no_room(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def tmpfs_headroom(st: os.statvfs_result) -> tuple[int, int]:
    """Bytes and inodes of a tmpfs left to other programs."""
    total_bytes = st.f_blocks * st.f_frsize
    byte_room = max(256 * 1024, min(64 << 20, total_bytes // 50))
    inode_room = max(2, min(1024, st.f_files // 10))
    return byte_room, inode_room


class Tier:
    """One place snapshots live. Subclasses say how files are written there."""

    name: str = ""
    charged = False  # its files count against the arena quota and max_files
    recycles = False  # released files may join the free list instead of being unlinked

    def __init__(self, maps: MapCache) -> None:
        self.maps = maps
        # headers this process wrote: slot -> (header bytes, header, (key, *header_fields)), so
        # that reading it back compares bytes instead of parsing JSON
        self._headers: dict[str, tuple[bytes, dict, tuple]] = {}

    def _remember(self, p, header: bytes, check: int, arr, nbytes: int) -> None:
        if len(self._headers) >= 4096:
            self._headers.clear()
        length = 12 + int.from_bytes(header[8:12], "little")
        decoded = {"key": p.key, "dtype": arr.dtype.str, "shape": list(arr.shape)}
        decoded.update(nbytes=nbytes, checksum=check, block=snapfile.BLOCK)
        signed = signed_checksum(check)
        shape = p.meta_row.shape if p.meta_row is not None else json.dumps(list(arr.shape))
        self._headers[p.slot] = (
            header[:length],
            decoded,
            (p.key, nbytes, arr.dtype.str, shape, signed),
        )

    def __repr__(self) -> str:
        return f"<{self.name} tier>"

    # the directory ---------------------------------------------------------------
    def fd(self, create: bool = False) -> int | None:
        """The tier directory's fd; None when it does not exist and ``create`` is false."""
        raise NotImplementedError

    def new_slot(self, row_id: int) -> str:
        return f"{row_id:08x}-{secrets.token_hex(4)}.snap"

    def headroom(self, st: os.statvfs_result) -> tuple[int, int]:
        raise NotImplementedError

    def room(self, pending_bytes: int, pending_files: int) -> tuple[float, float]:
        """(bytes, inodes) still admissible on this tier's filesystem; inf when unlimited.
        ``pending_*``: reserved on it but perhaps not allocated yet."""
        st = os.fstatvfs(self.fd(create=True))
        byte_room, inode_room = self.headroom(st)
        room_bytes = (
            float("inf")
            if st.f_blocks == 0
            else st.f_bavail * st.f_frsize - byte_room - pending_bytes
        )
        room_files = float("inf") if st.f_files == 0 else st.f_favail - inode_room - pending_files
        return room_bytes, room_files

    def counter_deltas(self, nbytes: int, nfiles: int) -> dict[str, int]:
        """The ledger counters a file of this tier moves (see ``ledger.COUNTERS``)."""
        return {f"{self.name}_bytes": nbytes, f"{self.name}_files": nfiles}

    # files -----------------------------------------------------------------------
    def write(self, p, arr: np.ndarray, src: np.ndarray) -> int:
        """Write ``src`` (flat uint8 bytes of ``arr``) into slot ``p``; return its checksum."""
        raise NotImplementedError

    def unlink(self, slot: str) -> None:
        """Remove ``slot`` (absent is fine) and forget this process's maps of it."""
        fd = self.fd()
        if fd is not None:
            try:
                unlink_quiet(slot, fd)
            except OSError:  # e.g. EROFS: fine when there is no such file (never created)
                try:
                    os.stat(slot, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    pass
                else:
                    raise
        self.maps.forget([slot])
        self._headers.pop(slot, None)

    def read(self, key: str, row, verify: bool = True) -> np.ndarray:
        """The array of ledger ``row`` (read-only, memory-mapped), header checked and, with
        ``verify``, its checksum too. Raises :class:`CorruptSnapshot` when anything does not
        verify (a missing file included)."""
        mm = self.mapped(key, row)
        cached = self._headers.get(row.slot)
        if (
            cached is not None
            and cached[2] == (key, *row.header_fields)
            and mm[: len(cached[0])] == cached[0]
        ):
            header = cached[1]  # the very bytes this process wrote for this row
        else:
            header = check_header(mm, key, row)
        if verify:
            _, _, slot, _, nbytes, *_ = row
            if (
                snapfile.checksum(snapfile.data_bytes(mm, nbytes), header.get("block"))
                != (header["checksum"])
            ):
                raise CorruptSnapshot(
                    f"snapshot {key}: checksum mismatch in {slot}; the data is damaged"
                )
        return snapfile.array_view(mm, header)

    def mapped(self, key: str, row) -> mmap.mmap:
        """The mapped file of ``row`` (cached for recycling tiers); CorruptSnapshot when
        it is missing or not the size its row says."""
        slot, nbytes = row.slot, row.nbytes
        if self.recycles and self.maps.get(slot, False) is not None:
            # one stat: a file truncated (or replaced) since it was mapped must not be read
            # through the old map, which would SIGBUS past the new end of the file
            try:
                st = os.stat(slot, dir_fd=self.fd(), follow_symlinks=False)
            except FileNotFoundError:
                st = None
            mm = self.maps.get(slot, False, st.st_ino) if st is not None else None
            if mm is not None and st.st_size >= snapfile.HEADER_BYTES + nbytes:
                return mm
            self.maps.forget([slot])
        dir_fd = self.fd()
        if dir_fd is None:  # the tier's directory is gone: never fall back to the cwd
            raise CorruptSnapshot(
                f"snapshot {key}: the {self.name} directory holding {slot} is missing"
            )
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
            mm = map_file(fd, st.st_size, writable=False, populate=self.recycles)
        finally:
            os.close(fd)
        if self.recycles:
            self.maps.put(slot, False, mm, st.st_ino)
        return mm


def check_header(mm, key: str, row) -> dict:
    """The decoded header of a mapped snapshot file, checked against its ledger ``row``."""
    header = snapfile.decode_header(mm, key)
    shape = row.shape
    if (
        header.get("key") != key
        or header.get("nbytes") != row.nbytes
        or header.get("dtype") != row.dtype
        or header.get("shape") != (json.loads(shape) if isinstance(shape, str) else list(shape))
        or header.get("checksum") != row.unsigned_checksum
    ):
        raise CorruptSnapshot(f"snapshot {key}: header of {row.slot} does not match the ledger")
    return header


class TmpfsTier(Tier):
    """``data/`` under the arena root: memory-mapped files charged against the quota."""

    name = "tmpfs"
    charged = True
    recycles = True

    def __init__(self, maps: MapCache, data_fd: int) -> None:
        super().__init__(maps)
        self.data_fd = data_fd

    def fd(self, create: bool = False) -> int:
        return self.data_fd

    def headroom(self, st: os.statvfs_result) -> tuple[int, int]:
        byte_room, inode_room = tmpfs_headroom(st)
        return byte_room + META_SLACK, inode_room  # the ledger's growth lands here too

    def write(self, p, arr: np.ndarray, src: np.ndarray) -> int:
        # a recycled file of this process's lease whose map is cached: one stat checks that
        # the file is still the one mapped (instead of open, fstat, close)
        inode = getattr(p, "inode", None)
        mm = self.maps.get(p.slot, True, inode) if p.recycled and inode else None
        if mm is not None:
            try:
                st = os.stat(p.slot, dir_fd=self.data_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise StaleSlot(p.slot) from None
            if st.st_ino != inode:
                mm = None
            elif st.st_size != p.alloc or st.st_blocks * 512 < p.alloc:
                raise StaleSlot(p.slot)  # truncated: writing through the map would SIGBUS
        if mm is None:
            mm = self._open_for_write(p)
        check = snapfile.copy_and_hash(snapfile.data_bytes(mm, src.size), src)
        header = snapfile.encode_header(p.key, arr.dtype, arr.shape, src.size, check)
        mm[: snapfile.HEADER_BYTES] = header
        self._remember(p, header, check, arr, src.size)
        return check

    def _open_for_write(self, p):
        """The writable map of slot ``p``: a new file fully allocated, or a recycled one
        checked to be the fully allocated file its row describes. Sets ``p.inode``."""
        flags = os.O_RDWR | FILE_FLAGS | (0 if p.recycled else os.O_CREAT | os.O_EXCL)
        try:
            fd = os.open(p.slot, flags, 0o600, dir_fd=self.data_fd)
        except FileNotFoundError:
            if p.recycled:
                raise StaleSlot(p.slot) from None
            raise
        try:
            st = os.fstat(fd)
            mm = self.maps.get(p.slot, True, st.st_ino) if p.recycled else None
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
                self.maps.put(p.slot, True, mm, st.st_ino)
            p.inode = st.st_ino
        finally:
            os.close(fd)
        return mm


class SpillTier(Tier):
    """The spill directory (opened, and created, on first need; tagged files, since a spill
    directory may be shared by several arenas)."""

    name = "spill"

    def __init__(self, maps: MapCache, open_dir, tag: str) -> None:
        super().__init__(maps)
        self._open_dir = open_dir  # callable(create) -> fd | None
        self.tag = tag

    def fd(self, create: bool = False) -> int | None:
        return self._open_dir(create)

    def new_slot(self, row_id: int) -> str:
        return f"{self.tag}-{super().new_slot(row_id)}"

    def headroom(self, st: os.statvfs_result) -> tuple[int, int]:
        return int(st.f_blocks * st.f_frsize * SPILL_KEEP_FREE), 1

    def write(self, p, arr: np.ndarray, src: np.ndarray) -> int:
        check = snapfile.checksum(src)
        header = snapfile.encode_header(p.key, arr.dtype, arr.shape, src.size, check)
        try:
            fd = os.open(
                p.slot,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | FILE_FLAGS,
                0o600,
                dir_fd=self.fd(create=True),
            )
            try:
                pwrite_all(fd, memoryview(header), 0)
                pwrite_all(fd, memoryview(src), snapfile.HEADER_BYTES)
            finally:
                os.close(fd)
        except OSError as exc:
            # full, or made unwritable under a running put (remounted read-only, chmod):
            # both wait for the spill dir like a full one, and the error says which
            if _no_room(exc) or exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise NoRoom(exc.strerror or str(exc)) from exc
            raise
        return check


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    chunk = 64 << 20
    done = 0
    while done < len(data):
        written = os.pwrite(fd, data[done : done + chunk], offset + done)
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        done += written


def read_into(tier: Tier, key: str, row, out: np.ndarray) -> None:
    """Copy the snapshot of ``row`` into flat uint8 ``out``, hashing each block right after
    it is copied (while in cache): one pass instead of verify-then-copy. Raises
    :class:`CorruptSnapshot` when it does not verify; ``out`` must then not be used."""
    mm = tier.mapped(key, row)
    header = check_header(mm, key, row)
    src = snapfile.data_bytes(mm, row.nbytes)
    if header.get("block") == snapfile.BLOCK:
        check = snapfile.copy_and_hash(out, src)
    else:
        np.copyto(out, src)
        check = snapfile.checksum(out, header.get("block"))
    if check != header["checksum"]:
        raise CorruptSnapshot(
            f"snapshot {key}: checksum mismatch in {row.slot}; the data is damaged"
        )
