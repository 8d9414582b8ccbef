"""Observables at scale: ``noisefs run --observable ...`` against Aer's own estimator path.

    python benchmarks/bench_observables.py [--qubits 20] [--layers 2] [--trajectories 1000]
                                           [--reps 2] [--largest 24,26]

A hardware-efficient ansatz (``--layers`` of ``ry`` on every qubit and a ``cx`` chain, angles
from a fixed seed) with ten observables: five neighbouring ``Z Z``, three single ``X``, an
Ising energy (a weighted sum of 2n-1 terms) and the all-``Z`` parity. Whole processes,
interleaved A B A B, medians:

* A = ``noisefs run C --trajectories K --snapshots final --observable ... --json`` (default
  noise, a private arena on /dev/shm of 2 GiB, its own spill directory);
* B = Aer's estimator path over the same shots: noisefs's executed circuit (read from A's
  result) with ``save_expectation_value`` of each observable, the same noise model,
  ``AerSimulator(method="statevector").run(shots=K, seed_simulator=S)``. B's values must equal
  A's to 1e-8 (same trajectories), else the script exits 1. B has no error bars.

Printed: wall time and peak RSS (the child's ``ru_maxrss``) of A and B, the ratio A/B, A's
arena peak against one state's size (2ⁿ × 16 bytes), and A's standard errors. With
``--largest``, A alone at each of those qubit counts with 20 trajectories: whether it runs in
bounded memory here and its peak RSS. The last line is one JSON object with every figure.
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

WRAP = (
    "import resource, subprocess, sys;"
    "rc = subprocess.run(sys.argv[1:]).returncode;"
    "print('maxrss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr);"
    "sys.exit(rc)"
)

AER_ESTIMATOR = r"""
import json, sys, numpy as np
from qiskit_aer import AerSimulator
from noisefs.observables import ObservableSet
from noisefs.oracle import executed_circuit
from noisefs.sim.noise_source import noise_from_meta
meta = json.loads(open(sys.argv[1]).read())
n = int(meta["num_qubits"])
circuit = executed_circuit(meta)
ops = ObservableSet.from_meta(meta["observables"], n).sparse_pauli_ops()
for m, op in enumerate(ops):
    circuit.save_expectation_value(op, list(range(n)), label=f"o{m}")
model = noise_from_meta(meta["noise"]).model_for(n)
result = AerSimulator(method="statevector", noise_model=model).run(
    circuit, shots=int(meta["trajectories"]), seed_simulator=int(meta["seed"])).result()
