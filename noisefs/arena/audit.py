"""Figures, garbage collection and the ledger-versus-files audit of an arena.

``gc`` reclaims what dead owners left (their partial files, their snapshots, their lock
files), files with no row (older than ``ORPHAN_AGE_S``) and rows whose file vanished. It
never touches rows of a live owner, nor ready snapshots of owners that closed cleanly.
``check`` compares the ledger with the files, in the spirit of diskcache's
``Cache.check``: it reports, and with ``fix=True`` repairs (corrupt snapshots are reported,
never deleted: nothing unconsumed is dropped).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time

from noisefs.arena import accounting, ledger, owners
from noisefs.arena import ledger_owners as owner_rows
from noisefs.arena import ledger_snapshots as snapshot_rows
from noisefs.arena.lease_keys import lease_prefixes
from noisefs.arena.parts import ArenaParts
from noisefs.arena.paths import unlink_quiet
from noisefs.arena.reclaim import (
    GC_CHUNK_ROWS,  # noqa: F401 - re-exported
    drop_rows,
    leased_files,
    listing,
    reclaim_free_list,
    reclaim_owner,
)
from noisefs.arena.tiers import SpillTier
from noisefs.errors import CorruptSnapshot

log = logging.getLogger("noisefs.arena")

ORPHAN_AGE_S = 5.0


def figures(parts: ArenaParts, conn) -> dict:
    c = ledger.counters(conn)
    meta = accounting.measure(parts.root_fd)
    used_bytes = used_files = own_free_bytes = own_free_files = 0
    if parts.ledger.current:  # (an older release's ledger has no leases)
        used_bytes, used_files, own_free_bytes, own_free_files = owner_rows.lease_usage(conn)
    bytes_used, files_used = accounting.in_use(c, used_bytes, used_files, meta)
    runs = snapshot_rows.ready_per_run(conn)
    unowned = snapshot_rows.unowned_ready_count(conn)
    return {
        "root": str(parts.root),
        "spill_dir": str(parts.bounds.spill_dir),
        "bytes_used": bytes_used,
        "files_used": files_used,
        "peak_bytes": max(c["peak_bytes"], bytes_used),
        "peak_files": max(c["peak_files"], files_used),
        "spilled_bytes": c["spill_bytes"],
        "spilled_files": c["spill_files"],
        "spilled_total_bytes": c["spilled_total_bytes"],
        "spilled_total_files": c["spilled_total_files"],
        "quota_bytes": parts.bounds.quota_bytes,
        "max_files": parts.bounds.max_files,
        "spill_quota_bytes": parts.bounds.spill_quota_bytes,
        "data_bytes": c["tmpfs_bytes"] + used_bytes,
        "data_files": c["tmpfs_files"] + used_files,
        "free_bytes": c["free_bytes"] + own_free_bytes,
        "free_files": c["free_files"] + own_free_files,
        "leased_bytes": max(0, c["lease_bytes"] - used_bytes),
        "leased_files": max(0, c["lease_files"] - used_files),
        "foreign_bytes": c["foreign_bytes"],
        "foreign_files": c["foreign_files"],
        "metadata_bytes": meta.bytes,
        "metadata_files": meta.inodes + c["owner_files"],
        "metadata_names": list(meta.names),
        "owners": c["owner_files"],
        "unowned_snapshots": unowned,
        "runs": runs,
    }


def gc(parts: ArenaParts, dry_run: bool = False, unowned: bool = False) -> dict:
    report = {
        "unowned_snapshots": 0,
        "dry_run": dry_run,
        "dead_owners": 0,
        "partial_files": 0,
        "snapshots": 0,
        "orphan_files": 0,
        "missing_files": 0,
        "lock_files": 0,
        "free_files": 0,
        "bytes": 0,
        "files": 0,
    }
    now = time.time()
    held: list[int] = []
    others_live = False
    if not dry_run:
        parts.ledger.upgrade()
    try:
        with parts.ledger.transaction() as conn:
            dead = []
            for owner_id, pid, lock_name, started in owner_rows.all_owners(conn):
                if owner_id == parts.owner.id:
                    continue
                state, fd = owners.try_take(parts.owners_fd, lock_name, pid, started)
                if state != "dead":
                    others_live = True
                    continue
                if fd is not None:  # held until the end: no other gc takes this owner
                    held.append(fd)
                dead.append((owner_id, lock_name))
        for owner_id, lock_name in dead:  # the one reclaim path, as a close takes it
            reclaim_owner(
                parts, owner_id, lock_name, departing=False, report=report, dry_run=dry_run
            )
        if dead or (not others_live and parts.owner.id is None):  # departed, or nobody to reuse it
            reclaim_free_list(parts, report, dry_run)
        with parts.ledger.transaction() as conn:
            # writing rows nobody owns any more (owner row gone): leftovers of a crash in gc
            stray = snapshot_rows.stray_writing(conn, now - ORPHAN_AGE_S)
            report["partial_files"] += len(stray)
            if not dry_run:
                drop_rows(parts, conn, stray)
            if unowned:  # asked for: snapshots that handles closed without consuming
                left = snapshot_rows.unowned_ready(conn)
                report["unowned_snapshots"] = len(left)
                report["bytes"] += sum(r.alloc_bytes for r in left if parts.tier(r.tier).charged)
                report["files"] += sum(1 for r in left if parts.tier(r.tier).charged)
                if not dry_run:
                    drop_rows(parts, conn, left)
            _files_vs_rows(parts, conn, report, dry_run, now)
        if not dry_run:  # give the pages of deleted rows back to the tmpfs (best effort)
            try:
                ledger.incremental_vacuum(parts.ledger.conn())
            except sqlite3.OperationalError:
                log.debug("incremental_vacuum skipped", exc_info=True)
    finally:
        for fd in held:
            os.close(fd)
    return report


def _files_vs_rows(parts: ArenaParts, conn, report, dry_run, now) -> None:
    rows = snapshot_rows.all_files(conn)
    known = {(r.tier, r.slot) for r in rows}
    # a tier whose directory cannot be opened is not listed at all: its rows are never
    # taken for rows whose file vanished (an unmounted or renamed spill dir loses nothing)
    fds = {tier.name: tier.fd() for tier in parts.tiers}
    listings = {name: listing(fd) for name, fd in fds.items() if fd is not None}
    leased = lease_prefixes(conn)
    for tier in parts.tiers:
        for name, st in listings.get(tier.name, {}).items():
            if (tier.name, name) in known or now - st.st_mtime < ORPHAN_AGE_S:
                continue
            if name.startswith(leased):
                continue  # a live owner's file under its lease (no row until published)
            if isinstance(tier, SpillTier) and not name.startswith(tier.tag + "-"):
                continue  # not this arena's: a spill dir may be shared
            report["orphan_files"] += 1
            if tier.charged:
                report["bytes"] += st.st_blocks * 512
                report["files"] += 1
            if not dry_run:
                if stat.S_ISDIR(st.st_mode):
                    continue  # never recurse into something we did not make
                unlink_quiet(name, fds[tier.name])
    missing = [
        r
        for r in rows
        if r.state != "writing" and r.tier in listings and r.slot not in listings[r.tier]
    ]
    report["missing_files"] += len(missing)
    if not dry_run:
        drop_rows(parts, conn, missing, unlink=False)
    lock_names = owner_rows.lock_names(conn)
    for name, st in listing(parts.owners_fd).items():
        if name in lock_names or now - st.st_mtime < ORPHAN_AGE_S:
            continue
        state, fd = owners.try_take(parts.owners_fd, name, 0, 0.0)
        if state == "dead":
            report["lock_files"] += 1
            report["files"] += 1
            if not dry_run:
                unlink_quiet(name, parts.owners_fd)
        if fd is not None:
            os.close(fd)


def check(parts: ArenaParts, lease, read, fix: bool = False) -> list[str]:
    """Compare ledger and files (``lease``: this handle's; ``read(key)`` verifies a snapshot)."""
    messages: list[str] = []
    with parts.ledger.transaction() as conn:
        stored = ledger.counters(conn)
        actual = ledger.recompute_counters(conn)
        for name, value in actual.items():
            if stored[name] != value:
                messages.append(f"counter {name} is {stored[name]}, rows say {value}")
                if fix:
                    ledger.set_counter(conn, name, value)
        report = {k: 0 for k in ("orphan_files", "missing_files", "lock_files", "bytes", "files")}
        rows = snapshot_rows.all_files(conn)
        for _, tier, slot, alloc, state, _ in rows:
            fd = parts.tier(tier).fd()
            try:
                st = os.stat(slot, dir_fd=fd, follow_symlinks=False) if fd is not None else None
            except FileNotFoundError:
                st = None
            if st is None:
                if state != "writing":
                    messages.append(f"{tier} file {slot} of a {state} row is missing")
            elif parts.tier(tier).charged and st.st_blocks * 512 > alloc:
                messages.append(
                    f"tmpfs file {slot} occupies {st.st_blocks * 512} bytes, ledger says {alloc}"
                )
        _files_vs_rows(parts, conn, report, not fix, time.time() + ORPHAN_AGE_S)
        if parts.owner.id is not None and not lease.in_flight:  # this handle's own lease
            mine = leased_files(parts, conn, parts.owner.id)
            held = sum(n for _, n in mine)
            if len(mine) != lease.used_files or held > lease.used_bytes:
                messages.append(
                    f"this handle's lease counts {lease.used_files} files ({lease.used_bytes} "
                    f"bytes), {len(mine)} exist ({held} bytes)"
                )
            if lease.used_bytes > lease.bytes or lease.used_files > lease.files:
                messages.append("this handle uses more than its lease")
        if report["orphan_files"]:
            messages.append(
                f"{report['orphan_files']} file(s) with no ledger row" + (" removed" if fix else "")
            )
        if report["lock_files"]:
            messages.append(
                f"{report['lock_files']} stale lock file(s)" + (" removed" if fix else "")
            )
        if fix and report["missing_files"]:
            messages.append(f"{report['missing_files']} row(s) without a file removed")
        ready = [r.key for r in rows if r.state == "ready"]
    for key in ready:
        try:
            read(key)
        except CorruptSnapshot as exc:
            messages.append(f"corrupt: {exc}")
        except KeyError:
            pass
    return messages
