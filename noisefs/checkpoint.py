"""Atomic checkpoints of an aggregation, so ``--resume`` continues exactly.

A checkpoint holds the aggregator's sums, the exact set of folded batches, the seed, the
batch size and a fingerprint of everything that shapes the result. Batches folded after
the last checkpoint are simply simulated again: trajectory i always uses seed S + i.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from noisefs.atomic import atomic_write


def checkpoint_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(f"{output.name}.ckpt.npz")


@dataclass
class Checkpoint:
    fingerprint: dict
    seed: int
    batch: int
    done: np.ndarray  # bool, one entry per batch
    state: dict[str, np.ndarray]
    elapsed_s: float = 0.0


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    arrays = {f"state_{name}": value for name, value in checkpoint.state.items()}
    header = {
        "fingerprint": checkpoint.fingerprint,
        "seed": checkpoint.seed,
        "batch": checkpoint.batch,
        "elapsed_s": checkpoint.elapsed_s,
    }
    with atomic_write(path, mode=0o600) as handle:
        np.savez(handle, header=np.str_(json.dumps(header)), done=checkpoint.done, **arrays)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint | None:
    """The checkpoint at ``path``, or None when there is none."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    with data:
        header = json.loads(str(data["header"]))
        state = {
            name.removeprefix("state_"): data[name]  # each access reads a fresh array
            for name in data.files
            if name.startswith("state_")
        }
        return Checkpoint(
            fingerprint=header["fingerprint"],
            seed=int(header["seed"]),
            batch=int(header["batch"]),
            done=np.array(data["done"], dtype=bool),
            state=state,
            elapsed_s=float(header.get("elapsed_s", 0.0)),
        )