data = result.data(0)
print(json.dumps([float(np.real(data[f"o{m}"])) for m in range(len(ops))]))
"""


def ansatz(n: int, layers: int) -> str:
    import random

    rnd = random.Random(7)
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{n}];"]
    for _ in range(layers):
        lines += [f"ry({rnd.uniform(0, 3.14159):.6f}) q[{q}];" for q in range(n)]
        lines += [f"cx q[{q}],q[{q + 1}];" for q in range(n - 1)]
    lines += [f"ry({rnd.uniform(0, 3.14159):.6f}) q[{q}];" for q in range(n)]
    return "\n".join(lines) + "\n"


def observables(n: int) -> list[str]:
    zz = [f"Z{i} Z{i + 1}" for i in range(5)]
    xs = [f"X{i}" for i in (0, n // 2, n - 1)]
    energy = " + ".join(
        [f"-1.0*Z{i} Z{i + 1}" for i in range(n - 1)] + [f"-0.5*X{i}" for i in range(n)]
    )
    parity = " ".join(f"Z{i}" for i in range(n))
    return [*zz, *xs, energy, parity]


def timed(argv: list[str], env: dict) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", WRAP, *argv], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{proc.stderr[-2000:]}")
    rss = int(proc.stderr.rsplit("maxrss_kib", 1)[1].split()[0])
    return wall, rss * 1024, proc.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qubits", type=int, default=20)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--trajectories", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--largest", default="")
    args = ap.parse_args()
    n, k = args.qubits, args.trajectories
    work = Path(tempfile.mkdtemp(prefix="bench-observables-"))
    arena = Path("/dev/shm") / f"noisefs-bench-obs-{os.getpid()}"
    env = dict(os.environ)
    try:
        circuit = work / f"hea{n}.qasm"
        circuit.write_text(ansatz(n, args.layers))
        out = work / "hea.npz"
        obs_args = [a for spec in observables(n) for a in ("--observable", spec)]
        run_a = [
            sys.executable, "-m", "noisefs", "run", str(circuit), "--trajectories", str(k),
            "--seed", "11", "--snapshots", "final", "--json", "--quiet", "-o", str(out),
            "--arena", str(arena), "--quota", "2GiB", "--spill", str(work / "spill"), *obs_args,
        ]  # fmt: skip
        meta_file = work / "meta.json"
        run_b = [sys.executable, "-c", AER_ESTIMATOR, str(meta_file)]
        walls: dict[str, list[float]] = {"noisefs": [], "aer_estimator": []}
        rss: dict[str, list[int]] = {"noisefs": [], "aer_estimator": []}
        values_b = None
        for rep in range(args.reps):
            out.unlink(missing_ok=True)
            wall, peak, _ = timed(run_a, env)
            walls["noisefs"].append(wall)
            rss["noisefs"].append(peak)
            if rep == 0:
                import numpy as np

                with np.load(out) as data:
                    meta = json.loads(str(data["meta"]))
                    values_a = data["observables"][-1].tolist()
                    stderr_a = data["observables_stderr"][-1].tolist()
                meta_file.write_text(json.dumps(meta))
            wall, peak, stdout = timed(run_b, env)
            walls["aer_estimator"].append(wall)
            rss["aer_estimator"].append(peak)
            values_b = json.loads(stdout.strip().splitlines()[-1])
        diff = max(abs(a - b) for a, b in zip(values_a, values_b, strict=True))
        state_bytes = 16 * 2**n
        figures = {
            "qubits": n,
            "trajectories": k,
            "observables": len(values_a),
            "noisefs_s": statistics.median(walls["noisefs"]),
            "aer_estimator_s": statistics.median(walls["aer_estimator"]),
            "noisefs_peak_rss_mib": max(rss["noisefs"]) / 2**20,
            "aer_estimator_peak_rss_mib": max(rss["aer_estimator"]) / 2**20,
            "state_mib": state_bytes / 2**20,
            "arena_peak_mib": meta["arena"]["peak_bytes"] / 2**20,
            "max_abs_diff": diff,
            "stderr_max": max(stderr_a),
        }
        figures["ratio_time"] = figures["noisefs_s"] / figures["aer_estimator_s"]
        figures["ratio_rss"] = (
            figures["noisefs_peak_rss_mib"] / figures["aer_estimator_peak_rss_mib"]
        )
        print(
            f"{n} qubits, {k} trajectories, {len(values_a)} observables (state {state_bytes / 2**20:.0f} MiB)"
        )
        print(
            f"  noisefs run       {figures['noisefs_s']:7.1f} s  peak RSS {figures['noisefs_peak_rss_mib']:7.0f} MiB  arena peak {figures['arena_peak_mib']:.0f} MiB"
        )
        print(
            f"  Aer estimator     {figures['aer_estimator_s']:7.1f} s  peak RSS {figures['aer_estimator_peak_rss_mib']:7.0f} MiB  (no error bars)"
        )
        print(
            f"  ratio noisefs/Aer {figures['ratio_time']:.2f} (time), {figures['ratio_rss']:.2f} (RSS); values equal to {diff:.1e}; largest stderr {max(stderr_a):.4f}"
        )
        largest = {}
        for m in [int(x) for x in args.largest.split(",") if x]:
            big = work / f"hea{m}.qasm"
            big.write_text(ansatz(m, 1))
            run_big = [
                sys.executable, "-m", "noisefs", "run", str(big), "--trajectories", "20",
                "--seed", "1", "--snapshots", "final", "--quiet", "--no-probabilities",
                "-o", str(work / "big.npz"), "--arena", str(arena), "--quota", "2GiB",
                "--spill", str(work / "spill"), *[a for s in observables(m)[:3] for a in ("--observable", s)],
            ]  # fmt: skip
            wall, peak, _ = timed(run_big, env)
            largest[m] = {"s": wall, "peak_rss_mib": peak / 2**20, "state_mib": 16 * 2**m / 2**20}
            print(
                f"  {m} qubits, 20 trajectories: {wall:.1f} s, peak RSS {peak / 2**20:.0f} MiB (state {16 * 2**m / 2**20:.0f} MiB)"
            )
        figures["largest"] = largest
        print(json.dumps(figures))
        return 0 if diff <= 1e-8 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(arena, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
