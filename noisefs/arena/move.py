"""Moving a ready snapshot between tiers, and picking the cold ones to move.

The failure rule is zict's ``Buffer``: if the write into the target tier fails (no room,
a read-only or failing filesystem), the snapshot stays where it was, under the same key,
and ``move`` answers False. Three steps:

1. one transaction reserves a ``writing`` row on the target tier (no key yet), by the same
   admission rules as a ``put``: no room means False at once;
2. outside any transaction the file is copied into the target; the copy is hashed as it
   is written and must equal the stored checksum (the source is verified by the copy);
3. one transaction swaps the rows: the source file is unlinked, its row deleted, and the
   target row takes the key, ``ready``, with the source's owner and creation time. A
   reader that looked the key up before the swap either maps the old file (unlinked, still
   whole) or finds it gone and looks the key up again (``Arena.get`` retries).

A failure in step 2 unlinks the target file and drops its row; a process killed in step 2
leaves a ``writing`` row of its own that gc reclaims like any partial put. When the source
was released (or reclaimed) meanwhile, step 3 drops the copy and answers False.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from noisefs.arena import accounting, ledger
from noisefs.arena import ledger_snapshots as snapshot_rows
from noisefs.arena.admission import Admission, Placement
from noisefs.arena.parts import ArenaParts
from noisefs.arena.rows import SnapshotMeta, SnapshotRow, signed_checksum
from noisefs.arena.tiers import NoRoom, Tier
from noisefs.errors import CorruptSnapshot

log = logging.getLogger("noisefs.arena")


FindRow = Callable[..., "SnapshotRow | None"]  # (key, conn): this handle's view, pending rows too
Rollback = Callable[[Placement], None]


def move(
    parts: ArenaParts,
    admission: Admission,
    find_row: FindRow,
    rollback: Rollback,
    key: str,
    target: Tier,
) -> bool:
    """Move ready snapshot ``key`` to ``target``; see the module docstring. ``find_row``
    and ``rollback`` are the moving handle's row lookup and placement rollback."""
    with parts.ledger.transaction() as conn:
        row = find_row(key, conn)
        if row is None or row.state != "ready":
            raise KeyError(key)
        source = parts.tier(row.tier)
        if source is target:
            return True
        alloc = row.alloc_bytes
        meta_row = SnapshotMeta(row.run, row.step, row.batch, row.nbytes, row.dtype, row.shape)
        meta = accounting.measure(parts.root_fd)
        placement = admission.new_file(conn, target, meta, alloc, meta_row, None)
        if placement is None:
            return False
    placement.key = key
    try:
        check = _copy(source, target, key, row, placement)
    except (OSError, NoRoom, CorruptSnapshot) as exc:
        rollback(placement)
        if isinstance(exc, CorruptSnapshot):
            raise
        log.warning("arena %s: moving %s to %s failed (%s); it stays", parts.root, key, target, exc)
        return False
    except BaseException:
        rollback(placement)
        raise
    return _swap(parts, find_row, rollback, key, row, placement, check)


def _copy(source: Tier, target: Tier, key: str, row: SnapshotRow, p: Placement) -> int:
    view = source.read(key, row, verify=False)  # verified by the copy's own checksum
    flat = view.reshape(-1).view(np.uint8) if view.nbytes else np.empty(0, np.uint8)
    check = target.write(p, view, flat)
    if check != row.unsigned_checksum:
        raise CorruptSnapshot(
            f"snapshot {key}: checksum mismatch in {row.slot}; the data is damaged"
        )
    return check


def _swap(
    parts: ArenaParts,
    find_row: FindRow,
    rollback: Rollback,
    key: str,
    row: SnapshotRow,
    p: Placement,
    check: int,
) -> bool:
    source = parts.tier(row.tier)
    with parts.ledger.transaction() as conn:
        now = find_row(key, conn)
        if now is None or now.id != row.id or now.state != "ready":
            gone = True
        else:
            gone = False
            source.unlink(row.slot)  # the file first, then its row
            snapshot_rows.delete(conn, row.id)
            ledger.bump(conn, **source.counter_deltas(-row.alloc_bytes, -1))
            snapshot_rows.ready_moved(
                conn, p.row_id, key, signed_checksum(check), now.owner, now.created
            )
    if gone:  # released or reclaimed meanwhile: nothing to move any more
        rollback(p)
        return False
    return True


def cold_keys(parts: ArenaParts, limit: int) -> list[str]:
    """Ready tmpfs snapshots, oldest first (by creation: the ones put longest ago)."""
    return snapshot_rows.coldest_keys(parts.ledger.conn(), parts.tmpfs.name, limit)
