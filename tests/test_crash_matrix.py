"""The crash matrix (issue 18): `noisefs run` signalled at every phase of its life.

A case is (hold point × signal × configuration). The run is started with the point switched
on (``noisefs.faults.HOLD_POINTS``: the first process of the run that gets there writes its
pid to a marker file and waits); the test waits for the marker (with a deadline), signals,
and lets a survivor go on. SIGKILL goes to the whole process group (workers too, as the OOM
killer or a crashing machine would), SIGINT to the group (a terminal's Ctrl-C), SIGTERM to
the runner alone (`kill PID`), and with ``--workers 2`` also SIGTERM to the group (systemd's
stop). After each case:

- a result file exists only when it is complete and exact (the seed oracle, every step);
- the exit code is what the contract says for that moment (0 once the last batch is folded,
  130 before, -9 for SIGKILL), and no traceback;
- after `noisefs gc`, no snapshot data of the dead run in the arena or the spill directory;
- `--resume` (in the configuration ``twice``: itself killed at the same point, then resumed
  again) ends with the complete result, equal to the seed oracle to 1e-8 at every step, no
  checkpoint left, and nothing in the arena.

The same file kills a process inside ``noisefs.managed`` and the daemon while a writer
streams files. CI runs a deterministic sample (every ``STRIDE``-th case and the pinned
ones, a third of the managed cases, 3 daemon kills); the whole matrix runs with
``NOISEFS_CRASH_FULL=1 pytest -q tests/test_crash_matrix.py`` (``NOISEFS_CRASH_LOG=FILE``
appends one JSON line per case: what each exit was).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from noisefs import faults
from noisefs.arena import Arena
from noisefs.result import Result
from tests import circuits

K, SEED, BATCH = 96, 7, 16  # six batches with --batch
SNAPSHOTS = "every:6"
STEPS = 9  # snapshot steps of QFT4 at every:6 (a put per step and batch)
FULL = os.environ.get("NOISEFS_CRASH_FULL") == "1"
STRIDE = 23  # CI: every 23rd case (coprime with the signals and the points: all are met)

# configuration: (extra run options, batch ordinal the batch points fire at, kill twice)
CONFIGS = {
    "factored": (["--batch", BATCH], 3, False),
    "dense": (["--batch", BATCH, "--store", "dense"], 3, False),
    "auto": ([], 2, False),  # cost-sized: 32, then 64
    "spill": (["--batch", BATCH, "--quota", "700KiB"], 3, False),  # ~half the puts spill
    "workers2": (["--batch", BATCH, "--workers", 2], 3, False),
    "twice": (["--batch", BATCH], 3, True),
}
SIGNALS = ("SIGKILL", "SIGTERM", "SIGINT")
POINTS = tuple(p for p in faults.HOLD_POINTS if p != "worker.starting")
AFTER_THE_LOOP = {"run.shutting-down", "result.writing", "result.written"}


@dataclass(frozen=True)
class Case:
    config: str
    point: str
    signal: str

    @property
    def id(self) -> str:
        return f"{self.config}-{self.point}-{self.signal}"


MATRIX = [Case(c, p, s) for c in CONFIGS for p in POINTS for s in SIGNALS]
# systemd's stop (KillMode=control-group): SIGTERM to the runner and its workers at once
MATRIX += [Case("workers2", p, "SIGTERM-group") for p in POINTS]
# a worker process still starting (importing Qiskit): with workers only
MATRIX += [Case("workers2", "worker.starting", s) for s in (*SIGNALS, "SIGTERM-group")]
# pinned in CI besides the stride: the case that found a defect, and a group SIGTERM
PINNED = {
    "factored-run.started-SIGINT",
    "workers2-worker.starting-SIGINT",
    "workers2-batch.folded-SIGTERM-group",
}
SAMPLE = MATRIX if FULL else [c for i, c in enumerate(MATRIX) if i % STRIDE == 0 or c.id in PINNED]


def occurrence(point: str, batch: int) -> int:
    """Which time a process reaches ``point`` when the case fires it: the ``batch``-th batch
    (per-put points: its 2nd snapshot step), else the first time (checkpoints too: how
    many a run writes depends on how its batches finish together)."""
    if point in ("batch.reserved", "batch.written"):
        return (batch - 1) * STEPS + 2
    if point.startswith("batch."):
        return batch
    return 1


def allowed_exits(point: str, signame: str) -> set[int]:
    if signame == "SIGKILL":
        return {-signal.SIGKILL}
    signame = signame.removesuffix("-group")
    if point in AFTER_THE_LOOP:
        return {0}  # the work is done: the result is written, the signal forgiven
    if point == "run.started" and signame == "SIGTERM":  # before its handler is set
        return {-signal.SIGTERM}
    return {130}


_REFERENCE: dict[str, np.ndarray] = {}


def assert_exact(out: Path) -> None:
    from noisefs.oracle import aer_reference_steps

    result = Result.load(out)
    assert result.trajectories == K
    key = json.dumps([result.meta["executed_qasm"], result.meta["seed"], result.steps.tolist()])
    if key not in _REFERENCE:
        _REFERENCE[key] = aer_reference_steps(result.meta, result.steps)
    assert np.max(np.abs(result.rho - _REFERENCE[key])) <= 1e-8


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still running (zombies are dead)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _wait(predicate, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _snapshot_files(arena_root: Path, spill: Path) -> list[str]:
    found = [str(p) for p in (arena_root / "data").rglob("*") if not p.is_dir()]
    if spill.exists():
        found += [str(p) for p in spill.rglob("*") if not p.is_dir()]
    return found


class Runner:
    def __init__(self, tmp_path: Path, arena_root: Path, options: list) -> None:
        self.tmp = tmp_path
        self.arena_root = arena_root
        self.spill = tmp_path / "spill"
        self.out = tmp_path / "qft.npz"
        self.checkpoint = tmp_path / "qft.npz.ckpt.npz"
        circuit = circuits.write(tmp_path, "qft.qasm", circuits.QFT4)
        self.args = [
            "run",
            circuit,
            "-k",
            K,
            "--seed",
            SEED,
            "--snapshots",
            SNAPSHOTS,
            "-o",
            self.out,
            "--quiet",
            "--checkpoint-interval",
            0,
            "--arena",
            arena_root,
            "--spill",
            self.spill,
            "--quota",
            "64MiB",
            *options,
        ]  # fmt: skip  (a later --quota wins)
        self.runs = 0

    def signalled(self, resume: bool, hold: str, signame: str) -> dict:
        """One run held at ``hold`` (``point@n``) and sent ``signame`` there."""
        self.runs += 1
        marker = self.tmp / f"held-{self.runs}"
        env = faults.environment(f"{hold}={marker}")
        logs = [self.tmp / f"run-{self.runs}.{name}" for name in ("out", "err")]
        with open(logs[0], "w") as stdout, open(logs[1], "w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "noisefs", *map(str, self.args + ["--resume"] * resume)],
                stdout=stdout, stderr=stderr, env=env, start_new_session=True,
            )  # fmt: skip
        try:
            held = _wait(
                lambda: (marker.exists() and marker.read_text().strip()) or proc.poll() is not None,
                f"{hold} to be reached",
            )
            reached = held is not True
            if reached:
                if signame == "SIGKILL":
                    os.killpg(proc.pid, signal.SIGKILL)
                elif signame == "SIGINT":
                    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal's group
                elif signame == "SIGTERM-group":
                    os.killpg(proc.pid, signal.SIGTERM)
                else:
                    os.kill(proc.pid, signal.SIGTERM)  # `kill PID`: the runner alone
                marker.unlink()  # a survivor goes on from the point
            rc = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        _wait(lambda: not _group_alive(proc.pid), "the run's processes to end")
        return {"rc": rc, "reached": reached, "stderr": logs[1].read_text()}

    def gc(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "noisefs", "gc", "--arena", str(self.arena_root)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        if not self.arena_root.exists():  # stopped before the arena was made
            return
        assert _snapshot_files(self.arena_root, self.spill) == []
        with Arena.open_existing(self.arena_root) as arena:
            assert arena.keys() == [] and arena.live_owners() == []

    def resume(self) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != faults.ENV}
        return subprocess.run(
            [sys.executable, "-m", "noisefs", *map(str, [*self.args, "--resume"])],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip


def _check_exit(case: Case, ended: dict, first: bool, runner: Runner) -> None:
    stderr = ended["stderr"]
    assert "Traceback" not in stderr, stderr
    if not ended["reached"]:
        # only a resume may find nothing left to do at its point (all was folded)
        assert not first and ended["rc"] == 0, (ended, stderr)
    else:
        assert ended["rc"] in allowed_exits(case.point, case.signal), (ended, stderr)
    if runner.out.exists():  # a result file only when complete and exact
        assert_exact(runner.out)
        assert ended["rc"] in (0, -signal.SIGKILL), ended
    else:
        assert ended["rc"] != 0, ended


def _record(case: Case, figures: dict) -> None:
    _record_line({"case": case.id, **figures})


def _record_line(figures: dict) -> None:
    log = os.environ.get("NOISEFS_CRASH_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(json.dumps(figures) + "\n")


def test_the_matrix_is_counted(capsys):
    """The matrix's dimensions and the cases this session runs (printed with -s)."""
    assert len(MATRIX) == len(POINTS) * (len(SIGNALS) * len(CONFIGS) + 1) + len(SIGNALS) + 1
    if FULL:  # every hold point of a run's life is tried
        assert {c.point for c in SAMPLE} == set(faults.HOLD_POINTS)
    assert {c.signal for c in SAMPLE} >= set(SIGNALS)
    assert {c.config for c in SAMPLE} == set(CONFIGS)
    with capsys.disabled():
        print(
            f"\ncrash matrix: {len(POINTS)} points x {len(SIGNALS)} signals x "
            f"{len(CONFIGS)} configurations + {len(POINTS)} SIGTERM-to-the-group with "
            f"--workers 2 + 4 at worker.starting = {len(MATRIX)} cases; running {len(SAMPLE)}"
        )


