"""Ingest by a real daemon over real inotify: exact averages, each file exactly once,
rejects that touch nothing outside the arena, and kill -9 recovery."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from noisefs import faults
from noisefs.daemon.statusfile import read_status
from tests.test_daemon_support import (
    daemons_fixture,
    leftovers,
    log_text,
    random_psi,
    random_rho,
    result,
    save_renamed,
    save_slowly,
    wait_for,
    wait_ingested,
    wait_running,
    write_config,
)


@pytest.fixture
def daemons(tmp_path):
    yield from daemons_fixture(tmp_path)


def _start(daemons, tmp_path, root, env=None, **top):
    cfg = write_config(tmp_path / "d.toml", root, tmp_path / "results", **top)
    proc = daemons.start("--config", str(cfg), env=env)
    wait_running(root, proc)
    return proc


def test_ingest_equals_numpy_average_each_file_once(daemons, tmp_path, arena_root):
    proc = _start(daemons, tmp_path, arena_root)
    rng = np.random.default_rng(11)
    dim, steps, per_step = 16, 3, 100
    inbox = arena_root / "inbox" / "exp1"
    sums = np.zeros((steps, dim, dim), complex)
    slow = []
    for step in range(steps):
        (inbox / str(step)).mkdir(parents=True)
        for i in range(per_step):
            arr = random_psi(rng, dim) if i % 5 else random_rho(rng, dim)
            sums[step] += np.outer(arr, arr.conj()) if arr.ndim == 1 else arr
            path = inbox / str(step) / f"traj_{i}.npy"
            if i % 3 == 0:
                save_renamed(path, arr)
            elif i % 3 == 1 or i % 20 != 2:
                np.save(path, arr)  # the legacy way: the name is final while writing
            else:
                slow.append(threading.Thread(target=save_slowly, args=(path, arr)))
                slow[-1].start()
    for t in slow:
        t.join()
    (inbox / "DONE").touch()
    results = tmp_path / "results"
    wait_for(lambda: (results / "exp1.npz").exists(), 20, "the result", proc)
    res = result(results, "exp1")
    assert res["counts"].tolist() == [per_step] * steps
    assert res["steps"].tolist() == list(range(steps))
    assert res["rho"].shape == (steps, dim, dim)
    assert np.abs(res["rho"] - sums / per_step).max() < 1e-10
    meta = json.loads(str(res["meta"]))
    assert meta["complete"] and meta["ingested_files"] == steps * per_step
    wait_for(lambda: not leftovers(arena_root), 5, "inbox and claimed files freed", proc)
    assert not (arena_root / "inbox" / "exp1").exists()
    status = wait_for(
        lambda: (s := read_status(arena_root))["runs"]["exp1"].get("done") and s,
        5,
        "the status file to show the finished run",
        proc,
    )
    assert status["runs"]["exp1"]["ingested"] == steps * per_step
    assert status["counters"]["rejected"] == {}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_rejects_touch_nothing_outside(daemons, tmp_path, arena_root):
    proc = _start(daemons, tmp_path, arena_root)
    rng = np.random.default_rng(5)
    outside = Path("/dev/shm") / f"noisefs-test-outside-{uuid.uuid4().hex[:8]}"
    outside.mkdir()
    try:
        good = random_psi(rng, 8)
        target = outside / "victim.npy"
        np.save(target, good)
        before = target.read_bytes()
        step = arena_root / "inbox" / "bad" / "0"
        step.mkdir(parents=True)
        save_renamed(step / "first.npy", good)  # fixes the run's shape: 3 qubits
        wait_ingested(arena_root, "bad", 1, proc)
        (step / "garbage.npy").write_bytes(b"this is not an npy file at all")
        np.save(step / "pickled.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        os.symlink(target, step / "link.npy")
        os.link(target, step / "hard.npy")
        save_renamed(step / "ints.npy", np.arange(8))
        save_renamed(step / "nonsquare.npy", np.zeros((8, 4), complex))
        save_renamed(step / "otherdim.npy", random_psi(rng, 16))
        save_renamed(step / "nan.npy", np.full(8, np.nan, complex))
        save_renamed(step / "unnormalised.npy", 3 * good)
        os.mkfifo(step / "fifo.npy")
        with open(step / "truncated.npy", "wb") as handle:  # header promises more data
            np.save(handle, good)
            handle.truncate(100)
        expected = {
            "not_npy": 1,
            "object_dtype": 1,
            "symlink": 1,
            "hard_link": 1,
            "dtype": 1,
            "shape": 2,
            "not_finite": 1,
            "not_normalized": 1,
            "not_regular": 1,
            "truncated": 1,
        }

        def all_rejected():
            s = read_status(arena_root)
            return s if s["counters"]["rejected"] == expected else None

        wait_for(all_rejected, 15, f"rejections {expected}", proc)
        rejected = sorted(p.name for p in (arena_root / "inbox" / "bad" / "rejected").iterdir())
        assert len(rejected) == sum(expected.values())
        assert sorted(p.name for p in step.iterdir()) == []
        # nothing outside the arena opened for writing, moved or deleted
        assert target.read_bytes() == before
        assert os.stat(target).st_nlink == 2  # the hard link now sits in rejected/
        assert sorted(p.name for p in outside.iterdir()) == ["victim.npy"]
        assert os.path.islink(arena_root / "inbox" / "bad" / "rejected" / "0-link.npy")
        text = log_text(proc)
        for reason in expected:
            assert f": {reason} (moved to" in text
        (arena_root / "inbox" / "bad" / "DONE").touch()
        wait_for(lambda: (tmp_path / "results" / "bad.npz").exists(), 10, "result", proc)
        res = result(tmp_path / "results", "bad")
        assert res["counts"].tolist() == [1]
        assert np.abs(res["rho"][0] - np.outer(good, good.conj())).max() < 1e-12
    finally:
        shutil.rmtree(outside, ignore_errors=True)


@pytest.mark.parametrize(
    "point", ["daemon.claimed@40", "daemon.folded@77", "daemon.checkpointed@1"]
)
def test_kill9_mid_ingest_then_restart_folds_each_once(daemons, tmp_path, arena_root, point):
    rng = np.random.default_rng(3)
    dim, steps, per_step = 8, 2, 120
    sums = np.zeros((steps, dim, dim), complex)
    inbox = arena_root / "inbox" / "crash"
    arena_root.mkdir(mode=0o700)
    (arena_root / "inbox").mkdir(mode=0o700)
    for step in range(steps):
        (inbox / str(step)).mkdir(parents=True)
        for i in range(per_step):
            psi = random_psi(rng, dim)
            sums[step] += np.outer(psi, psi.conj())
            save_renamed(inbox / str(step) / f"t{i}.npy", psi)
    cfg = write_config(tmp_path / "d.toml", arena_root, tmp_path / "results")
    first = daemons.start("--config", str(cfg), env={faults.ENV: point})
    assert first.wait(20) == -signal.SIGKILL, log_text(first)
    second = daemons.start("--config", str(cfg), log="second.log")
    wait_running(arena_root, second)
    (inbox / "DONE").touch()
    wait_for(lambda: (tmp_path / "results" / "crash.npz").exists(), 20, "result", second)
    res = result(tmp_path / "results", "crash")
    assert res["counts"].tolist() == [per_step] * steps
    assert np.abs(res["rho"] - sums / per_step).max() < 1e-10
    wait_for(lambda: not leftovers(arena_root), 5, "files freed", second)
    second.send_signal(signal.SIGTERM)
    assert second.wait(10) == 0


def test_backlog_pauses_inotify_and_misses_nothing(daemons, tmp_path, arena_root):
    """A directory of 2500 files moved in at once pauses inotify while it is folded; files
    written meanwhile are found by the rescan that follows the resume."""
    proc = _start(daemons, tmp_path, arena_root)
    stage = arena_root / "stage-backlog"
    (stage / "0").mkdir(parents=True)
    psi = np.array([0.6, 0.8j])
    data = _npy_bytes(psi)
    for i in range(2500):
        (stage / "0" / f"b{i}.npy").write_bytes(data)
    os.rename(stage, arena_root / "inbox" / "backlog")
    late = arena_root / "inbox" / "backlog" / "1"
    late.mkdir()
    for i in range(20):
        save_renamed(late / f"late{i}.npy", psi)
    wait_ingested(arena_root, "backlog", 2520, proc, timeout=60)
    (arena_root / "inbox" / "backlog" / "DONE").touch()
    wait_for(lambda: (tmp_path / "results" / "backlog.npz").exists(), 20, "result", proc)
    res = result(tmp_path / "results", "backlog")
    assert res["counts"].tolist() == [2500, 20]
    assert np.abs(res["rho"][0] - np.outer(psi, psi.conj())).max() < 1e-12
    assert read_status(arena_root)["mode"] == "inotify"  # resumed


def _npy_bytes(arr) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_large_rho_files_read_through_a_mapping(daemons, tmp_path, arena_root):
    """Files of 1 MiB and more are mapped (under a read lease), not copied."""
    proc = _start(daemons, tmp_path, arena_root)
    rng = np.random.default_rng(8)
    step = arena_root / "inbox" / "big" / "2"
    step.mkdir(parents=True)
    rhos = [random_rho(rng, 256) for _ in range(3)]
    np.save(step / "a.npy", rhos[0])
    save_renamed(step / "b.npy", rhos[1])
    np.save(step / "c.npy", np.asfortranarray(rhos[2]))  # Fortran order on disk
    (step.parent / "DONE").touch()
    wait_for(lambda: (tmp_path / "results" / "big.npz").exists(), 20, "the result", proc)
    res = result(tmp_path / "results", "big")
    assert res["counts"].tolist() == [3] and res["steps"].tolist() == [2]
    assert np.abs(res["rho"][0] - np.mean(rhos, axis=0)).max() < 1e-12


def test_results_dir_gone_keeps_everything_and_retries(daemons, tmp_path, arena_root):
    results = tmp_path / "results"
    cfg = write_config(tmp_path / "d.toml", arena_root, results, state_dir=str(tmp_path / "state"))
    proc = daemons.start("--config", str(cfg))
    wait_running(arena_root, proc)
    shutil.rmtree(results)
    results.write_text("not a directory")  # every result write fails now
    step = arena_root / "inbox" / "keep" / "0"
    step.mkdir(parents=True)
    save_renamed(step / "a.npy", np.array([0.0, 1.0]))
    (step.parent / "DONE").touch()
    wait_for(lambda: "result not written" in log_text(proc), 10, "the error line", proc)
    assert proc.poll() is None
    results.unlink()
    results.mkdir()
    wait_for(lambda: (results / "keep.npz").exists(), 20, "the retried result", proc)
    assert result(results, "keep")["counts"].tolist() == [1]


def test_sigterm_mid_backlog_then_restart_counts_each_once(daemons, tmp_path, arena_root):
    proc = _start(daemons, tmp_path, arena_root)
    stage = arena_root / "stage-term"
    (stage / "0").mkdir(parents=True)
    psi = np.array([0.6, 0.8])
    data = _npy_bytes(psi)
    for i in range(3000):
        (stage / "0" / f"t{i}.npy").write_bytes(data)
    os.rename(stage, arena_root / "inbox" / "term")
    wait_for(
        lambda: (read_status(arena_root)["runs"].get("term") or {}).get("ingested", 0) > 0,
        10,
        "ingest to start",
        proc,
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    partial = result(tmp_path / "results", "term")["counts"][0]
    again = daemons.start("--config", str(tmp_path / "d.toml"), log="again.log")
    wait_running(arena_root, again)
    (arena_root / "inbox" / "term" / "DONE").touch()
    wait_for(
        lambda: json.loads(str(result(tmp_path / "results", "term")["meta"]))["complete"],
        30,
        "the complete result",
        again,
    )
    res = result(tmp_path / "results", "term")
    assert 0 < partial <= 3000 and res["counts"].tolist() == [3000]
    assert np.abs(res["rho"][0] - np.outer(psi, psi)).max() < 1e-12


def test_step_with_leading_zeros_is_rejected_whole(daemons, tmp_path, arena_root):
    """``007`` is not a step's canonical name (it would be reopened as ``7``): the directory
    goes to ``rejected/`` with its files, with a log line; ``7`` itself is ingested."""
    proc = _start(daemons, tmp_path, arena_root)
    rng = np.random.default_rng(7)
    run = arena_root / "inbox" / "lead"
    (run / "007").mkdir(parents=True)
    (run / "7").mkdir()
    good = random_psi(rng, 4)
    for i in range(2):
        save_renamed(run / "007" / f"z{i}.npy", random_psi(rng, 4))
    save_renamed(run / "7" / "ok.npy", good)

    def rejected():
        s = read_status(arena_root)
        return s if s["counters"]["rejected"].get("step_name") == 1 else None

    wait_for(rejected, 10, "the step directory 007 rejected", proc)
    assert sorted(p.name for p in (run / "rejected" / "007-007").iterdir()) == ["z0.npy", "z1.npy"]
    assert not (run / "007").exists()
    assert ": step_name (moved to" in log_text(proc)
    (run / "DONE").touch()
    wait_for(lambda: (tmp_path / "results" / "lead.npz").exists(), 10, "the result", proc)
    res = result(tmp_path / "results", "lead")
    assert res["steps"].tolist() == [7] and res["counts"].tolist() == [1]
    assert np.abs(res["rho"][0] - np.outer(good, good.conj())).max() < 1e-12
    assert read_status(arena_root)["counters"]["missed_events"] == 0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_inbox_removed_and_recreated_is_watched_again(daemons, tmp_path, arena_root):
    """The inbox removed and made anew: the next full scan reopens it (with a warning),
    restarts the watch and ingest goes on."""
    proc = _start(daemons, tmp_path, arena_root)
    rng = np.random.default_rng(5)
    inbox = arena_root / "inbox"
    (inbox / "before" / "0").mkdir(parents=True)
    save_renamed(inbox / "before" / "0" / "a.npy", random_psi(rng, 4))
    wait_ingested(arena_root, "before", 1, proc)
    shutil.rmtree(inbox)
    inbox.mkdir(mode=0o700)
    (inbox / "after" / "0").mkdir(parents=True)
    for i in range(3):
        save_renamed(inbox / "after" / "0" / f"{i}.npy", random_psi(rng, 4))
    wait_ingested(arena_root, "after", 3, proc, timeout=10)
    assert "inbox was replaced; reopened it" in log_text(proc)
    # the watch follows the new inbox: a file written now is taken without a rescan
    (inbox / "after" / "1").mkdir()
    save_renamed(inbox / "after" / "1" / "late.npy", random_psi(rng, 4))
    wait_ingested(arena_root, "after", 4, proc, timeout=10)
    wait_for(lambda: not leftovers(arena_root), 5, "files freed", proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_corrupt_checkpoint_is_set_aside(daemons, tmp_path, arena_root):
    """A damaged checkpoint (not a zip; a zip cut short) is renamed ``.bad`` with an error
    line and the daemon starts; the run starts anew."""
    import hashlib

    tag = hashlib.sha256(str(arena_root).encode()).hexdigest()[:8]
    state = tmp_path / "state" / "noisefs" / "daemon" / f"{arena_root.name}-{tag}"
    state.mkdir(parents=True)
    (state / "broken.ckpt.npz").write_bytes(b"PK\x03\x04 this is no zip file")
    np.savez(state / "cut.ckpt.npz", header=np.array("{}"), s0_sum=np.zeros((64, 64)))
    data = (state / "cut.ckpt.npz").read_bytes()
    (state / "cut.ckpt.npz").write_bytes(data[: len(data) // 2])
    proc = _start(daemons, tmp_path, arena_root)
    assert sorted(p.name for p in state.iterdir()) == ["broken.ckpt.bad", "cut.ckpt.bad"]
    text = log_text(proc)
    assert text.count("unreadable (") == 2 and "set aside as" in text
    step = arena_root / "inbox" / "broken" / "0"
    step.mkdir(parents=True)
    save_renamed(step / "a.npy", random_psi(np.random.default_rng(1), 4))
    wait_ingested(arena_root, "broken", 1, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_races_between_probe_and_claim(daemons, tmp_path, arena_root):
    """A valid file renamed over the name after the probe is probed afresh and folded (not
    rejected as replaced); a hard link made after the probe is rejected after the claim."""
    marker = tmp_path / "claiming"
    env = {faults.ENV: f"daemon.claim-paused={marker}"}
    proc = _start(daemons, tmp_path, arena_root, env=env)
    rng = np.random.default_rng(8)
    first, second, linked = (random_psi(rng, 4) for _ in range(3))
    step = arena_root / "inbox" / "race" / "0"
    step.mkdir(parents=True)
    save_renamed(step / "x.npy", first)
    wait_for(marker.exists, 10, "the daemon between probe and claim", proc)
    save_renamed(step / "x.npy", second)  # replaces the probed file under the same name
    marker.unlink()
    wait_ingested(arena_root, "race", 1, proc)
    other = arena_root / "elsewhere.npy"
    save_renamed(step / "y.npy", linked)
    wait_for(marker.exists, 10, "the daemon between probe and claim", proc)
    os.link(step / "y.npy", other)
    marker.unlink()

    def rejected():
        s = read_status(arena_root)
        return s if s["counters"]["rejected"].get("hard_link") == 1 else None

    status = wait_for(rejected, 10, "the late hard link rejected", proc)
    assert status["runs"]["race"]["ingested"] == 1
    assert "replaced" not in status["counters"]["rejected"]
    assert os.stat(other).st_nlink == 2  # the other name untouched, now in rejected/
    assert (arena_root / "inbox" / "race" / "rejected" / "0-y.npy").exists()
    (step.parent / "DONE").touch()
    wait_for(lambda: (tmp_path / "results" / "race.npz").exists(), 10, "the result", proc)
    res = result(tmp_path / "results", "race")
    assert res["counts"].tolist() == [1]
    assert np.abs(res["rho"][0] - np.outer(second, second.conj())).max() < 1e-12
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_dead_observer_is_restarted_and_a_rescan_follows(daemons, tmp_path, arena_root):
    """The observer's emitter dies (the test hook stops it, as a watch limit hit in a new
    directory does); files written while it is dead have no event: the restart's rescan
    finds them long before the periodic rescan (60 s here)."""
    marker = tmp_path / "observer"
    env = {faults.ENV: f"daemon.observer-dies={marker}"}
    proc = _start(daemons, tmp_path, arena_root, env=env, scan_interval_s=60.0)
    rng = np.random.default_rng(4)
    step = arena_root / "inbox" / "one" / "0"
    step.mkdir(parents=True)
    save_renamed(step / "a.npy", random_psi(rng, 4))
    wait_ingested(arena_root, "one", 1, proc)
    # the rescan the directory's events call for (police tick) is done: none is pending, so
    # only the observer's restart can find the files written below
    wait_for(lambda: read_status(arena_root)["scan_pending"] is False, 10, "no scan pending", proc)
    marker.write_text("kill")
    wait_for(lambda: marker.read_text() == "dead", 10, "the observer stopped", proc)
    for i in range(3):
        save_renamed(step / f"b{i}.npy", random_psi(rng, 4))  # no event: nobody watches
    marker.unlink()  # the next liveness check sees it dead
    wait_ingested(arena_root, "one", 4, proc, timeout=10)
    assert "the inotify observer stopped; restarting it (a rescan follows)" in log_text(proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
