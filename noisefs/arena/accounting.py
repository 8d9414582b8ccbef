"""The one accounting formula: what an arena charges against ``quota_bytes`` and ``max_files``.

``du -s --block-size=1 ROOT`` and ``find ROOT | wc -l`` - 1 see four kinds of things, and
each is counted once, here:

- data files under ``data/``: ledger rows (``tmpfs_bytes``/``tmpfs_files``) plus what the
  owners hold outside rows under their leases (``lease_*``: reserved, of which ``used_*``
  exist as files);
- owner lock files under ``owners/`` (``owner_files``);
- foreign files (``<root>/inbox/...`` written by programs that reserve nothing), reported
  by the daemon through ``Arena.set_foreign_usage`` (``foreign_*``) or measured under
  ``inbox/`` by :func:`measure`, whichever is larger;
- metadata: every other entry under the root, *measured* by :func:`measure` from a listing
  of what exists (the arena's ``data/``, ``owners/``, ``ledger.db`` and its journal; the
  daemon's ``daemon.lock`` and ``daemon/`` with its contents; the ``inbox/`` directory
  itself), plus the journal while absent (SQLite makes it at the next write), a rollback
  journal as large as the ledger and a slack for growth between two measurements.

``charged`` is the admission figure (leases counted whole: reserved space is spoken for);
``in_use`` is what ``stats`` reports (leases counted by the files that exist).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from noisefs.arena import ledger

META_SLACK = 512 * 1024  # ledger growth between two measurements (journal, new pages), dir blocks
LEDGER_JOURNAL = ledger.DB_NAME + "-journal"
ALWAYS_COUNTED = (LEDGER_JOURNAL,)  # counted even while absent: SQLite creates it on demand
# directories whose contents are accounted elsewhere (rows, leases, lock files, foreign usage):
# only the directory inode itself (and its blocks) is metadata
ACCOUNTED_DIRS = ("data", "owners", "inbox")
INBOX = "inbox"
WALK_LIMIT = 10_000  # entries measured under other directories (the daemon's small state)


@dataclass(frozen=True)
class Metadata:
    """What the root holds besides accounted data: measured bytes and inodes, and the names."""

    bytes: int
    inodes: int
    names: tuple[str, ...]
    # what is under inbox/ now (foreign files, their run and step directories): charged as
    # the larger of this and what the daemon last reported, so that a lease granted between
    # two of the daemon's scans still sees every foreign file that exists
    inbox_bytes: int = 0
    inbox_inodes: int = 0


def _walk(dir_fd: int, name: str, budget: list[int]) -> tuple[int, int]:
    """Blocks and inodes of the tree at ``name`` (no symlink followed, at most ``budget``)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return 0, 0
    nbytes, inodes = st.st_blocks * 512, 1
    budget[0] -= 1
    if not stat.S_ISDIR(st.st_mode) or budget[0] <= 0:
        return nbytes, inodes
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return nbytes, inodes
    try:
        for child in os.listdir(fd):
            if budget[0] <= 0:
                break
            b, i = _walk(fd, child, budget)
            nbytes, inodes = nbytes + b, inodes + i
    finally:
        os.close(fd)
    return nbytes, inodes


def measure(root_fd: int) -> Metadata:
    """Measure the metadata of the arena whose root directory is ``root_fd``."""
    names = tuple(sorted(os.listdir(root_fd)))
    total, inodes = META_SLACK, 0
    budget = [WALK_LIMIT]
    db = journal = 0
    inbox = (0, 0)
    for name in names:
        if name == INBOX:
            b, i = _walk(root_fd, name, budget)
            st_bytes, st_inodes = _own_inode(root_fd, name)
            total, inodes = total + st_bytes, inodes + st_inodes
            inbox = (max(0, b - st_bytes), max(0, i - st_inodes))
            continue
        if name in ACCOUNTED_DIRS:
            b, i = _own_inode(root_fd, name)
            total, inodes = total + b, inodes + i
            continue
        b, i = _walk(root_fd, name, budget)
        if name == ledger.DB_NAME:
            db = b
        elif name == LEDGER_JOURNAL:
            journal = b
            b = 0  # counted below as max(db, journal): a transaction may touch every page
        total, inodes = total + b, inodes + i
    total += max(db, journal)
    inodes += sum(1 for name in ALWAYS_COUNTED if name not in names)
    if "daemon" in names:  # the daemon rewrites its status file through a temporary copy
        inodes += 1
    return Metadata(total, inodes, names, *inbox)


def _own_inode(dir_fd: int, name: str) -> tuple[int, int]:
    """Blocks and inode of the directory ``name`` itself (0, 0 when it is gone)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return 0, 0
    return st.st_blocks * 512, 1


def charged(c: dict, meta: Metadata) -> tuple[int, int]:
    """(bytes, inodes) charged for admission: rows, whole leases, foreign files, metadata."""
    foreign_bytes = max(c["foreign_bytes"], meta.inbox_bytes)
    foreign_files = max(c["foreign_files"], meta.inbox_inodes)
    return (
        c["tmpfs_bytes"] + c["lease_bytes"] + foreign_bytes + meta.bytes,
        c["tmpfs_files"] + c["lease_files"] + foreign_files + c["owner_files"] + meta.inodes,
    )


def in_use(c: dict, used_bytes: int, used_files: int, meta: Metadata) -> tuple[int, int]:
    """(bytes, inodes) in use: like :func:`charged` with leases counted by their files."""
    return charged({**c, "lease_bytes": used_bytes, "lease_files": used_files}, meta)
