"""A real small tmpfs (mounted for the test): a full filesystem or exhausted inodes send
snapshots to the spill tier instead of failing (and never SIGBUS)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

from noisefs.arena import Arena
from tests.conftest import mounted_tmpfs
from tests.test_arena_fixtures import *  # noqa: F403 - the fixtures make_arena, shm_root, spill


@pytest.fixture
def small_tmpfs():
    with mounted_tmpfs("size=8m,nr_inodes=32") as mnt:
        yield mnt


def test_full_tmpfs_sends_snapshots_to_spill(small_tmpfs, spill):
    root = small_tmpfs / "arena"
    with Arena(root, quota="64MiB", max_files=1000, spill_dir=spill, timeout_s=2) as arena:
        tenant = small_tmpfs / "tenant"
        with open(tenant, "wb") as f:  # another program fills the filesystem
            f.write(b"\1" * (6 << 20))
        keys = [arena.put(np.full(100_000, i, dtype=np.float64)) for i in range(6)]  # 800 KB each
        tiers = [arena.info(k)["tier"] for k in keys]
        assert "spill" in tiers
        for i, key in enumerate(keys):
            np.testing.assert_array_equal(arena.get(key), np.full(100_000, i))
        st = os.statvfs(small_tmpfs)
        assert st.f_bavail * st.f_frsize >= 256 * 1024  # headroom left for others
        tenant.unlink()
        later = arena.put(np.ones(100_000))
        assert arena.info(later)["tier"] == "tmpfs"
        assert arena.check() == []


def test_exhausted_inodes_send_snapshots_to_spill(small_tmpfs, spill):
    root = small_tmpfs / "arena"
    with Arena(root, quota="64MiB", max_files=1000, spill_dir=spill, timeout_s=2) as arena:
        keys = [arena.put(np.full(10, i)) for i in range(40)]
        tiers = [arena.info(k)["tier"] for k in keys]
        assert tiers[0] == "tmpfs" and tiers[-1] == "spill"
        st = os.statvfs(small_tmpfs)
        assert st.f_favail >= 2
        for i, key in enumerate(keys):
            np.testing.assert_array_equal(arena.get(key), np.full(10, i))
        # a tenant creating files right now still finds an inode
        (small_tmpfs / "tenant-file").write_bytes(b"x")
        for key in keys:
            arena.release(key)
        assert os.listdir(spill) == []
        assert arena.check() == []


def test_fallocate_enospc_rolls_over_to_spill(small_tmpfs, spill):
    """Another program grabs the space between admission and the write: ENOSPC from
    posix_fallocate rolls the snapshot over to spill (no SIGBUS, no partial file left)."""
    root = small_tmpfs / "arena"
    with Arena(root, quota="64MiB", max_files=1000, spill_dir=spill, timeout_s=2) as arena:
        real = os.posix_fallocate
        calls = []

        def tenant_grabs_space(fd, offset, length):
            if not calls:
                calls.append(1)
                st = os.statvfs(small_tmpfs)  # leave 128 KiB: the ledger can still commit
                with open(small_tmpfs / "tenant", "wb") as f:
                    f.write(b"\1" * (st.f_bavail * st.f_frsize - (128 << 10)))
            return real(fd, offset, length)

        os.posix_fallocate = tenant_grabs_space
        try:
            key = arena.put(np.ones(300_000))  # 2.4 MB
        finally:
            os.posix_fallocate = real
        assert arena.info(key)["tier"] == "spill"
        np.testing.assert_array_equal(arena.get(key), np.ones(300_000))
        assert os.listdir(root / "data") == []


@pytest.fixture
def small_spill():
    """A 4 MiB tmpfs used as the spill tier."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = Path("/tmp") / f"noisefs-spill-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)
    shutil.rmtree(mnt, ignore_errors=True)


