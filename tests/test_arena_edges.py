"""Edge cases found in review: ledger growth, derived views, vanished free-list files, the
spill dir seen by every process, settings changed by another handle, interrupted publish."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from noisefs import faults
from noisefs.arena import Arena
from noisefs.errors import ArenaError, ArenaFull, CorruptSnapshot, UnsafePathError
from tests.test_arena_fixtures import *  # noqa: F403 - the fixtures make_arena, shm_root, spill
from tests.test_arena_fixtures import data_files, du_bytes


def test_spilled_snapshots_do_not_grow_the_ledger_past_the_quota(make_arena, shm_root):
    quota = 1 << 20
    arena = make_arena(quota=quota, max_files=64, timeout_s=0.2)
    while arena.info(arena.put(np.zeros(8192, np.uint8), run="fill"))["tier"] == "tmpfs":
        pass
    spilled = 0
    with pytest.raises(ArenaFull):
        for step in range(3000):  # every spilled snapshot adds a ledger row on the tmpfs
            arena.put(np.zeros(1, np.uint8), run="r" * 100, step=step)
            spilled += 1
            assert arena.stats()["bytes_used"] <= quota
    assert spilled > 0
    assert du_bytes(shm_root) <= quota


def test_derived_views_keep_their_pages(make_arena):
    arena = make_arena()
    key = arena.put(np.ones(64, dtype=np.complex128))
    real = arena.get(key).real  # the array get() returned is gone; a view of it is not
    arena.release(key)
    arena.put(np.full(64, 7.0, dtype=np.complex128))  # would reuse a recycled file
    np.testing.assert_array_equal(real, np.ones(64))


def test_views_of_one_process_are_seen_by_all_its_handles(make_arena, shm_root):
    first = make_arena()
    second = Arena(shm_root)
    try:
        key = first.put(np.arange(32.0))
        view = first.get(key)
        second.release(key)
        second.put(np.zeros(32))
        np.testing.assert_array_equal(view, np.arange(32.0))
    finally:
        second.close()


def test_free_list_row_whose_file_vanished_is_dropped_not_written(make_arena, shm_root):
    arena = make_arena()
    arena.release(arena.put(np.ones(1000)))  # one file on the free list
    (name,) = data_files(shm_root)
    os.unlink(shm_root / "data" / name)  # as a rolled-back eviction leaves it
    key = arena.put(np.full(1000, 5.0))
    np.testing.assert_array_equal(arena.get(key), np.full(1000, 5.0))
    assert arena.check() == []


def test_every_process_finds_spilled_snapshots_whatever_its_cache_dir(
    shm_root, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-a"))
    with Arena(shm_root, quota="1MiB", max_files=20) as producer:
        key = producer.put(np.arange(300_000.0))  # 2.4 MB: spills
        assert producer.info(key)["tier"] == "spill"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-b"))
    with Arena(shm_root) as consumer:
        np.testing.assert_array_equal(consumer.get(key), np.arange(300_000.0))
        with pytest.raises(ArenaError, match="holds spilled snapshots"):
            Arena(shm_root, spill_dir=tmp_path / "elsewhere")
        consumer.release(key)


def test_a_missing_spill_dir_loses_nothing_and_reads_nothing_else(make_arena, spill, tmp_path):
    arena = make_arena(quota="1MiB")
    key = arena.put(np.arange(300_000.0))
    assert arena.info(key)["tier"] == "spill"
    arena.close()
    os.rename(spill, tmp_path / "away")
    (tmp_path / "cwd").mkdir()
    cwd = os.getcwd()
    os.chdir(tmp_path / "cwd")
    try:
        with Arena(arena.root) as other:  # its gc must not take the row for a lost file
            slot = other.info(key)["slot"]
            (tmp_path / "cwd" / slot).write_bytes(b"not from the cwd")
            with pytest.raises(CorruptSnapshot, match="spill directory"):
                other.get(key)
    finally:
        os.chdir(cwd)
    os.rename(tmp_path / "away", spill)
    with Arena(arena.root) as other:
        np.testing.assert_array_equal(other.get(key), np.arange(300_000.0))
        other.release(key)


def test_a_quota_stored_by_another_handle_binds_open_handles(make_arena, shm_root):
    big = make_arena(quota="8MiB")
    Arena(shm_root, quota="1MiB").close()
    key = big.put(np.zeros(2 << 20, np.uint8))
    assert big.info(key)["tier"] == "spill"
    assert du_bytes(shm_root) <= 1 << 20


def test_an_interrupted_publish_leaves_no_reservation(make_arena):
    arena = make_arena()
    before = arena.stats()["bytes_used"]
    with faults.armed("arena.publish-interrupted"), pytest.raises(KeyboardInterrupt):
        arena.put(np.ones(100_000))
    assert arena.stats()["bytes_used"] == before
    assert arena.check() == []


def test_ledger_files_are_private(make_arena, shm_root):
    arena = make_arena()
    arena.release(arena.put(np.ones(10)))
    for name in ("ledger.db", "ledger.db-journal"):
        path = shm_root / name
        if path.exists():
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, name


def test_views_are_seen_whatever_path_spells_the_arena(make_arena, shm_root, tmp_path):
    first = make_arena()
    link = tmp_path / "link"
    os.symlink(shm_root.parent, link)  # e.g. /dev/shm reached through /run/shm
    second = Arena(link / shm_root.name)
    try:
        key = first.put(np.arange(1000.0))
        part = first.get(key)[10:20]
        second.release(key)
        second.put(np.full(1000, -1.0))
        np.testing.assert_array_equal(part, np.arange(10.0, 20.0))
    finally:
        second.close()


def test_a_file_among_the_ancestors_is_a_clear_refusal(tmp_path, spill):
    (tmp_path / "afile").write_bytes(b"")
    with pytest.raises(UnsafePathError, match="does not exist"):
        Arena(tmp_path / "afile" / "x" / "arena", spill_dir=spill)
    with pytest.raises(UnsafePathError, match="is not a directory"):
        Arena(tmp_path / "afile" / "arena", spill_dir=spill)


def test_a_ledger_of_the_previous_release_is_read_then_upgraded(make_arena, shm_root):
    import sqlite3

    from noisefs.arena.ledger import OWNER_COLUMNS

    arena = make_arena()
    key = arena.put(np.ones(100))
    arena.close()
    db = sqlite3.connect(shm_root / "ledger.db")
    for column in OWNER_COLUMNS:  # as the release before leases wrote it
        db.execute(f"ALTER TABLE owners DROP COLUMN {column}")
    db.execute("DELETE FROM counters WHERE name LIKE 'lease%' OR name LIKE 'foreign%'")
    db.commit()
    db.close()
    with Arena.open_existing(shm_root) as status:  # noisefs status: reads, changes nothing
        assert status.stats()["runs"] == {"r1": 1} and status.check() == []
        assert status.gc(dry_run=True)["dead_owners"] == 0
        assert not status._ledger.current
    with Arena(shm_root) as writer:  # a writer upgrades it
        assert writer._ledger.current and writer.keys() == [key]
        np.testing.assert_array_equal(writer.get(key), np.ones(100))
        assert writer.check() == []


def test_arena_full_carries_the_allocation_that_did_not_fit(make_arena):
    from noisefs.arena import snapfile

    never = make_arena(quota="1MiB", spill_quota="1MiB", max_files=64, timeout_s=0.1)
    big = np.zeros(2 << 20, np.uint8)
    with pytest.raises(ArenaFull) as info:
        never.put(big)
    assert info.value.needed_bytes == snapfile.alloc_for(big.nbytes)
    never.close()
    full = make_arena(quota="1MiB", spill_quota="1MiB", max_files=64, timeout_s=0.1)
    block = np.zeros(100_000, np.uint8)
    with pytest.raises(ArenaFull) as info:  # both tiers fill up, then the wait times out
        for _ in range(100):
            full.put(block)
    assert info.value.needed_bytes == snapfile.alloc_for(block.nbytes)
