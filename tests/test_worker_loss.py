"""A worker process that dies between finishing a batch and handing it over, made to happen
deterministically with fault points: the batch is either recomputed (its snapshots were
lost, the pool is whole) or the run ends in one line with a checkpoint --resume continues."""

from __future__ import annotations

import numpy as np
import pytest

from noisefs import faults
from noisefs.arena import Arena
from noisefs.oracle import aer_reference_steps
from noisefs.result import Result
from tests import circuits
from tests.test_cli_run import noisefs_cli


def _args(tmp_path, arena_root, out):
    path = circuits.write(tmp_path, "qft.qasm", circuits.QFT4)
    return [
        "run", path, "-k", 160, "--seed", 11, "--batch", 16, "--workers", 2,
        "--snapshots", "every:3", "-o", out, "--quiet",
        "--arena", arena_root, "--spill", tmp_path / "spill", "--quota", "64MiB",
    ]  # fmt: skip


def _exact(out, trajectories):
    result = Result.load(out)
    assert result.trajectories == trajectories
    reference = aer_reference_steps(result.meta, result.steps)
    assert np.max(np.abs(result.rho - reference)) <= 1e-8


def _arena_empty(arena_root):
    with Arena.open_existing(arena_root) as arena:
        return arena.keys() == []


@pytest.mark.slow
def test_a_batch_whose_snapshots_were_lost_is_recomputed_exactly(tmp_path, arena_root):
    out = tmp_path / "lost.npz"
    proc = noisefs_cli(
        *_args(tmp_path, arena_root, out),
        env=faults.environment("worker.snapshots-lost@2"),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "simulating them again" in proc.stderr  # a loss happened and was recovered
    _exact(out, 160)
    assert _arena_empty(arena_root)


@pytest.mark.slow
def test_a_worker_killed_before_publishing_ends_in_one_line_and_resume_is_exact(
    tmp_path, arena_root
):
    out = tmp_path / "killed.npz"
    args = _args(tmp_path, arena_root, out)
    proc = noisefs_cli(*args, env=faults.environment("worker.batch-done@3"), timeout=300)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "worker process died" in lines[0] and "--resume" in lines[0]
    assert not out.exists()
    assert (tmp_path / "killed.npz.ckpt.npz").exists()
    resumed = noisefs_cli(*args, "--resume", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    _exact(out, 160)
    assert _arena_empty(arena_root)


def test_fault_points_fire_only_when_switched_on_and_once():
    assert not faults.fires("worker.batch-done")
    with faults.armed("worker.batch-done", at=2):
        assert [faults.fires("worker.batch-done") for _ in range(4)] == [0, 1, 0, 0]
    assert not faults.fires("worker.batch-done")
    with pytest.raises(ValueError):
        faults.fires("no.such-point")
    with pytest.raises(ValueError):
        faults.environment("no.such-point")


@pytest.mark.parametrize("at", [1, 2], ids=["parts-closing", "before-write"])
def test_an_interrupt_after_the_last_batch_ends_with_the_complete_result(tmp_path, arena_root, at):
    """SIGTERM after the last batch (executor shutdown, release, building rho, the write)
    used to exit 130 with no checkpoint; the run's work is done, so it ends complete."""
    out = tmp_path / "late.npz"
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    proc = noisefs_cli(
        "run", path, "-k", 48, "--seed", 5, "--batch", 16, "-o", out, "--quiet",
        "--arena", arena_root, "--quota", "16MiB",
        env=faults.environment(f"run.last-window@{at}"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "the result is complete" in proc.stderr
    _exact(out, 48)
    assert not (tmp_path / "late.npz.ckpt.npz").exists()
    assert _arena_empty(arena_root)
