"""``Arena``: the quota- and inode-bounded snapshot store on tmpfs with a spill tier.

Accounting model (one formula, ``accounting.py``): what ``du -s --block-size=1 ROOT`` and
``find ROOT | wc -l`` - 1 report is bounded by ``quota_bytes`` and ``max_files`` at every
instant, whatever the number of processes: every data file is reserved in the ledger
before it is created or grown (as a row, or inside its owner's lease) and unlinked before
its reservation goes. Charged = data rows + leases + foreign files (``set_foreign_usage``)
+ owner lock files + the metadata measured under the root (ledger, journal, the daemon's
entries) and a slack.

Fast path (``lease.py``): a put, get and release in one process touch the ledger not at
all; rows appear within ``lease_publisher.PUBLISH_DELAY_S`` (or at once when this handle
lists, counts, moves or closes), and other processes that were handed a key wait for them.

Tiers are objects (``tiers.py``: ``TmpfsTier``, ``SpillTier``); ``move`` (``move.py``)
changes a ready snapshot's tier under the same key, atomically in the ledger, and leaves it
where it was when the write into the target fails.

Process model: a handle belongs to the process that opened it. After ``fork()`` the child
must open its own ``Arena(root=...)``; any call on the inherited handle raises
``ArenaError``. A handle may be shared by the threads of its process.

Consumers release what they consume. Releasing a key invalidates views of it held by
*other* processes (its file may be recycled); views held by this process, and every numpy
view derived from them, stay valid (their file is unlinked rather than recycled).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np

from noisefs.arena import audit, ledger, lifecycle, tiers
from noisefs.arena import lease as lease_mod
from noisefs.arena.access import Reader
from noisefs.arena.admission import Admission
from noisefs.arena.maps import MapCache
from noisefs.arena.parts import ArenaParts, Bounds, Owner, SpillPause
from noisefs.arena.paths import (
    default_root,
    fd_path,
    open_private_dir,
    open_subdir,
    validate_index,
)
from noisefs.arena.queries import Queries
from noisefs.arena.settings import StoredBounds
from noisefs.arena.writes import Writer
from noisefs.errors import (
    ArenaError,
    InputError,
    UnsafePathError,
)
from noisefs.options import DEFAULT_PUT_TIMEOUT_S
from noisefs.units import parse_size

log = logging.getLogger("noisefs.arena")


class Arena:
    """A bounded snapshot arena; see the module docstring and docs/contract.md "Arena guarantees".

    ``quota``, ``max_files``, ``spill_dir`` and ``spill_quota`` default to the values stored
    in the arena (1 GiB, 10 000, ``default_spill_dir(root)``, 5 % of the spill filesystem
    kept free for a new one); values given explicitly are stored for every process.
    """

    def __init__(
        self,
        root=None,
        quota=None,
        max_files=None,
        spill_dir=None,
        spill_quota=None,
        timeout_s: float = DEFAULT_PUT_TIMEOUT_S,
        *,
        _register: bool = True,
        _auto_gc: bool = True,
    ) -> None:
        self._pid = os.getpid()
        self._closed = True
        self.timeout_s = float(timeout_s)
        if self.timeout_s < 0:
            raise InputError(f"timeout_s must be >= 0, not {timeout_s!r}")
        self.root = Path(os.path.abspath(root if root is not None else default_root()))
        explicit = {}
        if quota is not None:
            explicit["quota_bytes"] = parse_size(quota)
        if max_files is not None:
            explicit["max_files"] = validate_index("max_files", max_files)
        if spill_dir is not None:
            explicit["spill_dir"] = os.path.abspath(spill_dir)
        if spill_quota is not None:
            explicit["spill_quota_bytes"] = parse_size(spill_quota)
        self._root_fd = open_private_dir(self.root, create=_register)
        self._fds = [self._root_fd]
        # the arena's identity whatever path spelled it (symlinked ancestors, relative paths)
        root_stat = os.fstat(self._root_fd)
        self._identity = f"{root_stat.st_dev}:{root_stat.st_ino}"
        self._owner = Owner()
        self._bounds: Bounds | None = None  # read from the ledger below
        self._spill_dir_fd: int | None = None
        self._maps = MapCache()
        self._stored = StoredBounds(self.root, self._maps)
        self._spill_lock = threading.Lock()
        # spill files carry this tag: gc touches only its own arena's files in a shared dir
        self.spill_tag = hashlib.sha256(str(self.root).encode()).hexdigest()[:8]
        try:
            self._data_fd = open_subdir(self._root_fd, "data", self.root, create=_register)
            self._fds.append(self._data_fd)
            self.tmpfs = tiers.TmpfsTier(self._maps, self._data_fd)
            self.spill = tiers.SpillTier(self._maps, self._spill_fd, self.spill_tag)
            self.tiers = (self.tmpfs, self.spill)
            self._owners_fd = open_subdir(self._root_fd, "owners", self.root, create=_register)
            self._fds.append(self._owners_fd)
            db = fd_path(self._root_fd, ledger.DB_NAME, self.root)
            try:
                self._ledger = ledger.Ledger(
                    db, create=_register, shown=str(self.root / ledger.DB_NAME)
                )
            except sqlite3.OperationalError as exc:
                raise ArenaError(
                    f"{self.root} is not a noisefs arena (no readable ledger: {exc})"
                ) from exc
            with self._ledger.transaction() as conn:
                self._stored.settle(conn, explicit, self._root_fd)
            self._bounds = self._stored.bounds
            self.parts = ArenaParts(
                root=self.root,
                identity=self._identity,
                pid=self._pid,
                root_fd=self._root_fd,
                owners_fd=self._owners_fd,
                ledger=self._ledger,
                tmpfs=self.tmpfs,
                spill=self.spill,
                maps=self._maps,
                owner=self._owner,
                bounds=self._bounds,
                spill_pause=SpillPause(),
                refresh_bounds=self._stored.refresh,
            )
            self._admission = Admission(self.parts)
            self._lease = lease_mod.Lease(self.parts, self._admission)  # inert until registered
            self._reader = Reader(self.parts, self._lease)
            self._writer = Writer(
                self.parts, self._lease, self._admission, self.timeout_s, self.stats
            )
            self._queries = Queries(
                self.parts, self._lease, self._admission, self._reader, self._writer.rollback
            )
            self._closed = False
            if _auto_gc:
                audit.gc(self.parts)
            if _register:
                lifecycle.register_owner(self.parts, self.timeout_s)
                lifecycle.track(self)
        except BaseException:
            if hasattr(self, "_ledger"):
                self._ledger.close()
            self._close_fds()
            raise

    @property
    def quota_bytes(self) -> int:
        return self._bounds.quota_bytes

    @property
    def max_files(self) -> int:
        return self._bounds.max_files

    @property
    def spill_quota_bytes(self) -> int | None:
        return self._bounds.spill_quota_bytes

    @property
    def spill_dir(self) -> Path:
        return self._bounds.spill_dir

    @classmethod
    def open_existing(cls, root=None) -> Arena:
        """A maintenance handle on an existing arena: creates nothing, registers no owner,
        runs no gc on open, cannot ``put``. Raises ``FileNotFoundError`` for a missing root."""
        return cls(root, _register=False, _auto_gc=False)

    # ------------------------------------------------------------------ lifecycle

    def _close_fds(self) -> None:
        for fd in [*self._fds, self._owner.lock_fd, self._spill_dir_fd]:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fds = []
        self._owner.lock_fd = self._spill_dir_fd = None

    def close(self) -> None:
        """Unlink the free list, hand this handle's snapshots to nobody, drop the lock file.

        Ready snapshots stay until released or adopted (a clean close means they were left
        for a consumer); a handle that dies without closing has them reclaimed by ``gc``.
        """
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self._pid:
            return
        self._maps.clear()
        unregistered = False
        try:
            if self._owner.id is None:
                unregistered = True
                return  # maintenance handle: owns nothing
            lifecycle.unregister_owner(self.parts, self.timeout_s, before=self._lease.close)
            unregistered = True
        finally:
            self._ledger.close()
            if not unregistered:
                # the owner is still in the ledger (its filesystem full, say): its lock stays
                # held until this process exits, so gc never takes a live process for dead
                self._owner.lock_fd = None
            self._close_fds()

    def put(self, array, run: str = "r1", step: int = 0, batch: int = 0) -> str:
        """Store a copy of ``array``; return its key. Blocks (backpressure) up to ``timeout_s``
        (then ``ArenaFull``); ``run``, ``step`` and ``batch`` are recorded with it."""
        self._check()
        return self._writer.put(array, run, step, batch)

    def get(self, key: str) -> np.ndarray:
        """A read-only array (memory-mapped) of snapshot ``key``; its checksum is verified.

        Raises ``KeyError`` for a key that does not exist (or was released meanwhile) and
        ``CorruptSnapshot`` when the stored bytes do not verify.
        """
        self._check()
        return self._reader.get(key)

    def read_into(self, key: str, out: np.ndarray) -> np.ndarray:
        """Copy snapshot ``key`` into ``out`` (C-contiguous, its dtype and shape), verifying
        each 512 KiB block right after copying it: one pass instead of the two of ``get``
        followed by a copy. Raises like :meth:`get`; after ``CorruptSnapshot`` the contents
        of ``out`` are undefined and must not be used (nothing unverified is returned).
        Returns ``out``. Against ``get`` + ``np.copyto`` on the loaded 2-core development
        machine: 1.2x faster at 16-64 MiB in one run, 0.74x in another, 0.86-0.94x at
        1 MiB and below (a 512 KiB block barely fits its 512 KiB L2 once copied)."""
        self._check()
        return self._reader.read_into(key, out)

    def release(self, key: str) -> None:
        """Free snapshot ``key``: its file joins the free list (recycled) or is unlinked."""
        self._check()
        self._reader.release(key)

    def adopt(self, keys) -> None:
        """Make this handle the owner of ready snapshots (e.g. put by a worker process).

        All or nothing: raises ``KeyError`` naming the keys that do not exist (or are not
        ready), and then adopts none.
        """
        self._check()
        self._reader.adopt(keys)

    def live_owners(self) -> list[dict]:
        """Owners whose process holds its lock (or is starting); read-only probe."""
        self._check()
        return self._queries.live_owners()

    def keys(self, run: str | None = None) -> list[str]:
        """Keys of ready snapshots (of ``run``), oldest first. Other processes' newest
        snapshots show up once published (``lease_publisher.PUBLISH_DELAY_S``)."""
        self._check()
        return self._queries.keys(run)

    def info(self, key: str) -> dict:
        """What the ledger records of ready snapshot ``key`` (run, step, batch, dtype,
        shape, tier, sizes, owner, created); ``KeyError`` when there is none."""
        self._check()
        return self._queries.info(key)

    def move(self, key: str, tier: str = "spill") -> bool:
        """Move ready snapshot ``key`` to ``tier`` ('spill' or 'tmpfs'), keeping its key.

        Atomic in the ledger: readers see it whole in one tier or the other. False when it
        cannot move (no room in the target, the write there failed, or it was released
        meanwhile); it then stays where it was. True when it is (now) in ``tier``. Raises
        ``KeyError`` for an unknown key and ``CorruptSnapshot`` when its data does not
        verify (it is not moved)."""
        self._check()
        return self._queries.move(key, tier)

    def cold_keys(self, limit: int) -> list[str]:
        """Up to ``limit`` ready tmpfs snapshots, coldest (put longest ago) first: what to
        :meth:`move` to spill to make room on the tmpfs."""
        self._check()
        return self._queries.cold_keys(limit)

    def set_foreign_usage(self, nbytes: int, nfiles: int) -> None:
        """Record that files this arena did not write (the daemon's inbox) occupy ``nbytes``
        and ``nfiles`` under the root. Admission counts them against the quota and
        ``max_files`` from now on; the record belongs to this handle's owner (each call
        replaces its previous figures) and goes when it closes or dies."""
        self._check()
        self._queries.set_foreign_usage(nbytes, nfiles)

    def stats(self) -> dict:
        """The arena's figures: bytes and files used (as ``du`` and ``find`` count them),
        peaks, spilled, free list, leases, foreign usage, metadata, owners, runs."""
        self._check()
        return self._queries.stats()

    def check(self, fix: bool = False) -> list[str]:
        """Compare ledger and files; ``fix=True`` repairs what can be repaired."""
        self._check()
        return self._queries.check(fix)

    def gc(self, dry_run: bool = False, unowned: bool = False) -> dict:
        """Reclaim what dead processes left; never a live owner's data. With ``unowned``,
        also drop ready snapshots that handles closed without consuming."""
        self._check()
        return self._queries.gc(dry_run, unowned)

    def publish(self) -> None:
        """Make every snapshot this handle has put visible to other processes now, rather
        than up to ``lease_publisher.PUBLISH_DELAY_S`` later: call it before handing keys to
        another process, so that a handle that dies afterwards leaves rows, not unknown keys."""
        self._check()
        self._lease.flush()

    def __enter__(self) -> Arena:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Arena(root={str(self.root)!r}, quota={self.quota_bytes}, max_files={self.max_files})"
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def _check(self) -> None:
        if os.getpid() != self._pid:
            raise ArenaError(
                f"this Arena handle belongs to process {self._pid}; open a new Arena(root={str(self.root)!r}) "
                "in this process"
            )
        if self._closed:
            raise ArenaError(f"arena {self.root}: handle is closed")

    def _spill_fd(self, create: bool) -> int | None:
        """The spill directory's fd, opened (and created when asked) on first need; None when
        it does not exist and ``create`` is false."""
        with self._spill_lock:
            if self._spill_dir_fd is None:
                try:
                    self._spill_dir_fd = open_private_dir(
                        self.spill_dir, create=create, what="spill"
                    )
                except FileNotFoundError:
                    if create:
                        raise UnsafePathError(
                            f"spill directory {self.spill_dir} cannot be created; choose another --spill"
                        ) from None
                    return None
            return self._spill_dir_fd

    def prepare_spill(self) -> None:
        """Create and check the spill directory now, so a bad one fails before any work."""
        self._check()
        self._spill_fd(create=True)

    def tier(self, name: str) -> tiers.Tier:
        """The tier object stored in the ledger as ``name`` ('tmpfs' or 'spill')."""
        return self.parts.tier(name)
