"""Unsafe roots are refused; nothing is followed through a symlink; everything is private."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from noisefs.arena import Arena, default_root, default_spill_dir
from noisefs.errors import UnsafePathError
from tests.test_arena_fixtures import *  # noqa: F403 - the fixtures make_arena, shm_root, spill


def test_symlinked_root_refused(shm_root, tmp_path, spill):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    os.symlink(real, shm_root)
    try:
        with pytest.raises(UnsafePathError) as info:
            Arena(shm_root, spill_dir=spill)
        message = str(info.value)
        assert str(shm_root) in message and "symbolic link" in message and "\n" not in message
        assert os.listdir(real) == []
    finally:
        os.unlink(shm_root)


def test_foreign_owned_root_refused(shm_root, spill):
    if os.geteuid() != 0:
        pytest.skip("chown to another uid needs root")
    shm_root.mkdir(mode=0o700)
    os.chown(shm_root, 12345, 12345)
    with pytest.raises(UnsafePathError, match="owned by uid 12345"):
        Arena(shm_root, spill_dir=spill)
    assert os.listdir(shm_root) == []


def test_path_through_another_users_symlink_refused(shm_root, tmp_path, spill):
    if os.geteuid() != 0:
        pytest.skip("a symlink owned by another uid needs root")
    target = tmp_path / "victim"
    target.mkdir(mode=0o700)
    os.symlink(target, shm_root)  # planted in /dev/shm by "another user"
    os.lchown(shm_root, 12345, 12345)
    try:
        with pytest.raises(UnsafePathError, match="symbolic link owned by uid 12345"):
            Arena(shm_root / "arena", spill_dir=spill)
        assert os.listdir(target) == []
    finally:
        os.unlink(shm_root)


def test_foreign_owned_spill_refused(shm_root, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chown to another uid needs root")
    spill_dir = tmp_path / "foreign"
    spill_dir.mkdir(mode=0o700)
    os.chown(spill_dir, 12345, 12345)
    with pytest.raises(UnsafePathError, match="unsafe spill path .*--spill"):
        # refused when the arena opens (gc looks into an existing spill dir) or, at the
        # latest, when a snapshot too big for the tmpfs tier needs it
        with Arena(shm_root, quota="2MiB", spill_dir=spill_dir, timeout_s=0.2) as arena:
            arena.put(np.ones(400_000))


def test_root_that_is_a_file_refused(shm_root, spill):
    shm_root.write_bytes(b"")
    try:
        with pytest.raises(UnsafePathError, match="not a directory"):
            Arena(shm_root, spill_dir=spill)
    finally:
        shm_root.unlink()


def test_loose_mode_refused_and_left_alone(shm_root, spill):
    shm_root.mkdir()
    os.chmod(shm_root, 0o755)
    with pytest.raises(UnsafePathError, match="mode 0755 lets other users in.*chmod 700"):
        Arena(shm_root, spill_dir=spill)
    assert stat.S_IMODE(os.stat(shm_root).st_mode) == 0o755 and os.listdir(shm_root) == []
    os.chmod(shm_root, 0o700)
    with Arena(shm_root, spill_dir=spill):
        pass


def test_symlinked_data_dir_refused(shm_root, tmp_path, spill):
    shm_root.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.symlink(target, shm_root / "data")
    with pytest.raises(UnsafePathError):
        Arena(shm_root, spill_dir=spill)


def test_planted_symlink_in_data_is_never_followed(make_arena, shm_root, tmp_path):
    arena = make_arena()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.symlink(victim, shm_root / "data" / "planted.snap")
    os.utime(shm_root / "data" / "planted.snap", (1, 1), follow_symlinks=False)
    arena.put(np.ones(10))
    arena.gc()  # removes the orphan link itself, not its target
    assert victim.read_bytes() == b"precious"
    assert not os.path.lexists(shm_root / "data" / "planted.snap")


def test_private_modes(make_arena, shm_root, spill):
    arena = make_arena(quota="2MiB")
    arena.put(np.ones(10))
    arena.put(np.ones(300_000))  # spills
    for path in (shm_root, shm_root / "data", shm_root / "owners", spill):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
    for directory in (shm_root / "data", shm_root / "owners", spill):
        for name in os.listdir(directory):
            assert stat.S_IMODE(os.stat(directory / name).st_mode) == 0o600, name


def test_defaults(monkeypatch, tmp_path):
    assert default_root() == __import__("pathlib").Path(f"/dev/shm/noisefs-{os.geteuid()}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    spill_dir = default_spill_dir("/dev/shm/noisefs-7")
    assert spill_dir.parent == tmp_path / "noisefs" / "spill"
    assert spill_dir.name.startswith("noisefs-7-") and len(spill_dir.name) == len("noisefs-7-") + 8
    assert default_spill_dir("/dev/shm/noisefs-8") != spill_dir
