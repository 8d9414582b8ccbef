"""Atomic checkpoints of an aggregation, so ``--resume`` continues exactly.

A checkpoint holds the aggregator's sums, the exact set of folded trajectories (as ranges,
so it does not depend on the batch sizes chosen before or after it), the seed and a
fingerprint of everything that shapes the result. Trajectories folded after the last
checkpoint are simply simulated again: trajectory i always uses seed S + i.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from noisefs.atomic import atomic_write
from noisefs.errors import OutputError
from noisefs.npz import write_npz
from noisefs.npzcheck import verify_npz


def checkpoint_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(f"{output.name}.ckpt.npz")


@dataclass
class Checkpoint:
    fingerprint: dict
    seed: int
    folded: np.ndarray  # int64 (m, 2): sorted disjoint [start, stop) trajectory ranges
    state: dict[str, np.ndarray]
    elapsed_s: float = 0.0


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    arrays = {f"state_{name}": value for name, value in checkpoint.state.items()}
    header = {
        "fingerprint": checkpoint.fingerprint,
        "seed": checkpoint.seed,
        "elapsed_s": checkpoint.elapsed_s,
    }
    folded = np.asarray(checkpoint.folded, dtype=np.int64).reshape(-1, 2)
    with atomic_write(path, mode=0o600, fault="checkpoint.writing") as handle:
        write_npz(handle, {"header": np.str_(json.dumps(header)), "folded": folded, **arrays})


def _ranges_of_batches(done: np.ndarray, batch: int, trajectories: int) -> np.ndarray:
    """Checkpoints of noisefs 0.1 recorded done batches of one fixed size."""
    starts = np.flatnonzero(done) * batch
    return np.stack([starts, np.minimum(starts + batch, trajectories)], axis=1).astype(np.int64)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint | None:
    """The checkpoint at ``path``, or None when there is none. A file that cannot be read
    back whole (a flipped byte fails its zip CRC, a truncated one its directory, a header
    that is not ours) is :class:`OutputError` in one line (exit 3): never a partial state,
    and the file is left where it is."""
    try:
        verify_npz(path)  # every member's CRC, no member dropped from the directory
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - whatever numpy or zipfile raise for bad bytes
        raise _corrupt(path, exc) from exc
    try:
        with data:
            return _read(data)
    except Exception as exc:  # noqa: BLE001 - bad CRC, bad JSON, missing keys, bad shapes
        raise _corrupt(path, exc) from exc


def _corrupt(path: str | os.PathLike, exc: Exception) -> OutputError:
    reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    if "pickle" in reason:  # what numpy says of a file that is not a zip archive at all
        reason = "not an npz archive"
    return OutputError(
        f"the checkpoint {path} is corrupt ({reason}); it was left as it is: move it away "
        "to run from the beginning"
    )


def _read(data) -> Checkpoint:
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError("not an npz archive")
    header = json.loads(str(data["header"]))
    state = {
        name.removeprefix("state_"): data[name]  # each access reads a fresh array
        for name in data.files
        if name.startswith("state_")
    }
    if "folded" in data.files:
        folded = np.array(data["folded"], dtype=np.int64).reshape(-1, 2)
    else:
        trajectories = int(header["fingerprint"]["trajectories"])
        folded = _ranges_of_batches(np.array(data["done"]), int(header["batch"]), trajectories)
    return Checkpoint(
        fingerprint=header["fingerprint"],
        seed=int(header["seed"]),
        folded=folded,
        state=state,
        elapsed_s=float(header.get("elapsed_s", 0.0)),
    )
