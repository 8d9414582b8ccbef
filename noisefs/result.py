"""The result of a run: the arrays and metadata of the ``.npz`` file (docs/contract.md
"The result file")."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from noisefs.atomic import atomic_write
from noisefs.display import result_html, summary_line
from noisefs.npz import write_npz
from noisefs.plotting import close_if_inline, result_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class Result:
    """Averaged states at each snapshot step, with ⟨Z_q⟩ and its Monte Carlo standard error.

    ``rho`` is None when the run kept no density matrix (more qubits than
    ``max_dm_qubits``); with ``keep_qubits`` it is the reduced state of those qubits.
    ``observables``/``observables_stderr`` (S, M) and ``observable_names`` (M,) are None
    unless observables were asked for.

    It shows itself as one line (``repr``) and, in a notebook, as a table per snapshot
    (``_repr_html_``); :meth:`plot` draws it.
    """

    probabilities: np.ndarray | None  # None with no_probabilities
    steps: np.ndarray
    trajectories: int
    z_mean: np.ndarray
    z_stderr: np.ndarray
    meta: dict
    rho: np.ndarray | None = None
    path: Path | None = field(default=None, compare=False)
    observables: np.ndarray | None = None
    observables_stderr: np.ndarray | None = None
    observable_names: np.ndarray | None = None

    @property
    def num_qubits(self) -> int:
        """Qubits of the circuit (one ⟨Z_q⟩ column each)."""
        return int(self.z_mean.shape[1])

    def __repr__(self) -> str:
        return summary_line(self)

    def _repr_html_(self) -> str:
        """The table a notebook shows (IPython's rich display protocol)."""
        return result_html(self)

    def plot(self) -> Figure:
        """A matplotlib figure of ⟨Z_q⟩ ± stderr and purity over the snapshot steps — the
        picture of ``noisefs inspect --plot``; in a notebook it shows inline. Without
        matplotlib, :class:`noisefs.errors.MissingExtra` (an ``ImportError``) says what to
        install."""
        fig = result_figure(self)
        close_if_inline(fig)
        return fig

    def expectation(self, name: str, step: int = -1) -> tuple[float, float]:
        """(mean, standard error) of the requested observable ``name`` at snapshot ``step``."""
        names = [] if self.observable_names is None else [str(n) for n in self.observable_names]
        if name not in names:
            known = ", ".join(names) if names else "none were requested"
            raise KeyError(f"no observable {name!r} in this result (observables: {known})")
        m = names.index(name)
        return float(self.observables[step, m]), float(self.observables_stderr[step, m])

    def density_matrix(self, step: int = -1):
        """The averaged state at snapshot ``step`` as a ``qiskit.quantum_info.DensityMatrix``
        (Qiskit's qubit order), for ``state_fidelity``, ``partial_trace`` and plotting.

        With ``keep_qubits`` it is the reduced state of those qubits; without ``rho`` (more
        qubits than ``max_dm_qubits``) it raises ``ValueError``."""
        from qiskit.quantum_info import DensityMatrix  # lazy: qiskit only for this view

        if self.rho is None:
            raise ValueError(
                "this result keeps no density matrix (more qubits than max_dm_qubits); "
                "rerun with a higher max_dm_qubits or with keep_qubits"
            )
        return DensityMatrix(self.rho[step])

    def purity(self) -> np.ndarray | None:
        """Tr ρ² at each step, or None without ρ."""
        if self.rho is None:
            return None
        # ρ is Hermitian, so Tr ρ² = Σ |ρ_ij|²: one contiguous pass (the einsum of ρ with
        # its transpose reads across rows: 0.16 s against 0.01 s at 12 qubits)
        return np.array([np.vdot(rho, rho).real for rho in self.rho])

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ``.npz`` atomically (a failure leaves no file at ``path``)."""
        arrays = {
            "steps": np.asarray(self.steps, dtype=np.int64),
            "trajectories": np.int64(self.trajectories),
            "z_mean": np.asarray(self.z_mean, dtype=np.float64),
            "z_stderr": np.asarray(self.z_stderr, dtype=np.float64),
            "meta": np.str_(json.dumps(self.meta, sort_keys=True)),
        }
        if self.rho is not None:
            arrays["rho"] = np.asarray(self.rho, dtype=np.complex128)
        if self.probabilities is not None:
            arrays["probabilities"] = np.asarray(self.probabilities, dtype=np.float64)
        if self.observable_names is not None:
            arrays["observables"] = np.asarray(self.observables, dtype=np.float64)
            arrays["observables_stderr"] = np.asarray(self.observables_stderr, dtype=np.float64)
            arrays["observable_names"] = np.asarray(self.observable_names, dtype=np.str_)
        target = Path(path)
        with atomic_write(target, fault="result.writing") as handle:
            write_npz(handle, arrays)
        self.path = target
        return target

    @classmethod
    def load(cls, path: str | os.PathLike) -> Result:
        """Read a result file without pickle."""
        with np.load(path, allow_pickle=False) as data:
            observed = "observable_names" in data.files
            return cls(
                rho=np.array(data["rho"]) if "rho" in data.files else None,
                probabilities=(
                    np.array(data["probabilities"]) if "probabilities" in data.files else None
                ),
                steps=np.array(data["steps"]),
                trajectories=int(data["trajectories"]),
                z_mean=np.array(data["z_mean"]),
                z_stderr=np.array(data["z_stderr"]),
                meta=json.loads(str(data["meta"])),
                path=Path(path),
                observables=np.array(data["observables"]) if observed else None,
                observables_stderr=np.array(data["observables_stderr"]) if observed else None,
                observable_names=np.array(data["observable_names"]) if observed else None,
            )
