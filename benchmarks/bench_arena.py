"""Throughput of the arena's put + get + release against naive np.save/np.load and memcpy.

    python benchmarks/bench_arena.py [--sizes 1,16,64] [--reps 15]

For each size (MiB) of a complex128 array, the three methods are run interleaved, ``reps``
times each, and the median time is reported as GB/s of array bytes moved through one
put + get (checksum verified) + release cycle:

- arena:  ``key = arena.put(a); v = arena.get(key); arena.release(key)``
- naive:  ``np.save`` into a ``TemporaryDirectory(dir="/dev/shm")``, ``np.load``, unlink
- memcpy: ``np.copyto(preallocated, a)``

Targets at 16 MiB: arena >= 5x naive and >= 0.7x memcpy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import uuid

import numpy as np

from noisefs.arena import Arena


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,16,64", help="array sizes in MiB, comma separated")
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    root = os.path.join(shm, f"noisefs-bench-{uuid.uuid4().hex[:8]}")
    spill = tempfile.mkdtemp(prefix="noisefs-bench-spill-")
    rows = []
    try:
        with (
            Arena(root, quota="1GiB", max_files=1000, spill_dir=spill) as arena,
            tempfile.TemporaryDirectory(dir=shm) as tmp,
        ):
            for mib in sizes:
                a = (
                    np.random.default_rng(mib)
                    .standard_normal(mib * 2**20 // 16 * 2)
                    .view(np.complex128)
                )
                out = np.empty_like(a)
                path = os.path.join(tmp, "snap.npy")

                def arena_cycle(a=a):
                    key = arena.put(a, run="bench")
                    view = arena.get(key)
                    del view
                    arena.release(key)

                def naive_cycle(a=a, path=path):
                    np.save(path, a)
                    b = np.load(path)
                    del b
                    os.unlink(path)

                def memcpy_cycle(a=a, out=out):
                    np.copyto(out, a)

                methods = {"arena": arena_cycle, "naive": naive_cycle, "memcpy": memcpy_cycle}
                for f in methods.values():  # warm up (first arena put creates the file)
                    f()
                times = {name: [] for name in methods}
                for _ in range(args.reps):
                    for name, f in methods.items():
                        t0 = time.perf_counter()
                        f()
                        times[name].append(time.perf_counter() - t0)
                med = {name: statistics.median(ts) for name, ts in times.items()}
                gbs = {name: a.nbytes / t / 1e9 for name, t in med.items()}
                rows.append((mib, gbs["arena"], gbs["naive"], gbs["memcpy"]))
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(spill, ignore_errors=True)
    print(
        f"put+get+release of complex128 arrays, median of {args.reps} interleaved repetitions (GB/s)"
    )
    print(
        f"{'size':>7} {'arena':>8} {'naive':>8} {'memcpy':>8} {'arena/naive':>12} {'arena/memcpy':>13}"
    )
    for mib, ar, nv, mc in rows:
        print(f"{mib:>4} MiB {ar:8.2f} {nv:8.2f} {mc:8.2f} {ar / nv:11.1f}x {ar / mc:12.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
