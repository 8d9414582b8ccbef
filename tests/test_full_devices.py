"""Full devices under a running `noisefs run` (issue 18): the --output filesystem fills up
after the first checkpoint (a real small tmpfs, another program takes the rest). The run
goes on (checkpoints are retried), the result waits for room up to --put-timeout, then
either completes exactly or fails in one line with exit 3 -- never a partial result, and
the last checkpoint stays for --resume."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from noisefs import faults
from noisefs.aggregate.checkpoint import load_checkpoint
from noisefs.arena import Arena
from noisefs.oracle import aer_reference_steps
from noisefs.result import Result
from tests import circuits
from tests.conftest import mounted_tmpfs


@pytest.fixture
def output_tmpfs():
    with mounted_tmpfs("size=1m,nr_inodes=64") as mnt:
        yield mnt


def _fill(mnt: Path) -> Path:
    tenant = mnt / "tenant"
    with open(tenant, "wb") as f:
        try:
            f.write(b"\1" * (2 << 20))
            f.flush()
        except OSError:
            pass
    return tenant


def _wait_for(predicate, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _start(tmp_path, arena_root, out: Path, marker: Path, put_timeout: float, extra=()):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    args = [
        "run", path, "-k", 256, "--seed", 3, "--batch", 8, "--snapshots", "every:1",
        "--checkpoint-interval", 0, "-o", out, "--put-timeout", put_timeout,
        "--arena", arena_root, "--spill", tmp_path / "spill", "--quota", "64MiB", *extra,
    ]  # fmt: skip
    env = faults.environment(f"checkpoint.written@1={marker}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "noisefs", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return args, proc


def _resume_exactly(args: list, out: Path, trajectories: int) -> None:
    """``noisefs run ARGS --resume`` ends with 0 and the exact result."""
    resumed = subprocess.run(
        [sys.executable, "-m", "noisefs", *map(str, args), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    _assert_exact(out, trajectories)


def _assert_exact(out: Path, trajectories: int) -> None:
    result = Result.load(out)
    assert result.trajectories == trajectories
    assert np.max(np.abs(result.rho - aer_reference_steps(result.meta, result.steps))) <= 1e-8


def test_output_disk_full_mid_run_then_room_again_completes_exactly(
    tmp_path, arena_root, output_tmpfs
):
    """The disk fills after the first checkpoint and is freed while the result waits:
    checkpoints are warned about (not fatal), the result is written, exact."""
    out, marker = output_tmpfs / "r.npz", tmp_path / "hold"
    _, proc = _start(tmp_path, arena_root, out, marker, put_timeout=600)
    try:
        assert _wait_for(marker.exists), "the run never wrote its first checkpoint"
        tenant = _fill(output_tmpfs)
        marker.unlink()  # the run goes on with a full --output filesystem
        lines: list[str] = []

        def read() -> None:
            for line in proc.stderr:
                lines.append(line)
                if "waiting up to" in line:
                    tenant.unlink()  # room again while the result waits for it

        reader = threading.Thread(target=read)
        reader.start()
        assert proc.wait(300) == 0, "".join(lines)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines)
    assert "could not write the checkpoint" in text and "the run goes on" in text, text
    assert "waiting up to 600 s for room" in text and "error" not in text, text
    _assert_exact(out, 256)
    assert sorted(os.listdir(output_tmpfs)) == ["r.npz"]  # no checkpoint, no temporary file


def test_output_disk_full_to_the_end_is_one_error_line_exit_3_and_resume_is_exact(
    tmp_path, arena_root, output_tmpfs
):
    """The disk stays full: after --put-timeout the run fails with exit 3 and one error
    line; no result, no temporary file; the first checkpoint is intact, and once there
    is room --resume completes exactly."""
    out, marker = output_tmpfs / "r.npz", tmp_path / "hold"
    args, proc = _start(tmp_path, arena_root, out, marker, put_timeout=1)
    try:
        assert _wait_for(marker.exists), "the run never wrote its first checkpoint"
        tenant = _fill(output_tmpfs)
        marker.unlink()
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, stderr
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert "could not write the result file" in errors[0] and "No space left" in errors[0]
    assert "waiting up to 1 s for room" in stderr
    assert sorted(os.listdir(output_tmpfs)) == ["r.npz.ckpt.npz", "tenant"]
    checkpoint = load_checkpoint(output_tmpfs / "r.npz.ckpt.npz")
    assert checkpoint is not None and checkpoint.folded[0][0] == 0
    tenant.unlink()
    _resume_exactly(args, out, 256)


# -- the spill tier full or unwritable mid-run --------------------------------------------


TRAJECTORIES = 640


@pytest.fixture
def spill_tmpfs():
    with mounted_tmpfs("size=3m") as mnt:
        yield mnt


# 4 qubits, a snapshot after every instruction, stored dense (a factored snapshot stores
# repeated states once and may shrink; each trajectory's ρ does not): 32 trajectories'
# ρ are 128 KiB a snapshot, eleven snapshots a batch
WIDE = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[4];
h q[0];
cx q[0],q[1];
cx q[1],q[2];
ry(0.3) q[3];
cx q[2],q[3];
rz(0.7) q[3];
cx q[3],q[0];
h q[1];
cx q[1],q[2];
sx q[0];
"""