def test_spill_enospc_waits_then_succeeds(shm_root, small_spill):
    """The spill filesystem fills up between admission and the write (another program):
    the write's ENOSPC rolls the reservation back, leaves no partial file, and put waits
    until there is room again."""
    import threading

    tenant = small_spill / "tenant"
    real = os.pwrite
    state = {"hit": 0}

    def tenant_fills_spill(fd, data, offset):
        if not state["hit"] and offset > 0:
            state["hit"] = 1
            st = os.statvfs(small_spill)
            with open(tenant, "wb") as f:
                f.write(b"\1" * (st.f_bavail * st.f_frsize - 8192))
            threading.Timer(0.5, tenant.unlink).start()  # the tenant goes away later
        return real(fd, data, offset)

    with Arena(shm_root, quota="1MiB", spill_dir=small_spill / "spill", timeout_s=10) as arena:
        os.pwrite = tenant_fills_spill
        try:
            key = arena.put(np.ones(150_000))  # 1.2 MB: bigger than the tmpfs quota -> spill
        finally:
            os.pwrite = real
        assert state["hit"] and not tenant.exists()  # it waited for the tenant to go
        assert arena.info(key)["tier"] == "spill"
        np.testing.assert_array_equal(arena.get(key), np.ones(150_000))
        assert os.listdir(small_spill / "spill") == [
            arena.info(key)["slot"]
        ]  # no partial file left
        assert arena.check() == []


def _fill(mnt: Path) -> Path:
    """Another program takes every free block of ``mnt``."""
    tenant = mnt / "tenant"
    with open(tenant, "wb") as f:
        try:
            f.write(b"\1" * (os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize))
            f.flush()
        except OSError:
            pass
    return tenant


@pytest.fixture
def roomy_inodes_tmpfs():
    with mounted_tmpfs("size=8m,nr_inodes=4000") as mnt:
        yield mnt


def _handed_over(mnt: Path, spill: Path) -> tuple[Arena, list[str]]:
    """An arena on ``mnt`` holding 400 published snapshots left for a consumer."""
    arena = Arena(mnt / "arena", quota="64MiB", max_files=3000, spill_dir=spill, timeout_s=0.5)
    keys = [arena.put(np.full(10, i, dtype=np.float64), run="h") for i in range(400)]
    assert len(arena.keys()) == 400  # published: rows the close must hand to nobody
    return arena, keys


def test_ledger_full_during_close_keeps_the_live_owner_alive(
    roomy_inodes_tmpfs, spill, monkeypatch
):
    """The ledger's filesystem is full while a handle closes: close waits (backpressure),
    then raises ArenaFull in one line naming the arena -- and the owner stays registered
    with its lock held, so another handle's gc neither takes the live process for dead
    nor reclaims the snapshots it handed over. Before the fix the lock was dropped (and
    its file unlinked inside the failed transaction): gc reclaimed all 400 snapshots."""
    from noisefs.arena import owners
    from noisefs.errors import ArenaFull

    mnt = roomy_inodes_tmpfs
    arena, keys = _handed_over(mnt, spill)
    tenant = _fill(mnt)
    with pytest.raises(ArenaFull) as info:
        arena.close()
    message = str(info.value)
    assert "\n" not in message and str(mnt / "arena" / "ledger.db") in message
    assert "/proc/self/fd" not in message
    locks = os.listdir(mnt / "arena" / "owners")
    assert len(locks) == 1  # its lock file is still there ...
    monkeypatch.setattr(owners, "STARTING_GRACE_S", 0.0)  # (no start-up grace to hide behind)
    tenant.unlink()
    other = Arena(mnt / "arena", spill_dir=spill, timeout_s=2)
    try:
        assert len(other.live_owners()) == 2  # ... and held: the closing process is alive
        report = other.gc()
        assert report["dead_owners"] == 0 and report["snapshots"] == 0
        assert sorted(other.keys()) == sorted(keys)
        for i, key in enumerate(keys[:20]):
            np.testing.assert_array_equal(other.get(key), np.full(10, i))
        assert other.check() == []
    finally:
        other.close()


def test_ledger_full_during_close_then_room_again_closes_cleanly(roomy_inodes_tmpfs, spill):
    """The other program frees the space while close waits: close completes, the lock
    file goes, the snapshots stay for a consumer (owned by nobody)."""
    import threading

    mnt = roomy_inodes_tmpfs
    arena, keys = _handed_over(mnt, spill)
    arena.timeout_s = 30.0  # the wait lasts until the tenant goes, whatever the load
    tenant = _fill(mnt)
    threading.Timer(0.3, tenant.unlink, kwargs={"missing_ok": True}).start()
    arena.close()
    assert not tenant.exists()
    assert os.listdir(mnt / "arena" / "owners") == []
    with Arena(mnt / "arena", spill_dir=spill, timeout_s=2) as other:
        assert other.gc()["snapshots"] == 0
        assert sorted(other.keys()) == sorted(keys)
        assert other.check() == []
