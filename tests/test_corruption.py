"""Corruption (issue 18): flipped bytes and truncation of arena snapshots while a run uses
them, of checkpoints, of the daemon's durable state and of result files. Each is detected;
the runner simulates a damaged batch again from its seeds (exact against the oracle), the
daemon sets a bad checkpoint aside and goes on, a bad checkpoint or result is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from noisefs import faults
from noisefs.aggregate.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from noisefs.commands.inspect import load_result
from noisefs.daemon.durable import CORRUPT
from noisefs.daemon.runs import RunAverage
from noisefs.errors import InputError, OutputError
from noisefs.oracle import aer_reference_steps
from noisefs.result import Result
from tests import circuits

MASKS = (0x01, 0x10, 0xFF)  # one low bit, one middle bit, a whole byte
# CI damages about CASES copies of each file (every k-th byte); NOISEFS_HARDENING_FULL=1
# damages every byte with every mask and cuts at every length (minutes)
FULL = os.environ.get("NOISEFS_HARDENING_FULL") == "1"
CASES = 1200


def noisefs_cli(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "noisefs", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def arena_args(arena_root, tmp_path):
    return ["--arena", arena_root, "--spill", tmp_path / "spill", "--quota", "64MiB"]


def damaged_copies(good: bytes):
    """(what, bytes) for every byte flipped with each of MASKS and every truncation (every
    ``stride``-th of them in CI, the offsets shifted per mask so that all bytes are hit)."""
    stride = 1 if FULL else max(1, 4 * len(good) // CASES)
    for mask in MASKS:
        for at in range(mask % stride, len(good), stride):
            bad = bytearray(good)
            bad[at] ^= mask
            yield f"byte {at} ^ {mask:#x}", bytes(bad)
    for length in range(0, len(good), stride):
        yield f"cut to {length} bytes", good[:length]


def record(test: str, **figures) -> None:
    """Print a sweep's figures; with NOISEFS_HARDENING_FIGURES=PATH append them there."""
    line = json.dumps({"test": test, "full": FULL, **figures})
    print(line)
    if os.environ.get("NOISEFS_HARDENING_FIGURES"):
        with open(os.environ["NOISEFS_HARDENING_FIGURES"], "a") as f:
            f.write(line + "\n")


def assert_exact(out: Path, trajectories: int) -> None:
    result = Result.load(out)
    assert result.trajectories == trajectories
    every_step = aer_reference_steps(result.meta, result.steps)
    assert np.max(np.abs(result.rho - every_step)) <= 1e-8


# -- arena snapshots --------------------------------------------------------------------


TRUNCATED_THROUGH_A_CACHED_MAP = """
import os, sys
import numpy as np
from noisefs.arena import Arena
from noisefs.errors import CorruptSnapshot
with Arena(sys.argv[1], quota="64MiB", spill_dir=sys.argv[2]) as arena:
    arena.release(arena.put(np.arange(1000.0)))  # its file joins this process's free list
    key = arena.put(np.arange(1000.0))  # ... and is recycled here
    arena.get(key)  # mapped: the map is cached
    arena.keys()  # published: info() names the file
    os.truncate(os.path.join(sys.argv[1], "data", arena.info(key)["slot"]), 4096 + 100)
    try:
        arena.get(key)
    except CorruptSnapshot as exc:
        print("corrupt:", exc)
"""