@pytest.mark.slow
@pytest.mark.parametrize("case", SAMPLE, ids=lambda c: c.id)
def test_a_run_signalled_at_a_point_ends_exact(case: Case, tmp_path, arena_root):
    options, batch, twice = CONFIGS[case.config]
    runner = Runner(tmp_path, arena_root, options)
    figures: dict = {"exits": []}
    hold = f"{case.point}@{occurrence(case.point, batch)}"
    ended = runner.signalled(False, hold, case.signal)
    figures["exits"].append(ended["rc"])
    _check_exit(case, ended, True, runner)
    runner.gc()
    if twice and ended["rc"] != 0:  # kill the resume at the same point (of its own life)
        hold = f"{case.point}@{occurrence(case.point, 2 if batch > 1 else 1)}"
        ended = runner.signalled(True, hold, case.signal)
        figures["exits"].append(ended["rc"] if ended["reached"] else "unreached")
        _check_exit(case, ended, False, runner)
        runner.gc()
    if ended["rc"] != 0 or runner.checkpoint.exists():
        resumed = runner.resume()
        assert resumed.returncode == 0, resumed.stderr
        assert "Traceback" not in resumed.stderr
        figures["exits"].append(0)
    assert_exact(runner.out)
    assert not runner.checkpoint.exists()
    runner.gc()
    _record(case, figures)


