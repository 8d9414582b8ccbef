"""Fold one batch of snapshots from the arena into an aggregator: all or nothing.

Every snapshot is fetched and verified before the first sum changes, so a corrupt or
missing snapshot leaves the sums untouched; once folded, the snapshots are released
(a failed release is logged, never counted twice: the batch is already in the sums).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from noisefs import faults
from noisefs.aggregate.snapshots import STORES, fold_snapshot
from noisefs.aggregate.sums import Aggregator

log = logging.getLogger("noisefs")


def fold_batch(
    arena,
    keys: Sequence[str],
    aggregator: Aggregator,
    store: str = "factored",
    *,
    on_first_fold: Callable[[], None] | None = None,
    on_folded: Callable[[], None] | None = None,
) -> None:
    """Fold the snapshots ``keys`` (one per snapshot step, in step order) into ``aggregator``
    and release them.

    ``store`` says what each snapshot holds (:mod:`noisefs.aggregate.snapshots`).
    ``on_first_fold`` runs once every snapshot is verified, just before the first sum
    changes; ``on_folded`` right after the last fold, before any release: the place to mark
    the batch done, so that bookkeeping never disagrees with the sums whatever fails
    afterwards.
    """
    if store not in STORES:
        raise ValueError(f"store must be one of {STORES}, not {store!r}")
    if len(keys) != aggregator.num_steps:
        raise ValueError(f"{len(keys)} snapshots for {aggregator.num_steps} steps")
    views = [arena.get(key) for key in keys]  # verified, before any sum changes
    if on_first_fold is not None:
        on_first_fold()
    for step, view in enumerate(views):
        fold_snapshot(aggregator, step, view, store)
        if step == 0:
            faults.hold_at("batch.folding")
    if on_folded is not None:
        on_folded()
    faults.hold_at("batch.folded")
    del views, view  # drop the mappings before the snapshots' pages are recycled
    release_all(arena, keys)
    faults.hold_at("batch.released")


def release_all(arena, keys: Sequence[str]) -> None:
    """Release ``keys``; what will not go is left to gc, with one warning for the lot."""
    stranded: list[tuple[str, Exception]] = []
    for key in keys:
        try:
            arena.release(key)
        except KeyError:
            pass
        except Exception as exc:  # noqa: BLE001 - folded already; a stranded one is gc's
            stranded.append((key, exc))
            log.debug("releasing %s", key, exc_info=True)
    if stranded:
        key, exc = stranded[0]
        log.warning(
            "could not release %d folded snapshot(s) (%s: %s); 'noisefs gc --unowned' "
            "reclaims them",
            len(stranded),
            key,
            exc,
        )