def test_a_snapshot_truncated_after_it_was_mapped_is_corrupt_not_sigbus(arena_root, tmp_path):
    """Another program truncates a snapshot file this process has mapped before (a
    recycled slot): get must raise CorruptSnapshot, not read through the cached map past
    the new end of the file (SIGBUS, the process dies). Before the fix: -SIGBUS."""
    proc = subprocess.run(
        [sys.executable, "-c", TRUNCATED_THROUGH_A_CACHED_MAP, arena_root, tmp_path / "spill"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert "corrupt:" in proc.stdout and "truncated" in proc.stdout


RUN_CASES = {
    "flip": ("flip", []),
    "truncate": ("truncate", []),
    "flip-dense": ("flip", ["--store", "dense"]),
    "truncate-workers": ("truncate", ["--workers", 2]),
}


@pytest.mark.parametrize(
    "case",
    [
        "flip",
        "truncate",
        pytest.param("flip-dense", marks=pytest.mark.slow),
        pytest.param("truncate-workers", marks=pytest.mark.slow),
    ],
)
def test_a_snapshot_damaged_while_the_run_uses_it_is_simulated_again(
    tmp_path, arena_args, arena_root, case
):
    """The fault point damages the first snapshot of the 3rd batch the run folds (a byte
    of its data flipped, or its file cut to half): the run detects it, simulates that
    batch again from its seeds, and the result equals the oracle at every step."""
    how, extra = RUN_CASES[case]
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    out = tmp_path / "d.npz"
    env = faults.environment(f"run.snapshot-damaged@3={how}")
    proc = noisefs_cli(
        "run", path, "-k", 64, "--seed", 3, "--batch", 8, "--snapshots", "every:1",
        "-o", out, "-q", *extra, *arena_args, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "does not verify" in proc.stderr and "simulating them again" in proc.stderr
    assert_exact(out, 64)
    from noisefs.arena import Arena

    with Arena.open_existing(arena_root) as arena:
        assert arena.keys() == [] and arena.check() == []


# -- the runner's checkpoints -----------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "c.ckpt.npz"
    rng = np.random.default_rng(4)
    save_checkpoint(
        path,
        Checkpoint(
            fingerprint={"trajectories": 64, "circuit": "abc"},
            seed=3,
            folded=np.array([[0, 32]]),
            state={"z_sum": rng.normal(size=(2, 3)), "rho_sum_0": rng.normal(size=(4, 4))},
            elapsed_s=1.5,
        ),
    )
    return path.read_bytes()


def test_every_damaged_checkpoint_is_refused_or_harmless(tmp_path, checkpoint_bytes):
    """Every byte flipped (three masks) and every truncation of a checkpoint: either
    OutputError in one line naming the file, or (zip metadata nobody reads: times, the
    made-by version) exactly the checkpoint that was written. Before the fix: tracebacks
    (BadZipFile, NotImplementedError, ...) through --resume."""
    path = tmp_path / "c.ckpt.npz"
    path.write_bytes(checkpoint_bytes)
    good = load_checkpoint(path)
    refused = harmless = 0
    for what, data in damaged_copies(checkpoint_bytes):
        path.write_bytes(data)
        try:
            loaded = load_checkpoint(path)
        except OutputError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc), what
            refused += 1
            continue
        assert loaded is not None, what
        assert loaded.fingerprint == good.fingerprint and loaded.seed == good.seed, what
        assert np.array_equal(loaded.folded, good.folded), what
        assert loaded.state.keys() == good.state.keys(), what
        for name, value in good.state.items():
            assert np.array_equal(loaded.state[name], value), what
        harmless += 1
    record("checkpoint corruption", copies=refused + harmless, refused=refused, harmless=harmless)
    assert refused > harmless


def _interrupted_run(tmp_path, arena_args):
    """A run interrupted after 32 of 64 trajectories (a checkpoint holding them)."""
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    out = tmp_path / "r.npz"
    args = ["run", path, "-k", 64, "--seed", 3, "--batch", 8, "--checkpoint-interval", 0]
    args += ["--snapshots", "every:2", "-o", out, "-q", *arena_args]
    env = faults.environment("arena.publish-interrupted@5")
    proc = noisefs_cli(*args, env=env)
    assert proc.returncode == 130, proc.stderr
    checkpoint = tmp_path / "r.npz.ckpt.npz"
    assert checkpoint.exists() and not out.exists()
    return args, out, checkpoint


@pytest.mark.parametrize("how", ["flip", pytest.param("truncate", marks=pytest.mark.slow)])
def test_resume_from_a_damaged_checkpoint_is_one_line_and_exit_3(tmp_path, arena_args, how):
    """--resume from a damaged checkpoint: exit 3, one line naming it, no result, the
    checkpoint left as it was (the folded work is not thrown away: put back whole, the
    resume is exact)."""
    args, out, checkpoint = _interrupted_run(tmp_path, arena_args)
    good = checkpoint.read_bytes()
    bad = bytearray(good)
    if how == "flip":
        bad[len(bad) // 2] ^= 0x10
    else:
        del bad[len(bad) // 2 :]
    checkpoint.write_bytes(bytes(bad))
    proc = noisefs_cli(*args, "--resume")
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "checkpoint" in lines[0] and "corrupt" in lines[0] and str(checkpoint) in lines[0]
    assert not out.exists() and checkpoint.read_bytes() == bytes(bad)
    checkpoint.write_bytes(good)
    resumed = noisefs_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_exact(out, 64)


# -- result files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def result_file(tmp_path_factory) -> Path:
    import noisefs

    where = tmp_path_factory.mktemp("result")
    result = noisefs.run(
        circuits.GHZ4,
        trajectories=8,
        seed=2,
        output=str(where / "r.npz"),
        arena=str(where / "arena"),
        spill=str(where / "spill"),
        quota="64MiB",
    )
    return Path(result.path)


def test_every_damaged_result_file_is_refused_by_inspect_or_harmless(tmp_path, result_file):
    """Every byte flipped (three masks) and every truncation of a result file: inspect's
    loader raises InputError (one line, exit 2) or reads exactly what was written. Before
    the fix: tracebacks (NotImplementedError, TokenError, EOFError, RuntimeError) and a
    flipped name length in the central directory that silently dropped rho."""
    good_bytes = result_file.read_bytes()
    good = Result.load(result_file)
    path = tmp_path / "bad.npz"
    refused = harmless = 0
    for what, data in damaged_copies(good_bytes):
        path.write_bytes(data)
        try:
            loaded = load_result(str(path))
        except InputError as exc:
            assert "\n" not in str(exc), what
            refused += 1
            continue
        assert loaded.meta == good.meta and loaded.trajectories == good.trajectories, what
        for name in ("rho", "probabilities", "steps", "z_mean", "z_stderr"):
            assert np.array_equal(getattr(loaded, name), getattr(good, name)), (what, name)
        harmless += 1
    record("result corruption", copies=refused + harmless, refused=refused, harmless=harmless)
    assert refused > harmless


def test_inspect_of_a_damaged_result_is_one_line_exit_2(tmp_path, result_file):
    data = bytearray(result_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    proc = noisefs_cli("inspect", bad, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and str(bad) in proc.stderr


# -- the daemon's durable state ------------------------------------------------------------


def test_every_damaged_daemon_checkpoint_is_set_aside_or_harmless(tmp_path):
    """What the daemon's recovery catches (CORRUPT, then it sets the file aside and goes
    on) covers every byte flipped and every truncation of its checkpoint. Before the fix:
    NotImplementedError ("compression method", "zip file version") and RuntimeError
    ("encrypted") escaped and the daemon exited 1 at start-up, a crash loop under
    Restart=on-failure."""
    path = tmp_path / "r.ckpt.npz"
    run = RunAverage("r", path, tmp_path)
    rng = np.random.default_rng(1)
    for i in range(3):
        psi = rng.normal(size=8) + 1j * rng.normal(size=8)
        run.fold(0, psi / np.linalg.norm(psi), f"n{i}", 128)
    run.save()
    good_bytes = path.read_bytes()
    good = RunAverage.load(path, tmp_path)
    caught = harmless = 0
    for what, data in damaged_copies(good_bytes):
        path.write_bytes(data)
        try:
            loaded = RunAverage.load(path, tmp_path)
        except CORRUPT:
            caught += 1
            continue
        assert loaded.pending == good.pending and loaded.ingested == good.ingested, what
        for step, sums in good.steps.items():
            mine, theirs = loaded.steps[step].state("x"), sums.state("x")
            assert mine.keys() == theirs.keys(), what
            assert all(np.array_equal(mine[k], theirs[k]) for k in mine), what
        harmless += 1
    record(
        "daemon checkpoint corruption",
        copies=caught + harmless,
        set_aside=caught,
        harmless=harmless,
    )
    assert caught > harmless