# -- noisefs.managed: a process killed inside the scope ------------------------------------

MANAGED_JOB = r"""
import json, sys
import numpy as np
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, depolarizing_error
import noisefs

root, spill = sys.argv[1:]
model = NoiseModel()
model.add_all_qubit_quantum_error(depolarizing_error(0.05, 1), ["h"])
model.add_all_qubit_quantum_error(depolarizing_error(0.1, 2), ["cx"])
qc = QuantumCircuit(3)
for step in range(3):
    qc.h(range(3))
    qc.cx(0, 1)
    qc.save_statevector(label=f"s{step}", pershot=True)
sim = AerSimulator(noise_model=model)
with noisefs.managed(batch=16, root=root, quota="64MiB", spill_dir=spill, quiet=True):
    got = sim.run(qc, shots=96, seed_simulator=5).result()
plain = sim.run(qc, shots=96, seed_simulator=5).result()
def average(states):  # what managed folds per-shot states into
    psi = np.asarray(states)
    return np.einsum("si,sj->ij", psi, psi.conj()) / len(psi)


worst = max(
    float(np.max(np.abs(np.asarray(got.data()[k]) - average(plain.data()[k]))))
    for k in ("s0", "s1", "s2")
)
print(json.dumps({"batches": got.metadata["noisefs"]["batches"], "worst": worst}))
"""

MANAGED_POINTS = ("batch.reserved", "batch.written")
MANAGED_MATRIX = [(p, s) for p in MANAGED_POINTS for s in SIGNALS]
MANAGED_SAMPLE = MANAGED_MATRIX if FULL else MANAGED_MATRIX[::5]


