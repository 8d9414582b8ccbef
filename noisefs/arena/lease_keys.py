"""Names under a lease, and waiting for another process's publication.

Files made under owner ``n``'s lease are ``o<n hex>-<seq hex>.snap``; its keys end in
``<n hex>-<seq hex>``, so a process handed such a key knows whose publication to wait for
(see :mod:`noisefs.arena.lease` for why keys are published late).
"""

from __future__ import annotations

import sqlite3
import time

from noisefs.arena import ledger_owners as owner_rows
from noisefs.arena import owners

AWAIT_S = 5.0  # how long a reader waits for another process to publish a key it was given


def slot_prefix(owner_id: int) -> str:
    """Files made under owner ``owner_id``'s lease are named ``o<id hex>-<n hex>.snap``."""
    return f"o{owner_id:x}-"


def lease_prefixes(conn: sqlite3.Connection) -> tuple[str, ...]:
    """The slot prefixes of every registered owner (their unpublished files have no row)."""
    return tuple(slot_prefix(owner) for owner in owner_rows.ids(conn))


def parse_key(key: str) -> tuple[int, int] | None:
    """(owner id, sequence) of a lease key; None for a key of a row placement."""
    owner, sep, seq = key.rpartition(":")[2].partition("-")
    if not sep:
        return None
    try:
        return int(owner, 16), int(seq, 16)
    except ValueError:
        return None


def await_published(conn: sqlite3.Connection, owners_fd: int, owner: int, seq: int) -> bool:
    """Wait (up to ``AWAIT_S``) until ``owner`` has published every key up to ``seq``, or
    is gone; True when the key should be looked up again. A dead owner (its lock free)
    publishes nothing more: False at once."""
    deadline = time.monotonic() + AWAIT_S
    delay, next_probe = 0.001, time.monotonic() + 0.2
    while True:
        found = owner_rows.publication(conn, owner)
        if found is None:
            return True
        published, row = found
        if published >= seq:
            return True
        now = time.monotonic()
        if now >= deadline:
            return False
        if now >= next_probe:
            if not owners.is_live(owners_fd, row.lock_name, row.pid, row.started):
                return False
            next_probe = now + 0.2
        time.sleep(delay)
        delay = min(2 * delay, 0.01)
