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
