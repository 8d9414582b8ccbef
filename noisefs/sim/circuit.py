"""Circuits in: the names the rest of noisefs imports, from the modules that now hold them.

* :mod:`noisefs.sim.qasm`: reading, decoding, OpenQASM 2/3 parsing, error positions
  (:func:`load_circuit`, :func:`load_file`, :func:`load_text`).
* :mod:`noisefs.sim.measurements`: final-measurement stripping (:func:`strip_final_measurements`).
* :mod:`noisefs.sim.translate`: the lean level-0 translation to ``rz, sx, x, cx``, layer order,
  Aer's order around control flow (:func:`translate`, ``BASIS_GATES``).
* :mod:`noisefs.sim.prepare`: a path, OpenQASM text or a ``QuantumCircuit`` to a
  :class:`PreparedCircuit` (:func:`prepare`).
* :mod:`noisefs.sim.snapshots`: snapshot points, saves, the executed circuit as OpenQASM
  (:func:`snapshot_points`, :func:`insert_saves`, :func:`executed_qasm`).
"""

from __future__ import annotations

from noisefs.sim.measurements import strip_final_measurements
from noisefs.sim.prepare import CircuitSource, PreparedCircuit, circuit_sha256, prepare
from noisefs.sim.qasm import load_circuit, load_file, load_text
from noisefs.sim.snapshots import SNAPSHOT_MODES, executed_qasm, insert_saves, snapshot_points
from noisefs.sim.translate import ALLOWED_NON_GATES, BASIS_GATES, translate

__all__ = [
    "ALLOWED_NON_GATES",
    "BASIS_GATES",
    "SNAPSHOT_MODES",
    "CircuitSource",
    "PreparedCircuit",
    "circuit_sha256",
    "executed_qasm",
    "insert_saves",
    "load_circuit",
    "load_file",
    "load_text",
    "prepare",
    "snapshot_points",
    "strip_final_measurements",
    "translate",
]
