"""Aer alone: the floor's one job of K shots against the same shots in equal jobs.

    python benchmarks/bench_aer_batches.py [--reps N] [--jobs 2,10] [--only ghz9,qft7]

Is batching itself a cost? The floor script of ``bench_floor.py`` (noisefs's executed
circuit and noise model, per-shot ``save_statevector``, nothing done with the states) runs
K shots as one Aer job (the baseline) and as 2 and 10 equal jobs one after another, shot i
seeded ``7 + i`` either way (each split is first checked to average to noisefs's ρ within
1e-8). Whole processes, interleaved (1, 2, 10, 1, 2, 10, ...), medians of ``--reps`` (5);
printed: the Aer seconds of each split (the floor script's own clock, imports excluded) and
its ratio to the one job. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

from bench_floor import CIRCUITS, prepare_floor, temporary_runner

DEFAULT = ("ghz9", "qft7", "random6")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--jobs", default="2,10", help="splits to compare with one job")
    parser.add_argument("--only", default=",".join(DEFAULT), help=f"of {', '.join(CIRCUITS)}")
    args = parser.parse_args()
    splits = (1, *(int(j) for j in args.jobs.split(",") if j))
    names = [n for n in args.only.split(",") if n]
    if unknown := sorted(set(names) - set(CIRCUITS)):
        parser.error(f"--only: unknown circuits {', '.join(unknown)}")
    figures: dict = {"reps": args.reps, "cpus": os.cpu_count()}
    with temporary_runner(sys.executable, "noisefs-bench-aer-") as runner:
        for name in names:
            k = CIRCUITS[name]
            _, _, qasm, noise = prepare_floor(runner, name, k, splits)
            aer: dict[int, list[float]] = {jobs: [] for jobs in splits}
            for _ in range(args.reps):
                for jobs in splits:
                    aer[jobs].append(runner.floor_run(qasm, noise, k, jobs=jobs)[1]["aer_s"])
            medians = {jobs: statistics.median(times) for jobs, times in aer.items()}
            one = medians[1]
            print(f"{name:8s} K={k:6d}  "
                  + "  ".join(f"{j} job{'s' if j > 1 else ''} {t:5.2f} s ({t / one:4.2f})"
                              for j, t in medians.items()))  # fmt: skip
            figures[name] = {"k": k, "aer_s": medians, "ratio_to_one_job": {
                j: t / one for j, t in medians.items()}}  # fmt: skip
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