def _start_spilling(tmp_path, arena_root, spill_root: Path, put_timeout: float):
    """A run whose 128 KiB snapshots overflow a 1 MiB arena into ``spill_root``; held
    after its first checkpoint (``marker``). Its simulating thread goes on putting while
    it is held, until both tiers are full: enough batches are left for after that."""
    qasm = tmp_path / "wide.qasm"
    qasm.write_text(WIDE)
    out, marker = tmp_path / "r.npz", tmp_path / "hold"
    args = [
        "run", qasm, "-k", TRAJECTORIES, "--seed", 3, "--store", "dense", "--batch", 32,
        "--snapshots", "every:1",
        "--checkpoint-interval", 0, "-o", out, "--put-timeout", put_timeout,
        "--arena", arena_root, "--spill", spill_root / "spill", "--quota", "1MiB",
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "noisefs", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=faults.environment(f"checkpoint.written@1={marker}"),
    )
    assert _wait_for(marker.exists), "the run never wrote its first checkpoint"
    return args, out, marker, proc


@pytest.mark.slow
def test_spill_full_mid_run_waits_then_completes_exactly(tmp_path, arena_root, spill_tmpfs):
    """Another program fills the spill filesystem mid-run and leaves a second later: the
    run's spilling puts wait (backpressure) and the result is exact."""
    args, out, marker, proc = _start_spilling(tmp_path, arena_root, spill_tmpfs, 600)
    try:
        tenant = _fill(spill_tmpfs)
        threading.Timer(1.0, tenant.unlink).start()
        marker.unlink()
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    _assert_exact(out, TRAJECTORIES)
    with Arena.open_existing(arena_root) as arena:
        assert arena.stats()["spilled_total_files"] > 0


@pytest.mark.slow
def test_spill_made_read_only_mid_run_is_one_error_line_and_resume_is_exact(
    tmp_path, arena_root, spill_tmpfs
):
    """The spill filesystem is remounted read-only mid-run: puts wait up to --put-timeout,
    then exit 3 with one error line that names the spill directory's refusal; no result;
    the checkpoint holds what was folded; writable again, --resume is exact."""
    args, out, marker, proc = _start_spilling(tmp_path, arena_root, spill_tmpfs, 1)
    try:
        # the kernel refuses (EBUSY) while a file on it is open for writing: the held run's
        # simulating thread may be writing a spilled snapshot right now, so try until none is
        remount = ["mount", "-o", "remount,ro", str(spill_tmpfs)]
        assert _wait_for(lambda: subprocess.run(remount, capture_output=True).returncode == 0), (
            "the spill could not be remounted read-only"
        )
        marker.unlink()
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["mount", "-o", "remount,rw", str(spill_tmpfs)], check=False)
    assert proc.returncode == 3, stderr
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert "Read-only file system" in errors[0] and "spill" in errors[0], errors[0]
    # the snapshots it folded but could not release: one warning per batch, not per snapshot
    stranded = [line for line in stderr.splitlines() if "could not release" in line]
    assert len(stranded) <= TRAJECTORIES // 32, stderr
    assert not out.exists()
    checkpoint = load_checkpoint(Path(f"{out}.ckpt.npz"))
    assert checkpoint is not None and checkpoint.folded[0][0] == 0
    # what the run folded but could not release stays, as its warnings say, until gc: the
    # run closed (it did not die), so its leftovers are unowned ones
    gc = subprocess.run(
        [sys.executable, "-m", "noisefs", "gc", "--unowned", "--arena", str(arena_root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gc.returncode == 0, gc.stderr
    _resume_exactly(args, out, TRAJECTORIES)