@pytest.mark.slow
@pytest.mark.parametrize("point,signame", MANAGED_SAMPLE, ids=lambda v: str(v))
def test_a_process_killed_inside_managed_leaves_the_next_job_exact(
    point, signame, tmp_path, arena_root
):
    """A process signalled while its managed job puts a batch (3 saves a batch: the 3rd
    batch's 2nd put); the next process's job on the same arena equals plain Aer, and gc
    leaves no snapshot data."""
    marker, spill = tmp_path / "held", tmp_path / "spill"
    command = [sys.executable, "-c", MANAGED_JOB, str(arena_root), str(spill)]
    env = faults.environment(f"{point}@8={marker}")
    with open(tmp_path / "first.err", "w") as stderr:
        first = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, env=env, start_new_session=True
        )
    try:
        _wait(lambda: marker.exists() and marker.read_text().strip(), f"{point} to be reached")
        os.killpg(first.pid, getattr(signal, signame))
        marker.unlink()
        rc = first.wait(timeout=120)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert rc != 0  # it died (SIGKILL, SIGTERM) or raised KeyboardInterrupt (SIGINT)
    _wait(lambda: not _group_alive(first.pid), "the first process to end")
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    second = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert second.returncode == 0, second.stderr
    verdict = json.loads(second.stdout)
    assert verdict["batches"] == 6 and verdict["worst"] <= 1e-12
    gc = subprocess.run(
        [sys.executable, "-m", "noisefs", "gc", "--arena", str(arena_root)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert gc.returncode == 0, gc.stderr
    assert _snapshot_files(arena_root, spill) == []


# -- the daemon: killed at random points while a foreign writer streams files ----------------


def _daemon_kills(count: int, seed: int) -> list[str]:
    """``count`` fault points of the daemon's ingest, each at a random occurrence."""
    rng = np.random.default_rng(seed)
    kills = []
    for _ in range(count):
        point = ["daemon.claimed", "daemon.folded", "daemon.checkpointed"][rng.integers(3)]
        kills.append(f"{point}@{1 + rng.integers(3 if point == 'daemon.checkpointed' else 25)}")
    return kills


DAEMON_KILLS = _daemon_kills(12 if FULL else 3, seed=18)


@pytest.mark.slow
def test_the_daemon_killed_at_random_points_while_a_writer_streams_folds_each_file_once(
    tmp_path, arena_root
):
    import threading

    from tests.test_daemon_support import (
        Daemons,
        leftovers,
        log_text,
        random_psi,
        result,
        save_renamed,
        wait_for,
        wait_running,
        write_config,
    )

    rng = np.random.default_rng(4)
    dim, steps = 8, 2
    inbox = arena_root / "inbox" / "stream"
    arena_root.mkdir(mode=0o700)
    for step in range(steps):
        (inbox / str(step)).mkdir(parents=True)
    sums = np.zeros((steps, dim, dim), complex)
    written = [0]
    stop = threading.Event()

    def writer() -> None:  # both protocols, interleaved, until told to stop: every kill
        while not stop.wait(0.02):  # point is reached while files are streaming in
            i = written[0]
            for step in range(steps):
                psi = random_psi(rng, dim)
                sums[step] += np.outer(psi, psi.conj())
                path = inbox / str(step) / f"t{i}.npy"
                if i % 2:
                    save_renamed(path, psi)
                else:
                    np.save(path, psi)  # plain: the name is final while writing
            written[0] = i + 1

    cfg = write_config(tmp_path / "d.toml", arena_root, tmp_path / "results")
    daemons = Daemons(tmp_path)
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for round_, point in enumerate(DAEMON_KILLS):
            proc = daemons.start("--config", str(cfg), env={faults.ENV: point}, log=f"{round_}.log")
            assert proc.wait(120) == -signal.SIGKILL, (point, log_text(proc))
        final = daemons.start("--config", str(cfg), log="final.log")
        wait_running(arena_root, final)
        more = written[0] + 20
        wait_for(lambda: written[0] >= more, 60, "files written after the last kill", final)
        stop.set()
        thread.join()
        (inbox / "DONE").touch()
        wait_for(lambda: (tmp_path / "results" / "stream.npz").exists(), 60, "result", final)
        res = result(tmp_path / "results", "stream")
        per_step = written[0]
        assert res["counts"].tolist() == [per_step] * steps
        assert np.abs(res["rho"] - sums / per_step).max() < 1e-10
        wait_for(lambda: not leftovers(arena_root), 10, "files freed", final)
        final.send_signal(signal.SIGTERM)
        assert final.wait(10) == 0
    finally:
        stop.set()
        thread.join()
        daemons.kill_all()
    print(f"\ndaemon: {len(DAEMON_KILLS)} kills at {DAEMON_KILLS}, {steps * per_step} files")
    _record_line({"daemon_kills": DAEMON_KILLS, "files": steps * per_step})
