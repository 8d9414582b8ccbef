"""Progress: which bar each environment gets (widget in a kernel with ipywidgets, the text bar
in a kernel without, the terminal bar on a terminal, nothing otherwise or when quiet), and the
bars of noisefs.run and of a managed job of several batches on a terminal."""

from __future__ import annotations

import sys

import pytest
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, depolarizing_error

import noisefs
from noisefs.progress import Mode, Progress, choose_mode, detect_mode, in_kernel, track_batches


@pytest.mark.parametrize(
    ("enabled", "kernel", "widgets", "terminal", "mode"),
    [
        (None, True, True, False, Mode.WIDGET),  # a notebook with ipywidgets
        (None, True, False, False, Mode.TEXT),  # a notebook without: the plain text bar
        (None, False, False, True, Mode.TERMINAL),
        (None, False, True, False, Mode.OFF),  # a pipe, a log file, a test
        (True, False, False, False, Mode.TERMINAL),  # forced: on stderr all the same
        (True, True, True, True, Mode.WIDGET),
        (False, True, True, True, Mode.OFF),  # quiet wins everywhere
        (False, False, False, True, Mode.OFF),
    ],
)
def test_choose_mode(enabled, kernel, widgets, terminal, mode):
    assert choose_mode(enabled, kernel=kernel, widgets=widgets, terminal=terminal) is mode


def test_this_process_is_no_kernel_and_its_captured_stderr_no_terminal(capsys):
    assert not in_kernel()
    assert detect_mode() is Mode.OFF
    assert detect_mode(True) is Mode.TERMINAL


def test_an_off_bar_prints_nothing_and_a_text_bar_reaches_its_total(capsys):
    off = Progress(10, enabled=False)
    off.advance(4)
    off.close()
    assert off.mode is Mode.OFF and off.count == 0
    assert capsys.readouterr().err == ""
    with Progress(10, mode=Mode.TEXT) as bar:
        bar.advance(4, {"bytes_used": 2048, "quota_bytes": 2**20, "spilled_bytes": 0})
        bar.advance(6)
        assert bar.count == 10
    err = capsys.readouterr().err
    final = err.split("\r")[-1]  # the text bar stays, at its final state
    assert "10/10" in final and "arena 2.0 KiB/1.0 MiB spill 0 B" in final


def test_track_batches_yields_every_batch_and_is_silent_when_quiet_or_short(capsys):
    assert list(track_batches(range(5), 5, quiet=True)) == [0, 1, 2, 3, 4]
    assert list(track_batches(["only"], 1)) == ["only"]
    assert capsys.readouterr().err == ""


def test_a_widget_that_cannot_be_built_falls_back_to_the_text_bar(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm.notebook", None)  # its import raises ImportError
    with Progress(3, mode=Mode.WIDGET) as bar:
        bar.advance(3)
        assert bar.mode is Mode.TEXT
    assert "3/3" in capsys.readouterr().err.split("\r")[-1]


def test_a_managed_bar_appears_after_the_first_batch_and_not_for_a_job_given_up_there(
    monkeypatch, capsys
):
    _as_terminal(monkeypatch)
    batches = track_batches(range(3), 3)
    assert next(batches) == 0
    assert capsys.readouterr().err == ""  # batch 0 running: whether it stays batched is open
    assert list(batches) == [1, 2]
    assert "noisefs.managed:  33%" in capsys.readouterr().err  # shown from 1/3 on
    for _batch in track_batches(range(3), 3):
        break  # passed through after its first batch (Aer samples it): no bar at all
    assert capsys.readouterr().err == ""


def _as_terminal(monkeypatch) -> None:
    """The captured stderr reported as a terminal, as a shell's would be (called in the test
    itself: during fixture set-up sys.stderr is another capture's stream)."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)


def _bell() -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    qc.save_density_matrix(label="rho")
    return qc


def test_a_managed_job_of_several_batches_shows_them_on_a_terminal(
    monkeypatch, capsys, arena_root, tmp_path
):
    _as_terminal(monkeypatch)
    noise = NoiseModel()
    noise.add_all_qubit_quantum_error(depolarizing_error(0.05, 2), ["cx"])  # per-shot noise
    sim = AerSimulator(method="statevector", noise_model=noise)
    with noisefs.managed(batch=8, root=arena_root, spill_dir=tmp_path / "spill"):
        result = sim.run(_bell(), shots=24, seed_simulator=3).result()
    assert result.metadata["noisefs"]["batches"] == 3
    err = capsys.readouterr().err
    assert "noisefs.managed" in err and "/3 [" in err and "batch" in err
    with noisefs.managed(batch=8, root=arena_root, spill_dir=tmp_path / "spill", quiet=True):
        sim.run(_bell(), shots=24, seed_simulator=3).result()
    with noisefs.managed(batch=64, root=arena_root, spill_dir=tmp_path / "spill"):
        sim.run(_bell(), shots=24, seed_simulator=3).result()  # one batch: nothing to show
    assert capsys.readouterr().err == ""


def test_run_shows_its_bar_on_a_terminal_unless_quiet(monkeypatch, capsys, run_kwargs):
    _as_terminal(monkeypatch)
    text = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[0];\ncx q[0],q[1];\n'
    noisefs.run(text, trajectories=32, seed=1, **run_kwargs)
    err = capsys.readouterr().err
    assert "/32 [" in err and "traj" in err
    noisefs.run(text, trajectories=32, seed=1, quiet=True, **run_kwargs)
    noisefs.run(text, trajectories=32, seed=1, progress=False, **run_kwargs)
    assert capsys.readouterr().err == ""
