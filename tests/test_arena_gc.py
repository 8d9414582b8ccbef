"""gc reclaims a dead owner in short transactions: many snapshots, several transactions,
nothing left behind, and a dry run that counts without deleting; what a clean close frees,
gc of the same owner killed frees too (the one reclaim path, ``reclaim.py``)."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import time

import numpy as np
import pytest

from noisefs.arena import Arena, audit
from tests.test_arena_fixtures import *  # noqa: F403 - the fixtures make_arena, shm_root, spill
from tests.test_arena_fixtures import data_files, du_bytes, inode_count

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


def _put_release_then_wait(root: str, out, command) -> None:
    arena = Arena(root, timeout_s=10)
    keys = [arena.put(np.full(1000 + 10 * i, float(i)), run="child", step=i) for i in range(6)]
    arena.release(keys[0])  # unpublished: onto this owner's private free list (its lease)
    arena.keys()  # the rest published: rows now
    out.put(keys[1:])
    if command.get(timeout=60) == "close":
        arena.close()
        out.put("closed")
    time.sleep(3600)


def _departure(make_arena, root, how: str) -> tuple[dict[str, str], set[str], dict]:
    """A child owner with files in each role leaves by ``how`` ('close', or 'kill' and a gc
    by a live handle): (role of each of its files, the files gone since, the live handle's
    stats after)."""
    arena = make_arena(root=root)
    out, command = CTX.Queue(), CTX.Queue()
    child = CTX.Process(target=_put_release_then_wait, args=(str(root), out, command))
    child.start()
    try:
        keys = out.get(timeout=60)
        ready = {arena.info(key)["slot"] for key in keys[2:]}
        shared = {arena.info(key)["slot"] for key in keys[:2]}
        for key in keys[:2]:  # another owner's files: onto the shared free list
            arena.release(key)
        before = set(data_files(root))
        roles = {
            slot: "ready" if slot in ready else "shared free" if slot in shared else "private free"
            for slot in before
        }
        assert sorted(roles.values()).count("shared free") == 2, roles
        assert sorted(roles.values()).count("private free") == 1, roles
        if how == "close":
            command.put("close")
            assert out.get(timeout=60) == "closed"
        else:
            os.kill(child.pid, signal.SIGKILL)
            child.join(10)
            report = arena.gc()
            assert (report["dead_owners"], report["snapshots"]) == (1, 3)
            assert (report["free_files"], report["partial_files"]) == (2, 1)
        return roles, before - set(data_files(root)), arena.stats()
    finally:
        if child.is_alive():
            child.kill()
            child.join(10)


def test_what_a_clean_close_frees_gc_frees_too(make_arena, shm_root):
    """A departing owner (clean close) and the same owner killed (then gc): the private
    free list, the shared free list and the leases go in both cases; the close hands its
    ready snapshots over to a consumer, gc of a dead owner reclaims them too."""
    other_root = shm_root.with_name(shm_root.name + "-killed")
    try:
        roles, gone, after_close = _departure(make_arena, shm_root, "close")
        freed_by_close = sorted(roles[slot] for slot in gone)
        roles, gone, after_gc = _departure(make_arena, other_root, "kill")
        freed_by_gc = sorted(roles[slot] for slot in gone)
    finally:
        shutil.rmtree(other_root, ignore_errors=True)
    assert freed_by_close == ["private free", "shared free", "shared free"]
    assert freed_by_gc == sorted(freed_by_close + ["ready"] * 3)
    for stats in (after_close, after_gc):
        assert stats["owners"] == 1 and stats["free_files"] == 0
        assert stats["leased_bytes"] == 0 and stats["foreign_files"] == 0
    assert (after_close["unowned_snapshots"], after_close["data_files"]) == (3, 3)
    assert (after_gc["unowned_snapshots"], after_gc["data_files"]) == (0, 0)
