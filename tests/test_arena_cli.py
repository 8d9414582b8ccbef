"""``noisefs status`` and ``noisefs gc`` as a user runs them (subprocess), with exit codes."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import numpy as np

from noisefs.arena import Arena
from tests.test_arena_fixtures import *  # noqa: F403 - the fixtures make_arena, shm_root, spill
from tests.test_arena_fixtures import data_files


def noisefs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "noisefs", *args], capture_output=True, text=True, timeout=60
    )


def test_status_of_missing_arena_creates_nothing(shm_root):
    done = noisefs("status", "--arena", str(shm_root), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"root": str(shm_root), "exists": False}
    plain = noisefs("status", "--arena", str(shm_root))
    assert plain.returncode == 0 and "no arena" in plain.stdout
    assert not shm_root.exists()


def test_status_json_and_table(make_arena, shm_root):
    arena = make_arena(quota="16MiB", max_files=100)
    for i in range(3):
        arena.put(np.ones(1000), run="alpha", step=i)
    arena.put(np.ones(10), run="beta")
    done = noisefs("status", "--arena", str(shm_root), "--json")
    assert done.returncode == 0, done.stderr
    s = json.loads(done.stdout)
    mine = arena.stats()
    for name in (
        "bytes_used",
        "files_used",
        "quota_bytes",
        "max_files",
        "spilled_bytes",
        "spilled_files",
        "runs",
    ):
        assert s[name] == mine[name], name
    assert s["live_owners"] == 1 and s["owner_pids"] == [os.getpid()]
    assert s["runs"] == {"alpha": 3, "beta": 1}
    table = noisefs("status", "--arena", str(shm_root))
    assert table.returncode == 0
    assert "16.0 MiB" in table.stdout and "alpha: 3" in table.stdout and "of 100" in table.stdout


def test_status_refuses_unsafe_root(shm_root, tmp_path):
    os.symlink(tmp_path, shm_root)
    try:
        done = noisefs("status", "--arena", str(shm_root))
        assert done.returncode == 3
        assert "symbolic link" in done.stderr and "Traceback" not in done.stderr
    finally:
        os.unlink(shm_root)


def _put_and_hang(root: str, marker: str) -> None:
    with Arena(root) as arena:
        arena.put(np.ones(5000), run="dead")
        os.environ["NOISEFS_FAULTS"] = f"arena.put-paused={marker}"
        arena.put(np.ones(5000), run="dead")


def test_gc_dry_run_then_gc(make_arena, shm_root, tmp_path):
    arena = make_arena()
    live = arena.put(np.arange(10.0), run="live")
    marker = tmp_path / "paused"
    child = mp.get_context("spawn").Process(target=_put_and_hang, args=(str(shm_root), str(marker)))
    child.start()
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    before = data_files(shm_root)
    dry = noisefs("gc", "--arena", str(shm_root), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["dry_run"] and report["dead_owners"] == 1
    assert report["snapshots"] == 1 and report["partial_files"] == 1
    assert data_files(shm_root) == before  # nothing changed
    done = noisefs("gc", "--arena", str(shm_root))
    assert done.returncode == 0 and "reclaimed" in done.stdout and "1 dead owners" in done.stdout
    assert arena.keys() == [live]
    assert len(data_files(shm_root)) == 1
    np.testing.assert_array_equal(arena.get(live), np.arange(10.0))
    again = json.loads(noisefs("gc", "--arena", str(shm_root), "--json").stdout)
    assert again["dead_owners"] == 0 and again["bytes"] == 0


def test_gc_of_missing_arena(shm_root):
    done = noisefs("gc", "--arena", str(shm_root), "--dry-run")
    assert done.returncode == 0 and "no arena" in done.stdout
    assert not shm_root.exists()


def test_gc_unowned_drops_what_closed_handles_left(make_arena, shm_root):
    arena = make_arena()
    kept = arena.put(np.ones(1000))
    arena.close()  # a clean close leaves the snapshot for a consumer
    status = noisefs("status", "--arena", shm_root)
    assert "gc --unowned" in status.stdout
    plain = json.loads(noisefs("gc", "--arena", shm_root, "--json").stdout)
    assert plain["snapshots"] == 0 and plain["unowned_snapshots"] == 0
    dropped = json.loads(noisefs("gc", "--arena", shm_root, "--unowned", "--json").stdout)
    assert dropped["unowned_snapshots"] == 1
    with Arena.open_existing(shm_root) as again:
        assert kept not in again.keys() and again.keys() == []
