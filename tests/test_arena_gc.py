"""gc reclaims a dead owner in short transactions: many snapshots, several transactions,
nothing left behind, and a dry run that counts without deleting."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest

from noisefs.arena import Arena, audit
from tests.test_arena_fixtures import *  # noqa: F403 - the fixtures make_arena, shm_root, spill
from tests.test_arena_fixtures import du_bytes, inode_count

CTX = mp.get_context("spawn")
SNAPSHOTS = 2 * audit.GC_CHUNK_ROWS + 37  # three chunks


def _put_many_then_hang(root: str, out) -> None:
    arena = Arena(root, timeout_s=10)
    keys = [arena.put(np.full(64, float(i)), run="dead", batch=i) for i in range(SNAPSHOTS)]
    arena.keys()  # publish every row now
    out.put(len(keys))
    time.sleep(3600)


@pytest.fixture
def dead_owner(make_arena, shm_root):
    arena = make_arena(quota="64MiB", max_files=2000)
    out = CTX.Queue()
    child = CTX.Process(target=_put_many_then_hang, args=(str(shm_root), out))
    child.start()
    try:
        assert out.get(timeout=60) == SNAPSHOTS
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        yield arena
    finally:
        if child.is_alive():
            child.kill()
            child.join(10)


def test_a_dead_owner_with_many_snapshots_is_reclaimed_in_chunks(dead_owner, shm_root, monkeypatch):
    arena = dead_owner
    mine = arena.put(np.arange(8.0), run="alive")
    transactions = []
    begin = type(arena._ledger).transaction

    def counting(self):
        transactions.append(1)
        return begin(self)

    monkeypatch.setattr(type(arena._ledger), "transaction", counting)
    report = arena.gc()
    monkeypatch.undo()
    assert report["dead_owners"] == 1 and report["snapshots"] == SNAPSHOTS
    assert len(transactions) >= 3 + 2  # three chunks, plus listing owners and the audit
    assert arena.keys() == [mine] and arena.check() == []
    s = arena.stats()
    assert s["owners"] == 1
    assert du_bytes(shm_root) <= s["bytes_used"] and inode_count(shm_root) <= s["files_used"]


def test_a_dry_run_counts_a_large_dead_owner_and_deletes_nothing(dead_owner):
    arena = dead_owner
    report = arena.gc(dry_run=True)
    assert report["dead_owners"] == 1 and report["snapshots"] == SNAPSHOTS
    assert len(arena.keys(run="dead")) == SNAPSHOTS
    assert arena.gc()["snapshots"] == SNAPSHOTS and arena.keys(run="dead") == []
