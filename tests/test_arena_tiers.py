"""Tiers as objects: moving ready snapshots between tmpfs and spill (and failing to, losing
nothing), cold keys, foreign usage and the metadata the daemon adds under the root."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noisefs.arena import Arena
from noisefs.errors import ArenaFull, CorruptSnapshot, InputError
from tests.conftest import mounted_tmpfs
from tests.test_arena_fixtures import *  # noqa: F403 - the fixtures make_arena, shm_root, spill
from tests.test_arena_fixtures import data_files, du_bytes, inode_count, listing


def test_move_to_spill_and_back_keeps_the_key(make_arena, shm_root, spill):
    arena = make_arena()
    x = np.arange(50_000.0)
    key = arena.put(x, run="m", step=2, batch=1)
    before = arena.info(key)
    assert before["tier"] == "tmpfs"
    assert arena.move(key) is True
    after = arena.info(key)
    assert after["tier"] == "spill" and arena.keys() == [key]
    assert (after["run"], after["step"], after["batch"], after["created"]) == (
        "m",
        2,
        1,
        before["created"],
    )
    assert len(listing(spill)) == 1 and arena.stats()["spilled_files"] == 1
    np.testing.assert_array_equal(arena.get(key), x)
    assert arena.move(key, "spill") is True  # already there
    assert arena.move(key, "tmpfs") is True
    assert arena.info(key)["tier"] == "tmpfs" and listing(spill) == []
    np.testing.assert_array_equal(arena.get(key), x)
    assert arena.check() == []
    arena.release(key)
    with pytest.raises(KeyError):
        arena.move(key)


def test_move_frees_tmpfs_bytes_and_inodes(make_arena, shm_root, spill):
    arena = make_arena()
    keys = [arena.put(np.full(20_000, float(i))) for i in range(4)]
    used = arena.stats()
    for key in arena.cold_keys(2):
        assert arena.move(key)
    s = arena.stats()
    assert s["data_files"] == used["data_files"] - 2
    assert s["data_bytes"] == used["data_bytes"] - 2 * arena.info(keys[0])["alloc_bytes"]
    assert du_bytes(shm_root) <= s["bytes_used"] and inode_count(shm_root) <= s["files_used"]
    assert [arena.info(k)["tier"] for k in keys] == ["spill", "spill", "tmpfs", "tmpfs"]
    for i, key in enumerate(keys):
        np.testing.assert_array_equal(arena.get(key), np.full(20_000, float(i)))


def test_cold_keys_are_ready_tmpfs_snapshots_oldest_first(make_arena):
    arena = make_arena()
    keys = [arena.put(np.zeros(10) + i) for i in range(5)]
    arena.release(keys[1])
    assert arena.move(keys[0])
    assert arena.cold_keys(10) == [keys[2], keys[3], keys[4]]
    assert arena.cold_keys(1) == [keys[2]]
    assert arena.info(keys[2])["created"] <= arena.info(keys[3])["created"]


def test_move_without_room_in_the_target_answers_false(make_arena, spill):
    arena = make_arena(spill_quota="64KiB")
    key = arena.put(np.ones(20_000))  # 160 KB: more than the spill bound
    assert arena.move(key) is False
    assert arena.info(key)["tier"] == "tmpfs"
    np.testing.assert_array_equal(arena.get(key), np.ones(20_000))
    assert listing(spill) == [] and arena.check() == []


def test_a_failing_spill_write_leaves_the_snapshot_where_it_was(shm_root):
    """The spill filesystem turns read-only (a real EROFS from the kernel, no mock): the
    move fails, the snapshot stays on the tmpfs under its key, and nothing is left over."""
    with mounted_tmpfs("size=4m") as mnt:
        spill = mnt / "spill"
        with Arena(shm_root, quota="16MiB", max_files=100, spill_dir=spill) as arena:
            arena.prepare_spill()
            x = np.arange(30_000.0)
            key = arena.put(x)
            before = arena.stats()
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
            try:
                assert arena.move(key) is False
            finally:
                subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
            assert arena.info(key)["tier"] == "tmpfs" and arena.keys() == [key]
            np.testing.assert_array_equal(arena.get(key), x)
            after = arena.stats()
            for name in ("bytes_used", "files_used", "spilled_files", "data_files"):
                assert after[name] == before[name], name
            assert os.listdir(spill) == [] and arena.check() == []
            assert arena.move(key) is True  # writable again: now it moves
            np.testing.assert_array_equal(arena.get(key), x)


def test_a_full_spill_filesystem_mid_write_leaves_the_snapshot(shm_root):
    """The spill filesystem has room by statvfs but fills during the write (a tenant on a
    real 1 MiB tmpfs): ENOSPC, the partial copy is removed, the snapshot stays."""
    with mounted_tmpfs("size=1m") as mnt:
        spill = mnt / "spill"
        with Arena(shm_root, quota="16MiB", max_files=100, spill_dir=spill) as arena:
            arena.prepare_spill()
            x = np.arange(90_000.0)  # 720 KB
            key = arena.put(x)
            real = os.pwrite

            def tenant_fills(fd, data, offset):
                if offset > 0:
                    st = os.statvfs(mnt)
                    with open(mnt / "tenant", "wb") as f:
                        f.write(b"\1" * (st.f_bavail * st.f_frsize))
                return real(fd, data, offset)

            os.pwrite = tenant_fills
            try:
                assert arena.move(key) is False
            finally:
                os.pwrite = real
            (mnt / "tenant").unlink()
            assert arena.info(key)["tier"] == "tmpfs"
            np.testing.assert_array_equal(arena.get(key), x)
            assert os.listdir(spill) == [] and arena.check() == []


def test_foreign_usage_counts_against_the_quota_and_goes_with_its_owner(make_arena, shm_root):
    arena = make_arena(quota="4MiB", max_files=40, spill_quota="64MiB")
    daemon = Arena(shm_root)
    try:
        base = arena.stats()
        daemon.set_foreign_usage(3 << 20, 5)
        s = arena.stats()
        assert s["foreign_bytes"] == 3 << 20 and s["foreign_files"] == 5
        assert s["bytes_used"] - s["metadata_bytes"] == base["bytes_used"] - base[
            "metadata_bytes"
        ] + (3 << 20)
        assert s["files_used"] == base["files_used"] + 5
        key = arena.put(np.ones(200_000))  # 1.6 MB no longer fits beside 3 MiB of inbox
        assert arena.info(key)["tier"] == "spill"
        daemon.set_foreign_usage(0, 0)
        assert arena.info(arena.put(np.ones(200_000)))["tier"] == "tmpfs"
        daemon.set_foreign_usage(1 << 20, 1)
    finally:
        daemon.close()
    s = arena.stats()  # the record went with its owner
    assert s["foreign_bytes"] == 0 and s["foreign_files"] == 0
    assert arena.check() == []


def test_daemon_entries_under_the_root_are_measured(make_arena, shm_root):
    arena = make_arena()
    arena.put(np.ones(1000))
    base = arena.stats()
    (shm_root / "daemon.lock").write_bytes(b"")
    state = shm_root / "daemon"
    state.mkdir(mode=0o700)
    (state / "claims").mkdir()
    (state / "state.json").write_bytes(b"{}" * 3000)
    (shm_root / "inbox" / "run1" / "0").mkdir(parents=True)
    s = arena.stats()
    # daemon.lock, daemon/, claims, state, inbox, the temporary copy through which the
    # daemon rewrites its status file (counted ahead, so a rewrite never overshoots), and
    # what is under inbox/ (run1, run1/0: measured, since the daemon has reported nothing)
    assert s["files_used"] == base["files_used"] + 8
    assert s["bytes_used"] >= base["bytes_used"] + 6000
    assert {"daemon", "daemon.lock", "inbox"} <= set(s["metadata_names"])
    assert du_bytes(shm_root) <= s["bytes_used"]
    # the status file's temporary copy is counted but not there now: 1 fewer
    assert inode_count(shm_root) == s["files_used"] - 1 - (
        0 if (shm_root / "ledger.db-journal").exists() else 1
    )
    assert data_files(shm_root) != []


def test_a_view_taken_before_a_move_stays_whole(make_arena):
    arena = make_arena()
    x = np.arange(40_000.0)
    key = arena.put(x)
    view = arena.get(key)
    assert arena.move(key)
    np.testing.assert_array_equal(view, x)  # the old file is unlinked, not overwritten
    np.testing.assert_array_equal(arena.get(key), x)


def test_read_into_copies_verified_data(make_arena, shm_root):
    arena = make_arena()
    x = np.random.default_rng(3).standard_normal((300, 70)) + 1j
    key = arena.put(x)
    out = np.empty_like(x)
    assert arena.read_into(key, out) is out
    np.testing.assert_array_equal(out, x)
    with pytest.raises(InputError):
        arena.read_into(key, np.empty((70, 300), dtype=x.dtype))
    with pytest.raises(InputError):
        arena.read_into(key, np.empty_like(x).T)  # not C-contiguous
    assert arena.move(key)
    np.testing.assert_array_equal(arena.read_into(key, np.empty_like(x)), x)  # from spill too
    other = arena.put(x * 2)
    slot = arena.info(other)["slot"]
    fd = os.open(shm_root / "data" / slot, os.O_RDWR)
    old = os.pread(fd, 1, 4096 + 12_345)
    os.pwrite(fd, bytes([old[0] ^ 1]), 4096 + 12_345)
    os.close(fd)
    with pytest.raises(CorruptSnapshot):
        arena.read_into(other, np.empty_like(x))


MOVE_OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "release", "spill", "tmpfs", "get"]),
        st.integers(0, 30),
        st.sampled_from([1, 700, 30_000, 120_000]),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=MOVE_OPS)
def test_moves_keep_accounting_and_contents(ops):
    """Random puts, releases and moves both ways: du/find within the figures and bounds,
    contents as put, counters as the rows say."""
    root = Path("/dev/shm") / f"noisefs-test-mv-{uuid.uuid4().hex[:10]}"
    spill = Path(tempfile.mkdtemp(prefix="noisefs-mv-spill-"))
    model: dict[str, np.ndarray] = {}
    try:
        with Arena(root, quota="3MiB", max_files=30, spill_dir=spill, timeout_s=0.3) as arena:
            for i, (op, pick, size) in enumerate(ops):
                keys = sorted(model)
                if op == "put":
                    x = np.full(size, float(i))
                    try:
                        model[arena.put(x, run="mv", step=i)] = x
                    except ArenaFull:
                        pass
                elif keys:
                    key = keys[pick % len(keys)]
                    if op == "release":
                        arena.release(key)
                        del model[key]
                    elif op == "get":
                        np.testing.assert_array_equal(arena.get(key), model[key])
                    else:
                        moved = arena.move(key, op)
                        assert (arena.info(key)["tier"] == op) == moved
                s = arena.stats()
                assert du_bytes(root) <= s["bytes_used"] <= s["quota_bytes"]
                assert inode_count(root) <= s["files_used"] <= s["max_files"]
            spilled = [k for k in model if arena.info(k)["tier"] == "spill"]
            assert arena.stats()["spilled_files"] == len(spilled) == len(listing(spill))
            for key, x in model.items():
                np.testing.assert_array_equal(arena.get(key), x)
            assert sorted(arena.keys()) == sorted(model) and arena.check() == []
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(spill, ignore_errors=True)
