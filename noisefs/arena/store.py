"""``Arena``: the quota- and inode-bounded snapshot store on tmpfs with a spill tier.

Accounting model: what ``du -s --block-size=1 ROOT`` and ``find ROOT | wc -l`` - 1 report
is bounded by ``quota_bytes`` and ``max_files`` at every instant, whatever the number of
processes: every data file is reserved in the ledger before it is created or grown and
unlinked before its row goes. Charged bytes = allocated size of every data file (writing,
ready, free-list) + the measured ledger files + a fixed slack; charged inodes = data files
+ owner lock files + 4 fixed metadata inodes (data/, owners/, ledger.db, its journal).

Process model: a handle belongs to the process that opened it. After ``fork()`` the child
must open its own ``Arena(root=...)``; any call on the inherited handle raises
``ArenaError``. A handle may be shared by the threads of its process.

Consumers release what they consume. Releasing a key invalidates views of it held by
*other* processes (its file may be recycled); views held by this process, and every numpy
view derived from them, stay valid (their file is unlinked rather than recycled).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import multiprocessing.util
import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path

import numpy as np

from noisefs.arena import accounting, audit, ledger, lifecycle, owners, snapfile, tiers, views
from noisefs.arena import lease as lease_mod
from noisefs.arena import move as moving
from noisefs.arena.admission import FREE_FRACTION, LEDGER_GROWTH, Admission
from noisefs.arena.maps import MAX_BYTES, MapCache
from noisefs.arena.paths import (
    default_root,
    default_spill_dir,
    fd_path,
    open_private_dir,
    open_subdir,
    validate_index,
    validate_run,
)
from noisefs.errors import (
    ArenaError,
    ArenaFull,
    CorruptSnapshot,
    InputError,
    UnsafePathError,
)
from noisefs.units import format_bytes, parse_size

log = logging.getLogger("noisefs.arena")

DEFAULT_SETTINGS = {
    "quota_bytes": 1 << 30,
    "max_files": 10_000,
    "spill_dir": None,
    "spill_quota_bytes": None,
}
NUMERIC_KINDS = "biufc"
# Test-only fault injection: when set to a path, put() writes that file once the snapshot's
# data file is written but not yet published, then hangs (to be SIGKILLed by the test).
FAULT_PAUSE_ENV = "NOISEFS_FAULT_PAUSE"


_open_handles: weakref.WeakSet = weakref.WeakSet()
_finalizer_pid = 0


def _close_all() -> None:
    """Close this process's handles that are still open when it exits normally (so a
    worker that simply exits hands its snapshots over instead of looking crashed)."""
    for arena in list(_open_handles):
        if arena._pid == os.getpid():
            try:
                arena.close()
            except Exception:  # noqa: BLE001 - exiting; gc reclaims whatever is left
                log.debug("closing %r at exit failed", arena, exc_info=True)


atexit.register(_close_all)


def _track(arena: Arena) -> None:
    global _finalizer_pid
    _open_handles.add(arena)
    if _finalizer_pid != os.getpid():  # forked children exit through multiprocessing, not atexit
        multiprocessing.util.Finalize(None, _close_all, exitpriority=10)
        _finalizer_pid = os.getpid()


class Arena:
    """A bounded snapshot arena; see the module docstring and SPEC.md "Arena guarantees".

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
        timeout_s: float = 60.0,
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
        self._lock_fd: int | None = None
        self._lease = lease_mod.Lease(self)  # inert until an owner is registered
        self._owner_id: int | None = None
        self._spill_dir_fd: int | None = None
        self._spill_blocked_until = 0.0
        self._maps = MapCache()
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
                self._ledger = ledger.Ledger(db, create=_register)
            except sqlite3.OperationalError as exc:
                raise ArenaError(
                    f"{self.root} is not a noisefs arena (no readable ledger: {exc})"
                ) from exc
            with self._ledger.transaction() as conn:
                found = ledger.get_settings(conn)
                stored = {**DEFAULT_SETTINGS, **found, **explicit}
                # the spill dir is resolved once, by the creator, and stored: every process
                # (whatever its $XDG_CACHE_HOME) must look for spilled snapshots in one place
                stored["spill_dir"] = str(stored["spill_dir"] or default_spill_dir(self.root))
                moved = found.get("spill_dir") not in (None, stored["spill_dir"])
                if moved and ledger.counters(conn)["spill_files"]:
                    raise ArenaError(
                        f"arena {self.root} holds spilled snapshots in {found['spill_dir']}; it cannot "
                        f"spill to {stored['spill_dir']} until they are consumed (or reclaimed by "
                        "`noisefs gc`); leave --spill out to use the arena's own"
                    )
                self._apply_settings(stored)
                self._check_minimum()  # before storing: a refused value is never kept
                if any(found.get(k) != stored[k] for k in DEFAULT_SETTINGS):
                    ledger.put_settings(conn, {k: stored[k] for k in DEFAULT_SETTINGS})
            self._admission = Admission(self)
            self._closed = False
            if _auto_gc:
                audit.gc(self)
            if _register:
                lifecycle.register_owner(self)
                _track(self)
        except BaseException:
            if hasattr(self, "_ledger"):
                self._ledger.close()
            self._close_fds()
            raise

    def _apply_settings(self, stored: dict) -> None:
        self.quota_bytes = int(stored["quota_bytes"])
        self.max_files = int(stored["max_files"])
        sq = stored["spill_quota_bytes"]
        self.spill_quota_bytes = None if sq is None else int(sq)
        self.spill_dir = Path(stored["spill_dir"] or default_spill_dir(self.root))
        # mappings kept beyond their file's life pin tmpfs pages: bound them like the free list
        self._maps.max_bytes = int(min(MAX_BYTES, self.quota_bytes * FREE_FRACTION))

    def _refresh_settings(self, conn) -> None:
        """Adopt bounds another process stored since this handle opened (one small query)."""
        found = ledger.get_settings(conn)
        if found.get("spill_dir") not in (None, str(self.spill_dir)):
            found["spill_dir"] = str(self.spill_dir)  # an open handle keeps its spill dir
        self._apply_settings({**DEFAULT_SETTINGS, **found})

    @classmethod
    def open_existing(cls, root=None) -> Arena:
        """A maintenance handle on an existing arena: creates nothing, registers no owner,
        runs no gc on open, cannot ``put``. Raises ``FileNotFoundError`` for a missing root."""
        return cls(root, _register=False, _auto_gc=False)

    def live_owners(self) -> list[dict]:
        """Owners whose process holds its lock (or is starting); read-only probe."""
        self._check()
        out = []
        for owner_id, pid, lock_name, started in self._ledger.conn().execute(
            "SELECT id, pid, lock_name, started FROM owners"
        ):
            if owner_id == self._owner_id or owners.is_live(
                self._owners_fd, lock_name, pid, started
            ):
                out.append({"id": owner_id, "pid": pid, "started": started})
        return out

    # ------------------------------------------------------------------ lifecycle

    def _check_minimum(self) -> None:
        measured = accounting.measure(self._root_fd)
        meta = measured.bytes
        smallest = meta + snapfile.alloc_for(1) + LEDGER_GROWTH  # room for one tiny snapshot
        if self.quota_bytes < smallest:
            raise ArenaError(
                f"arena {self.root}: quota {format_bytes(self.quota_bytes)} is smaller than its metadata "
                f"({format_bytes(meta)} for the ledger and slack); a quota of "
                f"{format_bytes(smallest)} holds one tiny snapshot, 64MiB or more suits real runs"
            )
        inodes = max(measured.inodes, len(ledger.DB_FILES) + 2)  # data/, owners/, ledger
        if self.max_files < inodes + 2:
            raise ArenaError(
                f"arena {self.root}: max_files {self.max_files} leaves no room for snapshots "
                f"({inodes} inodes of metadata + 1 lock file per process); use at least {inodes + 8}"
            )

    def _close_fds(self) -> None:
        for fd in [*self._fds, self._lock_fd, self._spill_dir_fd]:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fds = []
        self._lock_fd = self._spill_dir_fd = None

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
        try:
            if self._owner_id is None:
                return  # maintenance handle: owns nothing
            self._lease.close()
            lifecycle.unregister_owner(self)
        finally:
            self._ledger.close()
            self._close_fds()

    def __enter__(self) -> Arena:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Arena(root={str(self.root)!r}, quota={self.quota_bytes}, max_files={self.max_files})"
        )

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
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise ArenaError(f"arena {self.root}: unknown tier {name!r} in the ledger")

    def _forget_slots(self, slots) -> None:
        self._maps.forget(slots)

    # ------------------------------------------------------------------ put

    def put(self, array, run: str = "r1", step: int = 0, batch: int = 0) -> str:
        """Store a copy of ``array``; return its key. Blocks (backpressure) up to ``timeout_s``."""
        self._check()
        if self._owner_id is None:
            raise ArenaError(f"arena {self.root}: this handle is read-only (maintenance)")
        validate_run(run)
        step = validate_index("step", step)
        batch = validate_index("batch", batch)
        arr = np.asarray(array)
        if arr.dtype.kind not in NUMERIC_KINDS or arr.dtype.fields is not None:
            raise InputError(f"arena stores numeric arrays only, not dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr) if arr.ndim else arr.reshape(())
        src = arr.reshape(-1).view(np.uint8) if arr.nbytes else np.empty(0, np.uint8)
        nbytes = int(arr.nbytes)
        alloc = snapfile.alloc_for(nbytes)
        meta_row = (run, step, batch, nbytes, arr.dtype.str, json.dumps(list(arr.shape)))
        prefix = f"{run}:{step}:{batch}"
        if (
            alloc > self.quota_bytes
            and self.spill_quota_bytes is not None
            and alloc > self.spill_quota_bytes
        ):
            raise ArenaFull(
                f"a {format_bytes(alloc)} snapshot can never fit arena {self.root}: its quota is "
                f"{format_bytes(self.quota_bytes)} and its spill bound {format_bytes(self.spill_quota_bytes)}; "
                "raise --quota or the spill bound"
            )
        deadline = time.monotonic() + self.timeout_s
        allow_tmpfs, delay, next_gc = True, 0.002, time.monotonic() + 1.0
        waiting = False
        try:
            while True:
                placement = self._lease.place(alloc, prefix) if allow_tmpfs else None
                if placement is None:
                    with self._ledger.transaction() as conn:
                        placement = self._admission.place(
                            conn, alloc, meta_row, prefix, allow_tmpfs, self._maps.slots()
                        )
                if placement is not None:
                    placement.meta_row = meta_row  # type: ignore[attr-defined]
                    outcome = self._placed(placement, arr, src)
                    if outcome == "done":
                        return placement.key
                    allow_tmpfs = allow_tmpfs and outcome != "tmpfs full"
                    continue
                if not waiting:  # mark this owner waiting: lease holders give back room
                    waiting = True
                    self._set_waiting(True)
                now = time.monotonic()
                if now >= deadline:
                    raise ArenaFull(self._full_message(alloc))
                if now >= next_gc:
                    audit.gc(self)
                    next_gc = now + 1.0
                    allow_tmpfs = True
                time.sleep(min(delay, max(0.0, deadline - now)))
                delay = min(delay * 2, 0.05)
        finally:
            if waiting:
                self._set_waiting(False)

    def _set_waiting(self, flag: bool) -> None:
        if flag:
            self._lease.give_back()  # what this handle holds unused may be what it needs
        with self._ledger.transaction() as conn:
            conn.execute("UPDATE owners SET waiting = ? WHERE id = ?", (int(flag), self._owner_id))

    def _placed(self, placement, arr: np.ndarray, src: np.ndarray) -> str:
        """Write and publish a placement: ``'done'``, or (rolled back) ``'again'`` or
        ``'tmpfs full'`` (ENOSPC from the tmpfs itself: roll over to spill)."""
        try:
            self._publish(placement, self._write(placement, arr, src))
        except tiers.NoRoom as exc:
            self._rollback(placement)
            if placement.tier.charged:
                return "tmpfs full"
            # the spill filesystem is full: wait like for any other lack of room
            self._spill_blocked_until = time.monotonic() + 0.25
            log.info("spill tier full (%s); waiting for room", exc)
            return "again"
        except tiers.StaleSlot:
            log.warning(
                "arena %s: dropping free-list entry of vanished file %s", self.root, placement.slot
            )
            self._rollback(placement)
            return "again"
        except BaseException:
            self._rollback(placement)
            raise
        return "done"

    def _full_message(self, alloc: int) -> str:
        s = self.stats()
        bound = (
            "unbounded" if self.spill_quota_bytes is None else format_bytes(self.spill_quota_bytes)
        )
        return (
            f"arena {self.root} is full: no room for a {format_bytes(alloc)} snapshot within {self.timeout_s:g} s "
            f"(tmpfs {format_bytes(s['bytes_used'])} of {format_bytes(self.quota_bytes)}, "
            f"{s['files_used']} of {self.max_files} files; spill {self.spill_dir} holds "
            f"{format_bytes(s['spilled_bytes'])}, bound {bound}); release snapshots, raise --quota or "
            "--max-files, or free space for the spill directory"
        )

    def _write(self, p, arr: np.ndarray, src: np.ndarray) -> int:
        check = p.tier.write(p, arr, src)
        pause = os.environ.get(FAULT_PAUSE_ENV)
        if pause:  # fault injection for tests: announce, then hang between write and publish
            self._lease.flush()  # what was put before is published, as after a short while
            with open(pause, "w") as marker:
                marker.write(f"{os.getpid()} {p.key} {p.tier.name} {p.slot}\n")
            while True:
                time.sleep(3600)
        return check

    def _rollback(self, p) -> None:
        """Undo a reservation: the file goes first, then its row."""
        if p.row_id is None:
            self._lease.rollback(p)
            return
        p.tier.unlink(p.slot)
        with self._ledger.transaction() as conn:
            audit.drop_rows(self, conn, [(p.row_id, p.tier.name, p.slot, p.alloc)], unlink=False)

    def _publish(self, p, check: int) -> None:
        if p.row_id is None:  # under the lease: a ready snapshot now, a row soon (lease.py)
            self._lease.publish(p, p.meta_row, check, time.time())
            return
        with self._ledger.transaction() as conn:
            cur = conn.execute(
                "UPDATE snapshots SET state = 'ready', checksum = ? WHERE id = ? AND state = 'writing'",
                (check - (1 << 64) if check >= 1 << 63 else check, p.row_id),
            )
            if cur.rowcount != 1:
                raise ArenaError(
                    f"arena {self.root}: the reservation of {p.key} vanished (reclaimed by gc?)"
                )

    # ------------------------------------------------------------------ get / release / adopt

    def _row(self, key: str, conn=None):
        """The ledger row of ``key`` (or, unpublished, this handle's own record of it)."""
        pending = self._lease.row(key)
        if pending is not None:
            return pending
        conn = conn or self._ledger.conn()
        return conn.execute(
            "SELECT id, tier, slot, alloc_bytes, nbytes, dtype, shape, checksum, state, run, step, batch, "
            "owner, created FROM snapshots WHERE key = ?",
            (key,),
        ).fetchone()

    def get(self, key: str) -> np.ndarray:
        """A read-only array (memory-mapped) of snapshot ``key``; its checksum is verified.

        Raises ``KeyError`` for a key that does not exist (or was released meanwhile) and
        ``CorruptSnapshot`` when the stored bytes do not verify.
        """
        self._check()
        view = self._read(key, lambda tier, row: tier.read(key, row))
        views.track(self._identity, key, view)
        return view

    def read_into(self, key: str, out: np.ndarray) -> np.ndarray:
        """Copy snapshot ``key`` into ``out`` (C-contiguous, its dtype and shape), verifying
        each block while it is in cache: one pass over the data instead of the two of
        ``get`` followed by a copy. Raises like :meth:`get`; after ``CorruptSnapshot`` the
        contents of ``out`` are undefined and must not be used (nothing unverified is
        ever returned). Returns ``out``."""
        self._check()
        if not isinstance(out, np.ndarray) or not out.flags.c_contiguous or not out.flags.writeable:
            raise InputError("read_into needs a writable C-contiguous numpy array")

        def copy(tier, row):
            if out.dtype.str != row[5] or list(out.shape) != json.loads(row[6]):
                raise InputError(
                    f"snapshot {key} is {row[5]} {tuple(json.loads(row[6]))}, not "
                    f"{out.dtype.str} {out.shape}"
                )
            flat = out.reshape(-1).view(np.uint8) if out.nbytes else np.empty(0, np.uint8)
            tiers.read_into(tier, key, row, flat)
            return out

        return self._read(key, copy)

    def _read(self, key: str, how):
        """Look ``key`` up and read it with ``how(tier, row)``; when the file does not
        verify, look again: a snapshot moved to another tier (or released) meanwhile is
        read from where it is now (or is a ``KeyError``)."""
        seen, waited = None, False
        while True:
            row = self._row(key)
            if row is None and not waited:
                waited = True
                if self._await_published(key):
                    continue
            if row is None or row[8] != "ready":
                raise KeyError(key)
            try:
                return how(self.tier(row[1]), row)
            except CorruptSnapshot:
                if row[:3] == seen:  # read twice from the same row: the data is damaged
                    raise
                seen = row[:3]

    def _await_published(self, key: str) -> bool:
        """For a lease key of another owner: wait until that owner has published it; True
        when the key should be looked up again (see lease.py)."""
        found = lease_mod.parse_key(key)
        if found is None or found[0] == self._owner_id:
            return False
        owner, seq = found
        for other in list(_open_handles):  # a handle of this very process: ask it
            if (
                other is not self
                and other._pid == self._pid
                and not other._closed
                and other._identity == self._identity
                and other._owner_id == owner
            ):
                other._lease.flush()
                return True
        return lease_mod.await_published(self._ledger.conn(), owner, seq)

    def release(self, key: str) -> None:
        """Free snapshot ``key``: its file joins the free list (recycled) or is unlinked."""
        self._check()
        live = views.held(self._identity, key)
        if self._lease.release(key, live):
            return
        for attempt in range(2):
            if self._release_row(key, live):
                return
            if attempt or not self._await_published(key):
                raise KeyError(key)

    def _release_row(self, key: str, live: bool) -> bool:
        with self._ledger.transaction() as conn:
            row = conn.execute(
                "SELECT id, tier, slot, alloc_bytes, state FROM snapshots WHERE key = ?", (key,)
            ).fetchone()
            if row is None or row[4] != "ready":
                return False
            row_id, tier, slot, alloc, _ = row
            c = ledger.counters(conn)
            if (
                self.tier(tier).recycles
                and not live
                and c["free_bytes"] + self._lease.free_bytes + alloc
                <= self.quota_bytes * FREE_FRACTION
            ):
                conn.execute(
                    "UPDATE snapshots SET state = 'free', key = NULL, owner = NULL, run = NULL WHERE id = ?",
                    (row_id,),
                )
                ledger.bump(conn, free_bytes=alloc, free_files=1)
                return True
            audit.drop_rows(self, conn, [(row_id, tier, slot, alloc)])
            return True

    def adopt(self, keys) -> None:
        """Make this handle the owner of ready snapshots (e.g. put by a worker process).

        All or nothing: raises ``KeyError`` naming the keys that do not exist (or are not
        ready), and then adopts none.
        """
        self._check()
        keys = [keys] if isinstance(keys, str) else list(keys)
        self._lease.flush()
        for attempt in range(2):
            missing = []
            with self._ledger.transaction() as conn:
                for key in keys:
                    if not conn.execute(
                        "SELECT 1 FROM snapshots WHERE key = ? AND state = 'ready'", (key,)
                    ).fetchone():
                        missing.append(key)
                if not missing:
                    conn.executemany(
                        "UPDATE snapshots SET owner = ? WHERE key = ?",
                        [(self._owner_id, key) for key in keys],
                    )
                    return
            if attempt or not any([self._await_published(key) for key in missing]):
                break
        raise KeyError(missing[0] if len(missing) == 1 else missing)

    # ------------------------------------------------------------------ queries

    def keys(self, run: str | None = None) -> list[str]:
        """Keys of ready snapshots (of ``run``), oldest first. Other processes' newest
        snapshots show up once published (``lease.PUBLISH_DELAY_S``)."""
        self._check()
        self._lease.flush()
        conn = self._ledger.conn()
        if run is None:
            rows = conn.execute(
                "SELECT key FROM snapshots WHERE state = 'ready' ORDER BY created, id"
            )
        else:
            rows = conn.execute(
                "SELECT key FROM snapshots WHERE state = 'ready' AND run = ? ORDER BY created, id",
                (run,),
            )
        return [r[0] for r in rows]

    def info(self, key: str) -> dict:
        self._check()
        row = self._row(key)
        if row is None or row[8] != "ready":
            raise KeyError(key)
        _, tier, slot, alloc, nbytes, dtype, shape, _, _, run, step, batch, owner, created = row
        return {
            "key": key,
            "run": run,
            "step": step,
            "batch": batch,
            "dtype": np.dtype(dtype),
            "shape": tuple(json.loads(shape)),
            "tier": tier,
            "nbytes": nbytes,
            "alloc_bytes": alloc,
            "owner": owner,
            "created": created,  # time.time() of the put: cold snapshots are the oldest
        }

    def move(self, key: str, tier: str = "spill") -> bool:
        """Move ready snapshot ``key`` to ``tier`` ('spill' or 'tmpfs'), keeping its key.

        Atomic in the ledger: readers see it whole in one tier or the other. False when it
        cannot move (no room in the target, the write there failed, or it was released
        meanwhile); it then stays where it was. True when it is (now) in ``tier``. Raises
        ``KeyError`` for an unknown key and ``CorruptSnapshot`` when its data does not
        verify (it is not moved)."""
        self._check()
        if self._owner_id is None:
            raise ArenaError(f"arena {self.root}: this handle is read-only (maintenance)")
        self._lease.flush()
        return moving.move(self, key, self.tier(tier))

    def cold_keys(self, limit: int) -> list[str]:
        """Up to ``limit`` ready tmpfs snapshots, coldest (put longest ago) first: what to
        :meth:`move` to spill to make room on the tmpfs."""
        self._check()
        self._lease.flush()
        return moving.cold_keys(self, limit)

    def set_foreign_usage(self, nbytes: int, nfiles: int) -> None:
        """Record that files this arena did not write (the daemon's inbox) occupy ``nbytes``
        and ``nfiles`` under the root. Admission counts them against the quota and
        ``max_files`` from now on; the record belongs to this handle's owner (each call
        replaces its previous figures) and goes when it closes or dies."""
        self._check()
        if self._owner_id is None:
            raise ArenaError(f"arena {self.root}: this handle is read-only (maintenance)")
        nbytes = validate_index("nbytes", nbytes)
        nfiles = validate_index("nfiles", nfiles)
        with self._ledger.transaction() as conn:
            old = conn.execute(
                "SELECT foreign_bytes, foreign_files FROM owners WHERE id = ?", (self._owner_id,)
            ).fetchone()
            if old is None:
                raise ArenaError(f"arena {self.root}: this handle's owner row is gone")
            conn.execute(
                "UPDATE owners SET foreign_bytes = ?, foreign_files = ? WHERE id = ?",
                (nbytes, nfiles, self._owner_id),
            )
            ledger.bump(conn, foreign_bytes=nbytes - old[0], foreign_files=nfiles - old[1])

    def stats(self) -> dict:
        self._check()
        self._lease.flush()
        return audit.figures(self, self._ledger.conn())

    def check(self, fix: bool = False) -> list[str]:
        """Compare ledger and files; ``fix=True`` repairs what can be repaired."""
        self._check()
        self._lease.flush()
        return audit.check(self, fix=fix)

    def gc(self, dry_run: bool = False, unowned: bool = False) -> dict:
        """Reclaim what dead processes left; never a live owner's data. With ``unowned``,
        also drop ready snapshots that handles closed without consuming."""
        self._check()
        self._lease.flush()
        return audit.gc(self, dry_run=dry_run, unowned=unowned)
