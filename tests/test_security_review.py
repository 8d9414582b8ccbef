"""Security review (issue 18, docs/security.md): what tests/test_arena_security.py and the
daemon's reject tests did not cover. Planted symbolic and hard links in the spill dir and
in data/, world-writable parents without the sticky bit, names with '..', NUL and
newlines, a metrics port already taken. Nothing outside the arena is read, written or
deleted."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from noisefs.arena import Arena
from noisefs.daemon.logs import HumanFormatter, JournalFormatter
from noisefs.errors import InputError, UnsafePathError
from tests.test_arena_fixtures import *  # noqa: F403 - the fixtures make_arena, shm_root, spill


@pytest.mark.parametrize("what", ["arena", "spill"])
def test_a_world_writable_parent_without_the_sticky_bit_is_refused(shm_root, tmp_path, what):
    """Anyone may rename entries of a mode-0777 directory without the sticky bit, so an
    arena or spill dir below one could be swapped between two runs: refused, and nothing
    is created there. (/tmp and /dev/shm carry the sticky bit and stay fine.)"""
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    root, spill_dir = shm_root, tmp_path / "spill"
    if what == "arena":
        os.chmod(tmp_path, 0o700)
        root = open_dir / "arena"
    else:
        spill_dir = open_dir / "spill"
    with pytest.raises(UnsafePathError) as info:
        with Arena(root, quota="2MiB", spill_dir=spill_dir, timeout_s=0.2) as arena:
            arena.prepare_spill()
    message = str(info.value)
    assert "without the sticky bit" in message and str(open_dir) in message
    assert "\n" not in message
    assert os.listdir(open_dir) == []


def test_planted_links_in_the_spill_dir_are_unlinked_never_followed(make_arena, spill, tmp_path):
    """A symbolic link and a hard link planted in the spill dir under names of this
    arena's spill files: gc removes the names; the target is neither read nor written
    nor deleted (its other name stays, its bytes unchanged)."""
    arena = make_arena(quota="2MiB")
    key = arena.put(np.ones(400_000))  # bigger than the tmpfs tier allows: spilled
    assert arena.info(key)["tier"] == "spill"
    slot = arena.info(key)["slot"]
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious" * 512)
    planted_symlink = spill / f"{slot[:-10]}aaaaaaaa.snap"
    planted_link = spill / f"{slot[:-10]}bbbbbbbb.snap"
    os.symlink(victim, planted_symlink)
    os.link(victim, planted_link)
    for name in (planted_symlink, planted_link):
        os.utime(name, (1, 1), follow_symlinks=False)  # old enough to count as orphans
    arena.release(key)
    report = arena.gc()
    assert report["orphan_files"] == 2
    assert not os.path.lexists(planted_symlink) and not os.path.lexists(planted_link)
    assert victim.read_bytes() == b"precious" * 512 and os.stat(victim).st_nlink == 1


def test_a_hard_link_planted_at_a_future_slot_name_is_never_written(make_arena, shm_root, tmp_path):
    """Lease slot names are predictable (o<owner>-<n>.snap): a hard link to a victim
    planted at the next names makes puts fail or pick other names, but the victim's
    bytes are never written (new files are created with O_EXCL, never opened in place)."""
    arena = make_arena()
    key = arena.put(np.ones(10))
    arena.keys()  # published: info() names the slot
    prefix, number = arena.info(key)["slot"][: -len(".snap")].split("-")
    victim = shm_root.parent / f"{shm_root.name}-victim"
    victim.write_bytes(b"V" * 20_000)
    try:
        for n in range(int(number, 16) + 1, int(number, 16) + 6):
            os.link(victim, shm_root / "data" / f"{prefix}-{n:x}.snap")
        for _ in range(5):
            try:
                arena.put(np.full(1000, 7.0))
            except OSError:
                pass
        assert victim.read_bytes() == b"V" * 20_000
    finally:
        victim.unlink()


@pytest.mark.parametrize("run", ["../x", "a/../b", "a\0b", "a\nb", "..", ".hidden", "-x", ""])
def test_run_names_with_dots_nul_or_newlines_are_refused(make_arena, run):
    """A run name becomes part of keys and of the daemon's file names: '..', '/', NUL and
    newlines never pass."""
    arena = make_arena()
    with pytest.raises(InputError, match="bad run name"):
        arena.put(np.ones(3), run=run)


def test_a_log_line_cannot_be_forged_by_a_name_holding_a_newline():
    """The daemon logs names it did not choose (inbox entries): a newline in one never
    starts a line of its own (continuations are indented, \\r is shown escaped)."""
    forged = "x\n2026-01-01 00:00:00 noisefs-daemon[1] ERROR: forged\rline"
    record = logging.LogRecord(
        "noisefs.daemon", logging.WARNING, __file__, 1, "%s/inbox/%s ignored", ("/r", forged), None
    )
    for formatter in (
        HumanFormatter("%(levelname)s: %(message)s"),
        JournalFormatter("%(message)s"),
    ):
        lines = formatter.format(record).split("\n")
        assert len(lines) == 2 and lines[1].startswith("  ") and "\r" not in lines[1]


def test_a_metrics_port_already_taken_is_one_line_and_the_arena_is_released(tmp_path, arena_root):
    """--metrics-port on a port another program listens on: one line naming the port,
    exit 2, and the arena (its daemon lock) released for the next daemon."""
    pytest.importorskip("prometheus_client")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        cfg = tmp_path / "d.toml"
        cfg.write_text(
            f'results = "{tmp_path / "results"}"\nmetrics_port = {port}\n'
            f'[[arena]]\nroot = "{arena_root}"\n'
        )
        env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
        proc = subprocess.run(
            [sys.executable, "-m", "noisefs", "daemon", "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    finally:
        taken.close()
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--metrics-port {port}" in lines[0], proc.stderr
    assert "choose a free port" in lines[0]
    with Arena.open_existing(arena_root) as arena:
        assert arena.live_owners() == []
