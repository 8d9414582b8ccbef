"""How noisefs should share the cores: whole `noisefs run` processes, interleaved.

Compares, at a small and a large circuit (QFT, ``--snapshots final``, same seed):

  A  the default: one simulating thread, Aer on every core, folding in the main thread
  B  one simulating thread, ``--aer-threads 1`` (folding and Aer never compete)
  C  ``--workers 2``: two worker processes, Aer on one core each, the parent folding

and prints wall time, the run phase (without interpreter start and preparation) and each
configuration's ratio to A. Run: ``python benchmarks/bench_parallel.py [--reps 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {
    "A default": [],
    "B --aer-threads 1": ["--aer-threads", "1"],
    "C --workers 2": ["--workers", "2"],
}
CASES = ((5, 20000), (12, 256))  # (qubits, trajectories): seconds each on 2 cores


def qft_qasm(n: int) -> str:
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{n}];"]
    for q in range(n):
        lines.append(f"x q[{q}];" if q % 2 else f"h q[{q}];")
    for target in reversed(range(n)):
        lines.append(f"h q[{target}];")
        for control in reversed(range(target)):
            lines.append(f"cu1(pi/{2 ** (target - control)}) q[{control}],q[{target}];")
    return "\n".join(lines) + "\n"


def run_once(circuit: Path, k: int, extra: list[str], work: Path) -> tuple[float, float]:
    arena = Path("/dev/shm") / f"noisefs-bench-parallel-{os.getpid()}"
    out = work / "out.npz"
    args = [sys.executable, "-m", "noisefs", "run", str(circuit), "-k", str(k), "--seed", "7",
            "--snapshots", "final", "--json", "-o", str(out), "--arena", str(arena),
            "--spill", str(work / "spill"), *extra]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    shutil.rmtree(arena, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"noisefs failed: {done.stderr.strip()}")
    return wall, float(json.loads(done.stdout)["timing"]["run_s"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    reps = parser.parse_args().reps
    print(f"bench_parallel: {os.cpu_count()} CPUs, {reps} interleaved rep(s), medians")
    with tempfile.TemporaryDirectory(prefix="noisefs-bench-parallel-") as tmp:
        work = Path(tmp)
        for n, k in CASES:
            circuit = work / f"qft_{n}.qasm"
            circuit.write_text(qft_qasm(n))
            walls: dict[str, list[float]] = {name: [] for name in CONFIGS}
            runs: dict[str, list[float]] = {name: [] for name in CONFIGS}
            for _ in range(reps):
                for name, extra in CONFIGS.items():
                    wall, run_s = run_once(circuit, k, extra, work)
                    walls[name].append(wall)
                    runs[name].append(run_s)
            base_wall = statistics.median(walls["A default"])
            base_run = statistics.median(runs["A default"])
            print(f"\nn={n}, K={k}")
            print(f"  {'configuration':22} {'wall s':>8} {'run s':>8} {'wall/A':>7} {'run/A':>7}")
            for name in CONFIGS:
                wall, run_s = statistics.median(walls[name]), statistics.median(runs[name])
                print(
                    f"  {name:22} {wall:8.2f} {run_s:8.2f} {wall / base_wall:7.3f} {run_s / base_run:7.3f}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
