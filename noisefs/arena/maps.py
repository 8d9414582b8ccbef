"""A per-process cache of memory maps of tmpfs snapshot files.

Mapping a 16 MiB file costs as much as copying it (4096 page-table entries to build and
tear down), so the mappings of recycled free-list files are kept: putting into a recycled
slot, or getting a snapshot this process already mapped, touches no page tables. Slot names
are never reused, so a cached mapping always shows the file its name refers to. Entries
are dropped when this process unlinks the file; a file unlinked by another process stays
pinned (invisible to ``du``, visible to ``df``) until it ages out of this small LRU, whose
byte budget is the free list's share of the quota. A recycled slot is reused through its
cached map only when the file's inode is the one mapped.
"""

from __future__ import annotations

import mmap
import threading
from collections import OrderedDict

MAX_ENTRIES = 32
MAX_BYTES = 512 << 20
POPULATE = getattr(mmap, "MAP_POPULATE", 0)


class MapCache:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # (slot, writable) -> (map, inode of the mapped file)
        self._maps: OrderedDict[tuple[str, bool], tuple[mmap.mmap, int]] = OrderedDict()
        self._bytes = 0

    def get(self, slot: str, writable: bool, inode: int | None = None) -> mmap.mmap | None:
        """The cached map of ``slot``; with ``inode``, only if it maps that very file."""
        with self._lock:
            entry = self._maps.get((slot, writable))
            if entry is None or (inode is not None and entry[1] != inode):
                return None
            self._maps.move_to_end((slot, writable))
            return entry[0]

    def put(self, slot: str, writable: bool, mm: mmap.mmap, inode: int = 0) -> None:
        with self._lock:
            old = self._maps.pop((slot, writable), None)
            if old is not None:
                self._bytes -= len(old[0])
            if len(mm) > self.max_bytes:
                return  # never cached: it would pin more than the whole budget
            self._maps[(slot, writable)] = (mm, inode)
            self._bytes += len(mm)
            while self._maps and (len(self._maps) > MAX_ENTRIES or self._bytes > self.max_bytes):
                _, dropped = self._maps.popitem(last=False)
                self._bytes -= len(dropped[0])

    def slots(self) -> set[str]:
        with self._lock:
            return {slot for slot, _ in self._maps}

    def forget(self, slots) -> None:
        with self._lock:
            for slot in slots:
                for writable in (True, False):
                    entry = self._maps.pop((slot, writable), None)
                    if entry is not None:
                        self._bytes -= len(entry[0])

    def clear(self) -> None:
        with self._lock:
            self._maps.clear()
            self._bytes = 0


def map_file(fd: int, size: int, writable: bool, populate: bool = True) -> mmap.mmap:
    flags = mmap.MAP_SHARED | (POPULATE if populate else 0)
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    return mmap.mmap(fd, size, flags=flags, prot=prot)
