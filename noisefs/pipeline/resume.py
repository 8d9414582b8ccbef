"""Resuming: what shapes a run (its fingerprint), where an interrupted run stands, and
when to write checkpoints.

A checkpoint is accepted only by a run with the same fingerprint; it holds the folded
trajectory ranges, so a resumed run may choose other batch sizes and stays exact.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from noisefs import faults
from noisefs.aggregate import Aggregator
from noisefs.aggregate.checkpoint import (
    Checkpoint,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)
from noisefs.atomic import writing
from noisefs.errors import InputError, OutputError
from noisefs.pipeline.ranges import TrajectoryRanges

log = logging.getLogger("noisefs")

SEED_LIMIT = 2**63  # Aer takes seed_simulator as a signed 64-bit integer


def fingerprint(
    *,
    versions: dict[str, str],
    circuit_sha256: str,
    executed_qasm: str,
    steps: list[int],
    trajectories: int,
    noise_meta: dict,
    density: str,
    keep_qubits: tuple[int, ...] | None,
    observables: list[dict] | None = None,
    probabilities: bool = True,
) -> dict:
    """Everything that shapes the sums, as JSON-able values (batch sizes do not)."""
    return {
        # another Aer or Qiskit may draw other random numbers for the same seeds
        "versions": [versions["qiskit"], versions["qiskit-aer"]],
        "circuit_sha256": circuit_sha256,
        "executed_sha256": hashlib.sha256(executed_qasm.encode()).hexdigest(),
        "steps": list(map(int, steps)),
        "trajectories": trajectories,
        "noise": noise_meta,
        "density": density,
        "keep_qubits": list(keep_qubits) if keep_qubits else None,
        # keys present only when used: checkpoints of earlier versions stay valid
        **({"observables": observables} if observables else {}),
        **({} if probabilities else {"probabilities": False}),
    }


@dataclass
class StartState:
    """Where a run starts: its seed, what is folded already, and time spent before."""

    seed: int
    folded: TrajectoryRanges = field(default_factory=TrajectoryRanges)
    elapsed_s: float = 0.0


def start_state(
    output: Path | None,
    resume: bool,
    seed: int | None,
    fingerprint: dict,
    aggregator: Aggregator,
) -> StartState:
    """A fresh start, or the interrupted run's state loaded into ``aggregator``."""
    if resume and output is not None:
        path = checkpoint_path(output)
        checkpoint = load_checkpoint(path)
        if checkpoint is not None:
            if checkpoint.fingerprint != fingerprint:
                raise InputError(
                    f"{path} was written by a run with another circuit or options; "
                    "rerun with the same ones, or without --resume to start afresh"
                )
            if seed is not None and seed != checkpoint.seed:
                raise InputError(
                    f"--seed {seed} differs from the interrupted run's seed {checkpoint.seed}"
                )
            aggregator.load_state(checkpoint.state)
            folded = TrajectoryRanges(checkpoint.folded)
            if folded.total != aggregator.folded:
                raise InputError(f"{path} is inconsistent; rerun without --resume")
            log.info("resuming: %d trajectories already folded", folded.total)
            return StartState(checkpoint.seed, folded, checkpoint.elapsed_s)
        if output.exists():
            raise InputError(
                f"--resume: {output} is already complete (no checkpoint beside it); "
                "leave out --resume to run again and replace it"
            )
        log.warning("--resume: no checkpoint beside %s, starting from the beginning", output)
    if seed is None:
        seed = secrets.randbelow(SEED_LIMIT - 2**40)
    return StartState(seed)


def full_disk(exc: BaseException) -> bool:
    """Whether ``exc`` (an ``OutputError`` from :func:`noisefs.atomic.writing`) is a full
    filesystem or quota: room may come back, so the write is worth trying again."""
    cause = exc.__cause__ if isinstance(exc, OutputError) else exc
    return isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)


class Checkpointer:
    """Writes checkpoints beside ``output`` every ``interval_s``, stretched so that writing
    them never takes more than ~10 % of the run."""

    def __init__(self, output: Path | None, fingerprint: dict, seed: int, interval_s: float):
        self.path = checkpoint_path(output) if output is not None else None
        self.fingerprint = fingerprint  # what shapes the run (also a Dask run's task keys)
        self._seed = seed
        self._base_interval = self._interval = interval_s
        self._last = time.monotonic()
        self._full = False  # the last checkpoint found the disk full

    def due(self) -> bool:
        return self.path is not None and time.monotonic() - self._last > self._interval

    def periodic(self, aggregator: Aggregator, folded: TrajectoryRanges, elapsed_s: float) -> None:
        """The due checkpoint. One that a full disk refuses is warned about once and tried
        again at the next interval while the run goes on (what it folded stays in memory;
        the result waits for room at the end); any other failure stops the run."""
        try:
            self.write(aggregator, folded, elapsed_s)
        except OutputError as exc:
            if not full_disk(exc):
                raise
            if not self._full:
                log.warning("%s; the run goes on and tries again at the next checkpoint", exc)
            self._full = True
            self._last = time.monotonic()
        else:
            self._full = False

    def write(self, aggregator: Aggregator, folded: TrajectoryRanges, elapsed_s: float) -> None:
        """Write one now (nothing without an output or before anything is folded)."""
        if self.path is None or not folded:
            return
        started = time.perf_counter()
        checkpoint = Checkpoint(
            self.fingerprint, self._seed, folded.to_array(), aggregator.state(), elapsed_s
        )
        with writing(self.path, "checkpoint"):
            save_checkpoint(self.path, checkpoint)
        faults.hold_at("checkpoint.written")
        self._interval = max(self._base_interval, 10 * (time.perf_counter() - started))
        self._last = time.monotonic()

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
