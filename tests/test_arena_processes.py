"""Real processes on one arena: bounds under load, backpressure, SIGKILL in the middle of a put."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import threading
import time

import numpy as np
import pytest

from noisefs.arena import Arena
from noisefs.errors import ArenaFull
from tests.test_arena_fixtures import *  # noqa: F403 - the fixtures make_arena, shm_root, spill
from tests.test_arena_fixtures import data_files, du_bytes, inode_count, listing

CTX = mp.get_context("spawn")
SIZES = [1, 300, 5_000, 40_000, 90_000]  # float64 elements: 8 B .. 720 KB


def _hammer(root: str, seed: int, rounds: int, errors) -> None:
    rng = random.Random(seed)
    try:
        with Arena(root, timeout_s=30) as arena:
            held = []
            for i in range(rounds):
                n = rng.choice(SIZES)
                x = np.full(n, seed * 1_000_000 + i, dtype=np.float64)
                held.append((arena.put(x, run=f"w{seed}", step=i), x))
                if len(held) > 6 or rng.random() < 0.4:
                    key, ref = held.pop(rng.randrange(len(held)))
                    view = arena.get(key)
                    if not np.array_equal(view, ref):
                        errors.put(f"worker {seed}: wrong data for {key}")
                    del view
                    arena.release(key)
            for key, _ in held:
                arena.release(key)
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        errors.put(f"worker {seed}: {type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_bounds_hold_with_four_processes(make_arena, shm_root, spill):
    quota, max_files = 3 << 20, 24
    parent = make_arena(quota=quota, max_files=max_files)
    errors = CTX.Queue()
    workers = [CTX.Process(target=_hammer, args=(str(shm_root), s, 300, errors)) for s in range(4)]
    samples: list[tuple[int, int]] = []
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            samples.append((du_bytes(shm_root), inode_count(shm_root)))

    thread = threading.Thread(target=sampler)
    thread.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    stop.set()
    thread.join()
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    assert all(w.exitcode == 0 for w in workers)
    assert len(samples) > 20
    assert max(b for b, _ in samples) <= quota, max(samples)
    assert max(f for _, f in samples) <= max_files, max(samples)
    s = parent.stats()
    assert s["spilled_total_files"] > 0  # the tiny quota sent some snapshots to spill
    assert s["peak_bytes"] <= quota and s["peak_files"] <= max_files
    assert parent.keys() == [] and parent.check() == []
    parent.close()
    assert data_files(shm_root) == [] and listing(spill) == []
    assert os.listdir(shm_root / "owners") == []


def _blocked_put(root: str, timeout: float, out, ready=None) -> None:
    with Arena(root, timeout_s=timeout) as arena:
        if ready is not None:
            ready.set()  # started: the parent's clock runs from here, not from spawn
        start = time.monotonic()
        try:
            key = arena.put(np.ones(200_000), run="late")
            out.put(("ok", time.monotonic() - start, key))
        except ArenaFull as exc:
            out.put(("full", time.monotonic() - start, exc.errno))


def _fill(arena) -> list[str]:
    keys = []
    while True:
        before = arena.stats()["bytes_used"]
        key = arena.put(np.ones(200_000))  # 1.6 MB
        if arena.info(key)["tier"] != "tmpfs" or arena.stats()["bytes_used"] == before:
            arena.release(key)
            return keys
        keys.append(key)


@pytest.mark.slow
def test_backpressure_waits_for_a_release(make_arena, shm_root):
    arena = make_arena(quota="4MiB", spill_quota=0, timeout_s=0.2)
    keys = [arena.put(np.ones(200_000)), arena.put(np.ones(200_000))]
    with pytest.raises(ArenaFull):
        arena.put(np.ones(200_000))
    out, ready = CTX.Queue(), CTX.Event()
    child = CTX.Process(target=_blocked_put, args=(str(shm_root), 20.0, out, ready))
    child.start()
    assert ready.wait(60)  # spawn and imports take seconds on a loaded machine
    deadline = time.monotonic() + 60
    while not any(o["waiting"] for o in arena.live_owners() if o["pid"] == child.pid):
        assert time.monotonic() < deadline, "the child's put never waited for room"
        time.sleep(0.01)
    assert out.empty()  # blocked: nothing fits until a release
    arena.release(keys[0])
    status, _, key = out.get(timeout=20)
    child.join(10)
    assert status == "ok"
    np.testing.assert_array_equal(arena.get(key), np.ones(200_000))


def test_arena_full_after_timeout(make_arena, shm_root):
    arena = make_arena(quota="4MiB", spill_quota=0, timeout_s=0.3)
    arena.put(np.ones(200_000))
    arena.put(np.ones(200_000))
    start = time.monotonic()
    with pytest.raises(ArenaFull) as info:
        arena.put(np.ones(200_000))
    assert time.monotonic() - start >= 0.3  # it waited its timeout for room first
    assert info.value.errno == 28 and "full" in str(info.value)
    assert arena.check() == []


def _put_then_hang(root: str, marker: str, big: int) -> None:
    with Arena(root, timeout_s=10) as arena:
        arena.put(np.full(big, 1.0), run="victim", step=0)
        arena.put(np.full(big, 2.0), run="victim", step=1)
        os.environ["NOISEFS_FAULTS"] = f"arena.put-paused={marker}"
        arena.put(np.full(big, 3.0), run="victim", step=2)  # hangs before publishing


@pytest.mark.parametrize("big", [100_000, 3_000_000])  # tmpfs, and (24 MB > quota) spill
def test_sigkill_mid_put_is_reclaimed(make_arena, shm_root, spill, tmp_path, big):
    arena = make_arena(quota="16MiB")
    mine = [arena.put(np.arange(1000.0) + i, run="live") for i in range(3)]
    marker = tmp_path / "paused"
    child = CTX.Process(target=_put_then_hang, args=(str(shm_root), str(marker), big))
    child.start()
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), "the child never reached the pause point"
    pid, _, tier, slot = marker.read_text().split()
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    assert len(arena.keys(run="victim")) == 2
    held = data_files(shm_root) + listing(spill)
    assert slot in held  # the partial file is there
    later = Arena(shm_root)  # opening reclaims what the dead process left
    try:
        assert later.keys(run="victim") == []
        assert slot not in data_files(shm_root) + listing(spill)
        assert later.keys(run="live") == mine
        for i, key in enumerate(mine):
            np.testing.assert_array_equal(later.get(key), np.arange(1000.0) + i)
        assert later.check() == []
    finally:
        later.close()
    s = arena.stats()
    assert s["owners"] == 1 and s["spilled_files"] == 0
    assert du_bytes(shm_root) <= s["bytes_used"]


def _put_forever(root: str) -> None:
    with Arena(root, timeout_s=30) as arena:
        rng = np.random.default_rng(os.getpid())
        i = 0
        while True:
            key = arena.put(rng.standard_normal(rng.integers(1, 400_000)), run="doomed", step=i)
            if i % 3 == 0:
                arena.release(key)
            i += 1


@pytest.mark.slow
def test_sigkill_at_random_times(make_arena, shm_root, spill):
    arena = make_arena(quota="8MiB", max_files=40, timeout_s=10)
    keep = arena.put(np.arange(5000.0), run="live")
    rng = random.Random(7)
    for _ in range(4):
        child = CTX.Process(target=_put_forever, args=(str(shm_root),))
        child.start()
        deadline = time.monotonic() + 60  # spawn start-up: until the child is an owner
        while arena.stats()["owners"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.random())  # then a random point in the put loop
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        report = arena.gc()
        assert report["dead_owners"] == 1
        assert arena.keys(run="doomed") == []
        assert arena.check() == []
        s = arena.stats()
        assert s["owners"] == 1 and s["spilled_files"] == 0
        assert set(data_files(shm_root)) == {
            arena._ledger.conn()
            .execute("SELECT slot FROM snapshots WHERE key = ?", (keep,))
            .fetchone()[0]
        } | _free_slots(arena)
        np.testing.assert_array_equal(arena.get(keep), np.arange(5000.0))
    assert listing(spill) == []


def _free_slots(arena) -> set[str]:
    return {
        r[0]
        for r in arena._ledger.conn().execute("SELECT slot FROM snapshots WHERE state = 'free'")
    }


def _put_and_exit(root: str, out) -> None:
    arena = Arena(root)  # never closed explicitly: the process just ends
    out.put(arena.put(np.arange(7.0), run="orphan"))


def test_exiting_process_hands_its_snapshots_over(make_arena, shm_root):
    arena = make_arena()
    out = CTX.Queue()
    child = CTX.Process(target=_put_and_exit, args=(str(shm_root), out))
    child.start()
    key = out.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0
    s = arena.stats()
    assert s["owners"] == 1 and s["unowned_snapshots"] == 1  # closed at exit, not crashed
    assert arena.gc()["snapshots"] == 0
    arena.adopt([key])
    np.testing.assert_array_equal(arena.get(key), np.arange(7.0))


def _fill_and_hang(root: str, out) -> None:
    arena = Arena(root)
    out.put([arena.put(np.ones(200_000)) for _ in range(2)])  # 2 x 1.6 MB: the quota is full
    time.sleep(3600)


def test_blocked_put_reclaims_space_of_a_dead_process(make_arena, shm_root):
    arena = make_arena(quota="4MiB", spill_quota=0, timeout_s=10)
    out = CTX.Queue()
    child = CTX.Process(target=_fill_and_hang, args=(str(shm_root), out))
    child.start()
    out.get(timeout=30)
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    start = time.monotonic()
    key = arena.put(np.ones(200_000))  # waits, runs gc while waiting, then fits
    assert time.monotonic() - start < 5
    assert arena.info(key)["tier"] == "tmpfs"
    assert arena.stats()["owners"] == 1


_HOLDER = """
import sys, numpy as np
from noisefs.arena import Arena
arena = Arena(sys.argv[1], timeout_s=30)
arena.put(np.ones(100), run="zombie")
arena.publish()
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
def test_an_owner_killed_but_not_yet_reaped_is_dead(make_arena, shm_root):
    """A SIGKILLed process stays a zombie until its parent waits for it, and a zombie
    answers kill(pid, 0): within the start-up grace it must still count as dead."""
    import subprocess
    import sys

    make_arena(quota=1 << 20, max_files=64).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(shm_root)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "ready"
        os.kill(holder.pid, signal.SIGKILL)
        # the kill is asynchronous: wait until the process is a zombie whose descriptors
        # are closed (its lock free), as the OOM killer's victims are before being reaped
        deadline = time.monotonic() + 30
        while not (_is_zombie(holder.pid) and _locks_free(shm_root / "owners")):
            assert time.monotonic() < deadline, "the killed holder never became a zombie"
            time.sleep(0.01)
        with Arena.open_existing(shm_root) as arena:
            assert arena.live_owners() == []
            report = arena.gc()
            assert report["dead_owners"] == 1 and report["snapshots"] == 1
            assert arena.keys() == []
    finally:
        holder.kill()
        holder.wait()


def _is_zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rfind(b")") + 2 :].split()[0] == b"Z"


def _locks_free(owners_dir) -> bool:
    import fcntl

    for path in owners_dir.iterdir():
        with open(path, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
    return True
