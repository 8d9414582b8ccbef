"""The end of a large run: building ρ from ZHERK's triangle, and writing the result file.

    python benchmarks/bench_result.py [--qubits 12] [--reps 5] [--dir /tmp]

At 12 qubits ρ is 4096 × 4096 complex (256 MiB). Interleaved, medians of ``--reps``:

1. ``hermitian_from_upper`` (noisefs's fill: a streaming pass of U^T / count, then tiles
   mirrored in cache) against ``np.copyto`` of the same bytes (the memory-bandwidth
   baseline; target: near it) and against the whole-matrix fill it replaced
   (``conj(U.T)`` then ``+= U``: U read across rows).
2. ``noisefs.npz.write_npz`` + fsync against one raw ``write`` of the same bytes + fsync (one
   pass plus fsync: the target) and ``np.savez`` + fsync (what it replaced), in ``--dir``.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from noisefs.aggregate.linalg import hermitian_from_upper
from noisefs.npz import write_npz


def whole_matrix_fill(upper: np.ndarray, count: int, out: np.ndarray) -> None:
    np.conjugate(upper.T, out=out)
    out += upper
    out[np.diag_indices_from(out)] = upper.diagonal().real
    out /= count


def interleaved(cases: dict[str, Callable[[], None]], reps: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:  # rotate the order
            case = cases[name]
            started = time.perf_counter()
            case()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def synced(path: Path, write: Callable) -> Callable[[], None]:
    def case() -> None:
        with open(path, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink()

    return case


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qubits", type=int, default=12)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where files are written")
    args = parser.parse_args()
    size = 2**args.qubits
    rng = np.random.default_rng(1)
    upper = np.asfortranarray(np.triu(rng.standard_normal((size, size)) + 1j))
    out = np.empty((size, size), dtype=np.complex128)
    fill = interleaved(
        {
            "noisefs": lambda: hermitian_from_upper(upper, 1000, out),
            "copyto": lambda: np.copyto(out, upper.T),
            "whole-matrix": lambda: whole_matrix_fill(upper, 1000, out),
        },
        args.reps,
    )
    rho = out[None]
    work = Path(tempfile.mkdtemp(prefix="noisefs-bench-result-", dir=args.dir))
    try:
        write = interleaved(
            {
                "noisefs": synced(work / "a.npz", lambda h: write_npz(h, {"rho": rho})),
                "raw": synced(work / "b.raw", lambda h: h.write(memoryview(rho).cast("B"))),
                "np.savez": synced(work / "c.npz", lambda h: np.savez(h, rho=rho)),
            },
            args.reps,
        )
    finally:
        for leftover in work.iterdir():
            leftover.unlink()
        work.rmdir()
    mib = rho.nbytes / 2**20
    print(f"{args.qubits} qubits, rho {mib:.0f} MiB, {args.reps} interleaved reps (medians)")
    print(
        f"fill:  noisefs {fill['noisefs']:.3f} s  copyto {fill['copyto']:.3f} s "
        f"({fill['noisefs'] / fill['copyto']:.2f}x)  whole-matrix {fill['whole-matrix']:.3f} s "
        f"({fill['whole-matrix'] / fill['noisefs']:.2f}x slower)"
    )
    print(
        f"write: noisefs {write['noisefs']:.3f} s  raw+fsync {write['raw']:.3f} s "
        f"({write['noisefs'] / write['raw']:.2f}x)  np.savez {write['np.savez']:.3f} s "
        f"({write['np.savez'] / write['noisefs']:.2f}x slower)  in {args.dir}"
    )
    print(json.dumps({"qubits": args.qubits, "fill_s": fill, "write_s": write}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
