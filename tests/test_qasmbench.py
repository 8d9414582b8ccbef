"""Every QASMBench circuit in shared/ against the contract's oracle; the broken one exits 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import noisefs
from noisefs.oracle import aer_reference
from tests.conftest import QASMBENCH

BROKEN = {"vqe_uccsd_n4.qasm": "vqe_uccsd_n4.qasm:225"}
CIRCUITS = sorted(p.name for p in QASMBENCH.glob("*.qasm")) if QASMBENCH.is_dir() else []
pytestmark = pytest.mark.skipif(not CIRCUITS, reason=f"no QASMBench corpus at {QASMBENCH}")


@pytest.mark.parametrize("name", [n for n in CIRCUITS if n not in BROKEN])
def test_matches_aer_to_1e_8(name, run_kwargs):
    result = noisefs.run(
        QASMBENCH / name, trajectories=12, seed=2024, batch=5, snapshots="final", **run_kwargs
    )
    assert result.trajectories == 12
    reference = aer_reference(result.meta)
    assert np.max(np.abs(result.rho[-1] - reference)) <= 1e-8


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_upstream_circuit_exits_2_naming_file_and_line(name, tmp_path, arena_root):
    proc = subprocess.run(
        [sys.executable, "-m", "noisefs", "run", str(QASMBENCH / name), "-o", str(tmp_path / "out.npz"),
         "--arena", str(arena_root)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert BROKEN[name] in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.npz").exists()


DYNAMIC = [
    n
    for n in CIRCUITS
    if n in {"inverseqft_n4.qasm", "ipea_n2.qasm", "qec_sm_n5.qasm", "shor_n5.qasm"}
]


@pytest.mark.parametrize("snapshots", ["every:1", "layers"])
@pytest.mark.parametrize("name", DYNAMIC)
def test_intermediate_snapshots_leave_dynamic_circuits_exact(name, snapshots, run_kwargs):
    """Aer re-sorts circuits with control flow; saves written in any other order would
    change the trajectories (seen as a 1/K difference in the final state)."""
    result = noisefs.run(
        QASMBENCH / name, trajectories=50, seed=1, snapshots=snapshots, **run_kwargs
    )
    assert len(result.steps) > 2
    reference = aer_reference(result.meta)
    assert np.max(np.abs(result.rho[-1] - reference)) <= 1e-8
