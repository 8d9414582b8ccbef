"""`noisefs run` and `noisefs inspect` as a user runs them: real processes, exit codes, files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from noisefs.arena import Arena
from noisefs.oracle import aer_reference, aer_reference_steps
from noisefs.result import Result
from tests import circuits
from tests.conftest import mounted_tmpfs


def noisefs_cli(*args, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "noisefs", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


@pytest.fixture
def arena_args(arena_root, tmp_path):
    return ["--arena", arena_root, "--spill", tmp_path / "spill", "--quota", "64MiB"]


def test_run_writes_result_and_json_summary(tmp_path, arena_args):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    proc = noisefs_cli("run", path, "--trajectories", 32, "--seed", 5, "--json", *arena_args)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    out = tmp_path / "ghz.noisefs.npz"
    assert summary["output"] == str(out) and out.exists()
    assert summary["trajectories"] == 32 and summary["seed"] == 5
    result = Result.load(out)
    assert np.max(np.abs(result.rho[-1] - aer_reference(result.meta))) <= 1e-8
    assert proc.stderr == ""


def test_inspect_table_json_and_plot(tmp_path, arena_args):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    out = tmp_path / "r.npz"
    assert (
        noisefs_cli(
            "run", path, "-k", 16, "--seed", 1, "-o", out, "--quiet", *arena_args
        ).returncode
        == 0
    )
    table = noisefs_cli("inspect", out)
    assert table.returncode == 0 and "purity" in table.stdout and "16" in table.stdout
    info = json.loads(noisefs_cli("inspect", out, "--json").stdout)
    # GHZ4: a barrier mid-way, and one just before the (removed) final measurements,
    # which collapses with the end
    assert info["trajectories"] == 16 and len(info["snapshots"]) == 2
    png = tmp_path / "plot.png"
    assert noisefs_cli("inspect", out, "--plot", png).returncode == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = noisefs_cli("inspect", tmp_path / "ghz.qasm")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "pickle" not in bad.stderr  # never suggest loading a file unsafely
    for target in (
        tmp_path,
        tmp_path / "missing" / "p.png",
        "/sys/noisefs-test.png",
        tmp_path / "p.xyz",
    ):
        bad_plot = noisefs_cli("inspect", out, "--plot", target)
        assert bad_plot.returncode == 2, bad_plot.stderr
        assert len(bad_plot.stderr.strip().splitlines()) == 1 and "--plot" in bad_plot.stderr


BAD_INPUTS = {
    "unparsable": ("bad.qasm", 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nfoo q[0];\n', []),
    "empty": ("empty.qasm", "", []),
    "binary": ("bin.qasm", "\x00\x01\x02\xff" * 64, []),
    "too_many_qubits": (
        "big.qasm",
        'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[40];\nh q[0];\n',
        [],
    ),
    "t2_above_2t1": ("ok.qasm", circuits.GHZ4, ["--t1", "10us", "--t2", "30us"]),
    "p_above_1": ("ok.qasm", circuits.GHZ4, ["--p1", "1.5"]),
    "negative_count": ("ok.qasm", circuits.GHZ4, ["--trajectories", "-5"]),
    "bad_unit": ("ok.qasm", circuits.GHZ4, ["--t1", "50 parsecs"]),
    "bad_quota": ("ok.qasm", circuits.GHZ4, ["--quota", "lots"]),
    "bad_snapshots": ("ok.qasm", circuits.GHZ4, ["--snapshots", "sometimes"]),
    "missing_file": (None, None, []),
    "output_is_a_directory": ("ok.qasm", circuits.GHZ4, ["-o", "{tmp}"]),
    "output_unwritable": ("ok.qasm", circuits.GHZ4, ["-o", "/sys/noisefs-test.npz"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_no_output(tmp_path, arena_args, case):
    name, text, extra = BAD_INPUTS[case]
    if name is None:
        path = tmp_path / "missing.qasm"
    elif text and "\x00" in text:
        path = tmp_path / name
        path.write_bytes(text.encode("latin-1"))
    else:
        path = circuits.write(tmp_path, name, text)
    extra = [arg.replace("{tmp}", str(tmp_path)) for arg in extra]
    proc = noisefs_cli("run", path, "-k", 4, *arena_args, *extra)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("noisefs: error")
    assert not list(tmp_path.glob("*.npz"))
    if case in ("unparsable", "empty", "binary", "too_many_qubits", "missing_file"):
        assert path.name in lines[0]


def test_full_output_filesystem_exits_3_and_leaves_no_file(tmp_path, arena_args):
    path = circuits.write(tmp_path, "qft.qasm", circuits.QFT4)
    with mounted_tmpfs("size=16k") as mnt:
        out = mnt / "qft.noisefs.npz"
        proc = noisefs_cli("run", path, "-k", 8, "--snapshots", "every:1", "-o", out, *arena_args)
        assert proc.returncode == 3, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "could not write the result file" in lines[0], proc.stderr
        assert os.listdir(mnt) == []  # neither the result nor its temporary file


BAD_STORAGE = {
    "arena_parent_missing": (["--arena", "{tmp}/missing/arena"], "does not exist"),
    "arena_in_proc": (["--arena", "/proc/noisefs-test"], "cannot create it"),
    "arena_shared_dir": (["--arena", "/tmp"], "shared directory"),
    "spill_under_a_file": (["--spill", "{tmp}/ok.qasm/spill"], "cannot create it"),
    "spill_in_proc": (["--spill", "/proc/noisefs-test"], "cannot create it"),
}


@pytest.mark.parametrize("case", sorted(BAD_STORAGE))
def test_bad_storage_paths_exit_3_at_once_in_one_line(tmp_path, arena_args, case):
    path = circuits.write(tmp_path, "ok.qasm", circuits.GHZ4)
    extra, expected = BAD_STORAGE[case]
    extra = [arg.replace("{tmp}", str(tmp_path)) for arg in extra]
    proc = noisefs_cli("run", path, "-k", 4, *arena_args, *extra)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "chmod" not in lines[0], proc.stderr
    assert not (tmp_path / "missing").exists()


def test_temporary_files_of_a_killed_write_are_removed_by_the_next_run(tmp_path, arena_args):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    out = tmp_path / "r[1].npz"
    stale = [tmp_path / ".r[1].npz.k9x2.tmp", tmp_path / ".r[1].npz.ckpt.npz.k9x3.tmp"]
    for temp in stale:
        temp.write_bytes(b"half a file")
        os.utime(temp, (time.time() - 60, time.time() - 60))
    other = tmp_path / ".unrelated.npz.k9x4.tmp"
    other.write_bytes(b"not ours")
    assert noisefs_cli("run", path, "-k", 8, "-o", out, "-q", *arena_args).returncode == 0
    assert not any(temp.exists() for temp in stale) and other.exists() and out.exists()


def test_resume_of_a_complete_output_is_refused(tmp_path, arena_args):
    path = circuits.write(tmp_path, "ghz.qasm", circuits.GHZ4)
    out = tmp_path / "done.npz"
    assert noisefs_cli("run", path, "-k", 8, "-o", out, "-q", *arena_args).returncode == 0
    before = out.read_bytes()
    again = noisefs_cli("run", path, "-k", 8, "-o", out, "--resume", *arena_args)
    assert again.returncode == 2 and "already complete" in again.stderr
    assert out.read_bytes() == before


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _mtime(path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:  # between a checkpoint's unlink and rename
        return None


def _start_long_run(tmp_path, arena_args, out):
    path = circuits.write(tmp_path, "qft.qasm", circuits.QFT4)
    args = [
        "run",
        path,
        "-k",
        3000,
        "--seed",
        77,
        "--batch",
        16,
        "-o",
        out,
        "--quiet",
        "--checkpoint-interval",
        "0.2",
        "--snapshots",  # many snapshot steps: an interrupt often lands between two folds
        "every:2",
    ]
    return path, args, subprocess.Popen(
        [sys.executable, "-m", "noisefs", *map(str, args + arena_args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_interrupted_run_resumes_exactly(tmp_path, arena_args, arena_root, how):
    out = tmp_path / "qft.noisefs.npz"
    checkpoint = tmp_path / "qft.noisefs.npz.ckpt.npz"
    path, args, proc = _start_long_run(tmp_path, arena_args, out)
    try:
        assert _wait_for(checkpoint.exists), "no checkpoint appeared"
        first = _mtime(checkpoint)  # interrupt after one more: the run is well under way
        assert _wait_for(lambda: _mtime(checkpoint) not in (None, first)), "no 2nd checkpoint"
        proc.send_signal(signal.SIGKILL if how == "SIGKILL" else signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if how == "SIGINT":
        assert proc.returncode == 130, stderr
        assert "Traceback" not in stderr
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not out.exists(), "a failed run must not leave a result file"
    assert checkpoint.exists()
    resumed = noisefs_cli(*args, "--resume", *arena_args, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    result = Result.load(out)
    assert result.trajectories == 3000
    assert np.max(np.abs(result.rho[-1] - aer_reference(result.meta))) <= 1e-8
    # every step, not just the last: a batch folded into some steps only before the
    # interrupt would be counted twice there
    every_step = aer_reference_steps(result.meta, result.steps)
    assert np.max(np.abs(result.rho - every_step)) <= 1e-8
    assert not checkpoint.exists()
    assert os.path.exists(out)
    with Arena.open_existing(arena_root) as arena:  # nothing of either run stays behind
        assert arena.keys() == [] and arena.stats()["unowned_snapshots"] == 0


def _worker_pids(parent: int) -> list[int]:
    """Pool workers (spawned Python processes) among ``parent``'s children."""
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout
    pids = []
    for pid in map(int, out.split()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline:
            pids.append(pid)
    return pids


@pytest.mark.slow
def test_a_killed_worker_ends_the_run_in_one_line_and_resume_is_exact(tmp_path, arena_args):
    path, args, proc = _start_long_run(tmp_path, arena_args, tmp_path / "w.npz")
    proc.kill()  # the default long run has no workers: start one that has
    proc.communicate()
    args = [*args, "--workers", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "noisefs", *map(str, args + arena_args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert _wait_for(lambda: len(_worker_pids(proc.pid)) == 2), "no workers appeared"
        assert _wait_for((tmp_path / "w.npz.ckpt.npz").exists), "no checkpoint appeared"
        os.kill(_worker_pids(proc.pid)[0], signal.SIGKILL)  # as the OOM killer would
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode not in (0, 130) and "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "worker process died" in lines[0] and "--resume" in lines[0]
    resumed = noisefs_cli(*args, "--resume", *arena_args, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    result = Result.load(tmp_path / "w.npz")
    assert result.trajectories == 3000
    assert np.max(np.abs(result.rho - aer_reference_steps(result.meta, result.steps))) <= 1e-8


@pytest.mark.slow
def test_workers_do_not_outlive_a_killed_run(tmp_path, arena_args, arena_root):
    _, args, proc = _start_long_run(tmp_path, arena_args, tmp_path / "o.npz")
    proc.kill()
    proc.communicate()
    proc = subprocess.Popen(  # no pipes: orphaned workers would hold them open
        [sys.executable, "-m", "noisefs", *map(str, [*args, "--workers", "2"] + arena_args)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert _wait_for(lambda: len(_worker_pids(proc.pid)) == 2), "no workers appeared"
        workers = _worker_pids(proc.pid)
        assert _wait_for((tmp_path / "o.npz.ckpt.npz").exists), "no checkpoint appeared"
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in workers), timeout=20)
    assert noisefs_cli("gc", "--arena", arena_root).returncode == 0
    with Arena.open_existing(arena_root) as arena:
        assert arena.live_owners() == [] and arena.keys() == []


@pytest.mark.slow
def test_gc_after_a_killed_workers_run_leaves_no_snapshot_file(tmp_path, arena_args, arena_root):
    """The run's shared free list (released snapshots kept for reuse) serves live writers
    only: once gc has reclaimed the dead run, none of its files stays in data/."""
    _, args, proc = _start_long_run(tmp_path, arena_args, tmp_path / "g.npz")
    proc.kill()
    proc.communicate()
    proc = subprocess.Popen(
        [sys.executable, "-m", "noisefs", *map(str, [*args, "--workers", "2"] + arena_args)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert _wait_for(lambda: len(_worker_pids(proc.pid)) == 2), "no workers appeared"
        workers = _worker_pids(proc.pid)
        assert _wait_for((tmp_path / "g.npz.ckpt.npz").exists), "no checkpoint appeared"
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in workers), timeout=20)
    gc = noisefs_cli("gc", "--arena", arena_root)
    assert gc.returncode == 0, gc.stderr
    assert os.listdir(os.path.join(arena_root, "data")) == []
    with Arena.open_existing(arena_root) as arena:
        stats = arena.stats()
    assert (stats["data_files"], stats["free_files"]) == (0, 0)
