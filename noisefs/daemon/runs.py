"""The running average of one inbox run: per-step sums, checkpoint and result file.

Pure states ψ are batched per step and folded with the :class:`~noisefs.aggregate.Aggregator`
(one ZHERK per batch); density matrices ρ are added into a dense running sum in place.
The checkpoint holds both sums and the names of the claimed files folded since the last
checkpoint (``pending``): those files are unlinked only after the checkpoint is durable,
so after a kill -9 a claimed file is either named by the checkpoint (already counted:
just unlinked) or not (folded again) — each file counts exactly once.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

import numpy as np

from noisefs import __version__
from noisefs.aggregate import Aggregator
from noisefs.atomic import atomic_write, writing

PSI_BATCH = 256


def write_checkpoint(path: Path, arrays: dict[str, np.ndarray], header: dict) -> None:
    """Write a checkpoint atomically (temp file, fsync, rename)."""
    with writing(path, "daemon checkpoint"):
        with atomic_write(path, mode=0o600) as handle:
            np.savez(handle, header=np.str_(json.dumps(header)), **arrays)


class StepSum:
    """Sums of one snapshot step."""

    def __init__(self, num_qubits: int) -> None:
        self.num_qubits = num_qubits
        self.dim = 2**num_qubits
        self.agg = Aggregator(num_qubits, 1, density="full")
        self.dense: np.ndarray | None = None  # Σ ρ of the files that held ρ
        self.rho_count = 0
        self.batch = np.empty((PSI_BATCH, self.dim), np.complex128)
        self.batched = 0

    @property
    def count(self) -> int:
        """Files folded into this step (batched ψ included)."""
        return int(self.agg.count[0]) + self.rho_count + self.batched

    def add_psi(self, psi: np.ndarray) -> None:
        self.batch[self.batched] = psi
        self.batched += 1
        if self.batched == PSI_BATCH:
            self.flush()

    def add_rho(self, rho: np.ndarray) -> None:
        if self.dense is None:
            self.dense = np.zeros((self.dim, self.dim), np.complex128)
        np.add(self.dense, rho, out=self.dense)
        self.rho_count += 1

    def flush(self) -> None:
        """Fold the batched ψ (one ZHERK)."""
        if self.batched:
            self.agg.fold_states(0, self.batch[: self.batched])
            self.batched = 0

    def rho(self) -> np.ndarray:
        """The averaged ρ of this step."""
        self.flush()
        total = self.count
        psi_count = int(self.agg.count[0])
        out = self.agg.rho()[0] * psi_count if psi_count else np.zeros((self.dim,) * 2, complex)
        if self.dense is not None:
            out += self.dense
        return out / max(1, total)

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        self.flush()
        arrays = {f"{prefix}{k}": v for k, v in self.agg.state().items()}
        arrays[f"{prefix}rho_count"] = np.int64(self.rho_count)
        if self.dense is not None:
            arrays[f"{prefix}dense"] = self.dense
        return arrays

    def load(self, prefix: str, data) -> None:
        self.agg.load_state({k[len(prefix) :]: data[k] for k in data.files if k.startswith(prefix)})
        self.rho_count = int(data[f"{prefix}rho_count"])
        if f"{prefix}dense" in data.files:
            self.dense = np.array(data[f"{prefix}dense"], np.complex128)


class RunAverage:
    """Running averages of ``run`` in one arena, with its checkpoint file."""

    def __init__(self, run: str, ckpt_path: Path, results_dir: Path) -> None:
        self.run = run
        self.ckpt_path = ckpt_path
        self.results_dir = results_dir
        self.session = secrets.token_hex(8)
        self.num_qubits: int | None = None
        self.steps: dict[int, StepSum] = {}
        self.pending: list[str] = []  # claimed names folded since the last checkpoint
        self.pending_bytes = 0  # their size: claimed files stay in the arena until then
        self._sizes: dict[str, int] = {}
        self.ingested = 0
        self.ingested_bytes = 0
        self.rejected: dict[str, int] = {}
        self.output: str | None = None
        self.started = time.time()
        self.dirty = False

    # -- folding -----------------------------------------------------------------------

    def fold(self, step: int, arr: np.ndarray, claimed_name: str, nbytes: int) -> None:
        """Fold one validated array (ψ of shape (d,) or ρ of shape (d, d))."""
        if self.num_qubits is None:
            self.num_qubits = int(arr.shape[0]).bit_length() - 1
        sums = self.steps.get(step)
        if sums is None:
            sums = self.steps[step] = StepSum(self.num_qubits)
        if arr.ndim == 1:
            sums.add_psi(arr)
        else:
            sums.add_rho(arr)
        self.pending.append(claimed_name)
        self._sizes[claimed_name] = nbytes
        self.pending_bytes += nbytes
        self.ingested += 1
        self.ingested_bytes += nbytes
        self.dirty = True

    def flush(self) -> None:
        for sums in self.steps.values():
            sums.flush()

    def counts(self) -> dict[int, int]:
        return {step: s.count for step, s in sorted(self.steps.items())}

    # -- checkpoint --------------------------------------------------------------------

    def snapshot(self) -> tuple[dict[str, np.ndarray], dict, list[str]]:
        """Copies of the sums, the header and the claimed names they cover: what a
        checkpoint writes, taken at one instant (so every name listed is counted)."""
        arrays: dict[str, np.ndarray] = {}
        for step, sums in self.steps.items():
            arrays.update({k: np.array(v, copy=True) for k, v in sums.state(f"s{step}_").items()})
        header = {
            "run": self.run,
            "session": self.session,
            "num_qubits": self.num_qubits,
            "steps": sorted(self.steps),
            "pending": list(self.pending),
            "ingested": self.ingested,
            "ingested_bytes": self.ingested_bytes,
            "rejected": dict(self.rejected),
            "output": self.output,
            "started": self.started,
        }
        self.dirty = False
        return arrays, header, list(self.pending)

    def save(self) -> list[str]:
        """Write the checkpoint now; return the claimed names it covers (the caller
        unlinks them, then calls :meth:`forget`)."""
        arrays, header, names = self.snapshot()
        write_checkpoint(self.ckpt_path, arrays, header)
        return names

    def forget(self, names: list[str]) -> None:
        """Drop names whose claimed files are unlinked (they never come back)."""
        gone = set(names)
        self.pending = [n for n in self.pending if n not in gone]
        for name in gone:
            self.pending_bytes -= self._sizes.pop(name, 0)

    @classmethod
    def load(cls, ckpt_path: Path, results_dir: Path) -> RunAverage:
        """The run a checkpoint holds."""
        with np.load(ckpt_path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            run = cls(header["run"], ckpt_path, results_dir)
            run.session = header["session"]
            run.num_qubits = header["num_qubits"]
            run.pending = list(header["pending"])
            run.ingested = int(header["ingested"])
            run.ingested_bytes = int(header.get("ingested_bytes", 0))
            run.rejected = dict(header["rejected"])
            run.output = header.get("output")
            run.started = float(header.get("started", time.time()))
            for step in header["steps"]:
                sums = run.steps[int(step)] = StepSum(run.num_qubits)
                sums.load(f"s{step}_", data)
        return run

    def drop_checkpoint(self) -> None:
        try:
            os.unlink(self.ckpt_path)
        except FileNotFoundError:
            pass

    # -- result ------------------------------------------------------------------------

    def _output_path(self) -> Path:
        """``<results>/<run>.npz``, unless that holds another session's complete result."""
        if self.output:
            return Path(self.output)
        target = self.results_dir / f"{self.run}.npz"
        k = 1
        while target.exists():
            try:
                with np.load(target, allow_pickle=False) as old:
                    meta = json.loads(str(old["meta"]))
                if meta.get("session") == self.session or not meta.get("complete"):
                    break
            except (OSError, ValueError, KeyError):
                break
            target = self.results_dir / f"{self.run}.{k}.npz"
            k += 1
        self.output = str(target)
        return target

    def write_result(self, arena_root: str, complete: bool) -> Path | None:
        """Write the averages atomically; None when nothing was folded."""
        if not self.steps:
            return None
        steps = sorted(self.steps)
        rho = np.stack([self.steps[s].rho() for s in steps])
        counts = np.array([self.steps[s].count for s in steps], np.int64)
        meta = {
            "run": self.run,
            "arena": arena_root,
            "session": self.session,
            "complete": complete,
            "num_qubits": self.num_qubits,
            "ingested_files": self.ingested,
            "ingested_bytes": self.ingested_bytes,
            "rejected": self.rejected,
            "started": self.started,
            "written": time.time(),
            "versions": {"noisefs": __version__, "numpy": np.__version__},
            "source": "noisefs daemon",
        }
        target = self._output_path()
        probabilities = np.real(np.einsum("sii->si", rho))
        with writing(target):
            with atomic_write(target) as handle:
                np.savez(
                    handle,
                    rho=rho,
                    steps=np.array(steps, np.int64),
                    counts=counts,
                    probabilities=probabilities,
                    meta=np.str_(json.dumps(meta)),
                )
        return target
