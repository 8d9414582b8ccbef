"""Throughput of the arena's put + get + release against naive np.save/np.load and memcpy.

    python benchmarks/bench_arena.py [--sizes 64K,1M,16M,64M] [--reps 15] [--procs 4] [--seconds 3]

For each size of a complex128 array the methods run interleaved, ``reps`` times each (a
repetition is enough cycles to last a few ms), and the median is reported as GB/s of array
bytes moved through one cycle:

- arena:      ``key = arena.put(a); v = arena.get(key); arena.release(key)`` (get verifies
              the checksum: a full read of the snapshot)
- arena+copy: like arena, then ``np.copyto(out, v)``: a consumer that copies the snapshot
              into its own buffer (e.g. to stack a batch) after a verified get
- arena-into: ``key = arena.put(a); arena.read_into(key, out); arena.release(key)``: the
              same result in one pass (each block verified right after it is copied)
- naive:      ``np.save`` into a ``TemporaryDirectory(dir="/dev/shm")``, ``np.load``, unlink
- memcpy:     ``np.copyto(preallocated, a)``

Then ``--procs`` processes cycle 64 KiB snapshots (put + get + release) on one arena for
``--seconds``, against one process alone for as long: total cycles/s and the ratio.

Targets (issue 8): arena >= 3x naive at 1 MiB, >= 5x naive at 16 MiB, >= 0.7x memcpy at 16 MiB.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import time
import uuid

import numpy as np

from noisefs.arena import Arena

UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
TARGETS = {  # size: (min arena/naive, min arena/memcpy)
    1 << 20: (3.0, None),
    16 << 20: (5.0, 0.7),
}


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    return int(text[:-1]) * UNITS[text[-1]] if text[-1] in UNITS else int(text)


def label(nbytes: int) -> str:
    return f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"


def bench_sizes(sizes: list[int], reps: int, shm: str) -> list[tuple[int, dict]]:
    root = os.path.join(shm, f"noisefs-bench-{uuid.uuid4().hex[:8]}")
    spill = tempfile.mkdtemp(prefix="noisefs-bench-spill-")
    rows = []
    try:
        with (
            Arena(root, quota="1GiB", max_files=1000, spill_dir=spill) as arena,
            tempfile.TemporaryDirectory(dir=shm) as tmp,
        ):
            for nbytes in sizes:
                a = np.random.default_rng(nbytes).standard_normal(nbytes // 8).view(np.complex128)
                out = np.empty_like(a)
                path = os.path.join(tmp, "snap.npy")

                def arena_cycle(a=a):
                    key = arena.put(a, run="bench")
                    view = arena.get(key)
                    del view
                    arena.release(key)

                def arena_copy(a=a, out=out):
                    key = arena.put(a, run="bench")
                    np.copyto(out, arena.get(key))
                    arena.release(key)

                def arena_into(a=a, out=out):
                    key = arena.put(a, run="bench")
                    arena.read_into(key, out)
                    arena.release(key)

                def naive_cycle(a=a, path=path):
                    np.save(path, a)
                    b = np.load(path)
                    del b
                    os.unlink(path)

                def memcpy_cycle(a=a, out=out):
                    np.copyto(out, a)

                methods = {
                    "arena": arena_cycle,
                    "arena+copy": arena_copy,
                    "arena-into": arena_into,
                    "naive": naive_cycle,
                    "memcpy": memcpy_cycle,
                }
                inner = max(1, (4 << 20) // nbytes)  # a repetition moves >= 4 MiB
                for f in methods.values():  # warm up (the first put creates the file)
                    for _ in range(inner):
                        f()
                times: dict[str, list[float]] = {name: [] for name in methods}
                for _ in range(reps):
                    for name, f in methods.items():
                        t0 = time.perf_counter()
                        for _ in range(inner):
                            f()
                        times[name].append((time.perf_counter() - t0) / inner)
                med = {name: statistics.median(ts) for name, ts in times.items()}
                rows.append((nbytes, med, ledger_use(arena, arena_cycle, max(inner, 20))))
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(spill, ignore_errors=True)
    return rows


def ledger_use(arena: Arena, cycle, cycles: int) -> tuple[float, float]:
    """(SQL statements, commits) per cycle on this thread's ledger connection."""
    seen: list[str] = []
    conn = arena._ledger.conn()
    conn.set_trace_callback(seen.append)
    try:
        for _ in range(cycles):
            cycle()
    finally:
        conn.set_trace_callback(None)
    commits = sum(1 for q in seen if q.strip().upper().startswith("COMMIT"))
    return len(seen) / cycles, commits / cycles


