"""Leases (see noisefs/arena/lease.py) with real processes: a SIGKILLed holder's lease and
files are reclaimed, an idle holder gives its lease to a process that waits for room, and
keys put under a lease reach other processes."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest

from noisefs.arena import Arena
from noisefs.arena.lease_keys import slot_prefix
from tests.test_arena_fixtures import *  # noqa: F403 - the fixtures make_arena, shm_root, spill
from tests.test_arena_fixtures import data_files, du_bytes, inode_count

CTX = mp.get_context("spawn")


@pytest.fixture
def children():
    """Processes started by a test; killed afterwards if still alive (a failed test)."""
    started: list = []
    yield started
    for child in started:
        if child.is_alive():
            child.kill()
            child.join(10)


def _lease_then_hang(root: str, out) -> None:
    arena = Arena(root, timeout_s=10)
    keys = [arena.put(np.full(10_000, float(i)), run="held") for i in range(3)]
    arena.release(keys[0])  # its file stays on the private free list, under the lease
    arena.put(np.ones(50))
    arena.publish()  # every snapshot a row now (the private free file never is)
    out.put((arena.parts.owner.id, keys[1:]))
    time.sleep(3600)


@pytest.mark.parametrize("reclaimer", ["open", "gc"])
def test_a_killed_lease_holder_is_reclaimed(make_arena, shm_root, reclaimer, children):
    arena = make_arena(quota="16MiB", max_files=100)
    mine = arena.put(np.arange(10.0))
    out = CTX.Queue()
    child = CTX.Process(target=_lease_then_hang, args=(str(shm_root), out))
    children.append(child)
    child.start()
    owner, keys = out.get(timeout=60)
    s = arena.stats()
    assert s["leased_bytes"] > 0 and s["free_files"] >= 1  # the child's idle lease and free file
    assert [k for k in arena.keys(run="held")] == keys
    theirs = [f for f in data_files(shm_root) if f.startswith(slot_prefix(owner))]
    assert len(theirs) == 4
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    if reclaimer == "open":
        Arena(shm_root).close()  # opening runs gc
    else:
        report = arena.gc()
        assert report["dead_owners"] == 1 and report["snapshots"] == 3
        assert report["partial_files"] == 1  # the private free file: under the lease, no row
    assert not [f for f in data_files(shm_root) if f.startswith(slot_prefix(owner))]
    s = arena.stats()
    assert s["owners"] == 1 and s["foreign_files"] == 0
    assert arena.keys() == [mine] and arena.check() == []
    assert du_bytes(shm_root) <= s["bytes_used"] and inode_count(shm_root) <= s["files_used"]
    row = arena._ledger.conn().execute("SELECT COUNT(*) FROM owners WHERE id = ?", (owner,))
    assert row.fetchone()[0] == 0


def _put_when_asked(root: str, go, out) -> None:
    with Arena(root, timeout_s=10) as arena:
        go.wait(60)
        start = time.monotonic()
        key = arena.put(np.ones(375_000), run="waiter")  # 3 MB
        out.put((key, time.monotonic() - start, arena.info(key)["tier"]))


def test_a_waiting_process_gets_an_idle_lease(make_arena, shm_root, children):
    arena = make_arena(quota="4MiB", max_files=40, spill_quota=0, timeout_s=2)
    go, out = CTX.Event(), CTX.Queue()
    child = CTX.Process(target=_put_when_asked, args=(str(shm_root), go, out))
    children.append(child)
    child.start()
    for n in (30_000, 30_500, 31_000, 31_500):  # 240-252 KB, each size once
        arena.release(arena.put(np.ones(n)))  # onto this process's free list, under its lease
    s = arena.stats()
    idle = s["leased_bytes"] + s["free_bytes"]
    assert idle >= 900_000  # held and idle: 3 MB more no longer fit beside it
    assert s["quota_bytes"] - s["bytes_used"] - s["leased_bytes"] < 3_002_368
    go.set()  # the child's put must wait until this (idle) process gives its lease back
    key, waited, tier = out.get(timeout=30)  # within the child's put timeout (10 s)
    child.join(30)
    assert child.exitcode == 0 and tier == "tmpfs"
    s = arena.stats()
    assert s["leased_bytes"] == 0 and s["free_files"] == 0
    assert du_bytes(shm_root) <= s["quota_bytes"]
    np.testing.assert_array_equal(arena.get(key), np.ones(375_000))
    assert arena.check() == []


def _put_and_report(root: str, out, done) -> None:
    with Arena(root) as arena:
        out.put([arena.put(np.full(100, float(i)), run="handed") for i in range(3)])
        done.wait(60)  # stays open (and idle): the keys must be published all the same


def test_keys_put_under_a_lease_reach_another_process(make_arena, shm_root, children):
    arena = make_arena()
    out, done = CTX.Queue(), CTX.Event()
    child = CTX.Process(target=_put_and_report, args=(str(shm_root), out, done))
    children.append(child)
    child.start()
    keys = out.get(timeout=60)
    arena.adopt(keys)  # waits for the owner's publication when needed
    for i, key in enumerate(keys):
        np.testing.assert_array_equal(arena.get(key), np.full(100, float(i)))
        assert arena.info(key)["owner"] == arena.parts.owner.id
    assert arena.keys(run="handed") == keys
    done.set()
    child.join(30)
    for key in keys:
        arena.release(key)
    assert arena.keys() == [] and arena.check() == []


def test_a_published_snapshot_released_by_its_owner_is_recycled(make_arena, shm_root):
    arena = make_arena()
    key = arena.put(np.ones(5000))
    assert arena.keys() == [key]  # published: a ledger row now
    (name,) = data_files(shm_root)
    arena.release(key)
    s = arena.stats()
    assert s["free_files"] == 1 and s["data_files"] == 1
    again = arena.put(np.full(5000, 3.0))
    assert data_files(shm_root) == [name]  # the same file, no new inode
    np.testing.assert_array_equal(arena.get(again), np.full(5000, 3.0))
    assert arena.check() == []