def _cycler(root: str, seconds: float, start, out) -> None:
    a = np.ones(64 << 10 >> 4, dtype=np.complex128)
    with Arena(root, timeout_s=60) as arena:
        for _ in range(20):
            arena.release(arena.put(a))
        start.wait()
        n, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(50):
                key = arena.put(a, run="procs")
                view = arena.get(key)
                del view
                arena.release(key)
            n += 50
        out.put(n)


def bench_procs(procs: int, seconds: float, shm: str) -> dict[int, float]:
    ctx = mp.get_context("spawn")
    root = os.path.join(shm, f"noisefs-bench-{uuid.uuid4().hex[:8]}")
    spill = tempfile.mkdtemp(prefix="noisefs-bench-spill-")
    rates = {}
    try:
        Arena(root, quota="1GiB", max_files=1000, spill_dir=spill).close()
        for count in (1, procs):
            start, out = ctx.Event(), ctx.Queue()
            workers = [
                ctx.Process(target=_cycler, args=(root, seconds, start, out)) for _ in range(count)
            ]
            for w in workers:
                w.start()
            time.sleep(2.0)  # spawn and imports, then all start together
            start.set()
            total = sum(out.get(timeout=seconds + 120) for _ in workers)
            for w in workers:
                w.join(30)
            rates[count] = total / seconds
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(spill, ignore_errors=True)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64K,1M,16M,64M", help="array sizes, comma separated")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument(
        "--procs", type=int, default=4, help="processes sharing one arena (0: skip)"
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    rows = bench_sizes(sizes, args.reps, shm)
    print(
        f"one cycle per method, median of {args.reps} interleaved repetitions (GB/s; us per cycle)"
    )
    head = " ".join(f"{m:>15}" for m in ("arena", "arena+copy", "arena-into", "naive", "memcpy"))
    print(f"{'size':>7} {head} {'arena/naive':>11} {'arena/memcpy':>12} {'into/+copy':>10}")
    missed = []
    for nbytes, med, _ in rows:
        gbs = {name: nbytes / t / 1e9 for name, t in med.items()}
        cells = " ".join(f"{gbs[m]:6.2f} {med[m] * 1e6:7.0f}us" for m in med)
        vs_naive, vs_memcpy = gbs["arena"] / gbs["naive"], gbs["arena"] / gbs["memcpy"]
        into_copy = gbs["arena-into"] / gbs["arena+copy"]
        print(f"{label(nbytes):>7} {cells} {vs_naive:10.2f}x {vs_memcpy:11.2f}x {into_copy:9.2f}x")
        want_naive, want_memcpy = TARGETS.get(nbytes, (None, None))
        if want_naive and vs_naive < want_naive:
            missed.append(f"{label(nbytes)}: arena/naive {vs_naive:.1f}x < {want_naive}x")
        if want_memcpy and vs_memcpy < want_memcpy:
            missed.append(f"{label(nbytes)}: arena/memcpy {vs_memcpy:.2f}x < {want_memcpy}x")
    use = ", ".join(f"{label(n)} {q:.2f} / {c:.2f}" for n, _, (q, c) in rows)
    print(f"ledger statements / commits per arena cycle (this thread): {use}")
    if args.procs:
        rates = bench_procs(args.procs, args.seconds, shm)
        one, many = rates[1], rates[args.procs]
        print(
            f"64 KiB put+get+release: 1 process {one:,.0f} cycles/s; {args.procs} processes on one "
            f"arena {many:,.0f} cycles/s in total ({many / one:.2f}x; {os.cpu_count()} CPUs)"
        )
    print("targets: " + ("all met" if not missed else "missed: " + "; ".join(missed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
