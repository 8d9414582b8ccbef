"""``noisefs run`` against the Aer floor, and the time to the first trajectory.

    python benchmarks/bench_floor.py [--reps N] [--python PATH] [--only ghz9,qft7|none]

The **floor** is what no tool built on Aer can beat on this machine: a process that imports
qiskit and qiskit-aer, loads noisefs's own executed circuit (already translated, from the
result's meta), builds the same noise model and runs **one** Aer job of the same K shots
with a per-shot ``save_statevector``, doing nothing with the states. Before timing, a
check run of the floor script averages its states and must equal noisefs's ρ to 1e-8
(same circuit, noise and seeds), or the script exits 1.

Circuits (``--snapshots final``, seed 7): GHZ-9, QFT-7 and a 6-qubit random circuit of
depth 10 at K = 20,000; QFT-10 at K = 2,000; QFT-12 (K = 400) and QFT-14 (K = 40) reported.
Each pair runs interleaved (A F A F ...) as fresh processes; medians of ``--reps`` (3).
Printed per circuit: both walls, the ratio (target <= 1.10) of their medians, the median
and range of each run's ratio to the floor run right after it, the ratio of CPU seconds
(user + sys of all threads: steadier than wall time on a loaded machine) and noisefs's
phases from its
``--json`` timing: start-up (wall minus the run's own clock), prepare (parse, translate,
noise model), Aer (the jobs), store (states into the arena), fold (CPU seconds of the loop's
thread: its wall time mostly waits for Aer, which holds the GIL), result file.

Time to first trajectory: ``noisefs run GHZ-9 -k 1`` from ``Popen`` to its first Aer
Aer job (a ``sitecustomize`` probe), against ``python -c "import qiskit, qiskit_aer"``
(target: + 0.3 s at most). ``--python`` picks the interpreter (e.g. a venv that also holds
qiskit-experiments and qiskit-ibm-runtime); noisefs must be installed in it.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench_run import FIRST_RUN_PROBE  # the sitecustomize probe of Aer's first run

SEED = 7

FLOOR = r"""
import time
started = time.perf_counter()
import json, sys
import qiskit, qiskit_aer
from qiskit import qasm2
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, depolarizing_error, thermal_relaxation_error

qasm, noise, shots, seed, check = sys.argv[1:6]
jobs = int(sys.argv[6]) if len(sys.argv) > 6 else 1  # equal jobs (bench_aer_batches.py)
qc = qasm2.load(qasm, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
qc.save_statevector(pershot=True)
p = json.loads(open(noise).read())
model = NoiseModel(basis_gates=["rz", "sx", "x", "cx"])
relax_1q = thermal_relaxation_error(p["t1_s"], p["t2_s"], p["time_1q_s"])
model.add_all_qubit_quantum_error(depolarizing_error(p["p1"], 1).compose(relax_1q), ["sx", "x"])
relax = thermal_relaxation_error(p["t1_s"], p["t2_s"], p["time_2q_s"])
model.add_all_qubit_quantum_error(depolarizing_error(p["p2"], 2).compose(relax.expand(relax)), ["cx"])
prepared = time.perf_counter()
simulator = AerSimulator(method="statevector", noise_model=model)
states, shots, start = [], int(shots), 0
for j in range(jobs):  # shot i has seed `seed + i` whatever the jobs (noisefs's seed rule)
    size = shots // jobs + (j < shots % jobs)
    result = simulator.run(qc, shots=size, seed_simulator=int(seed) + start).result()
    start += size
    if check != "-":
        states += result.data(0)["statevector"]
print(json.dumps({"prepare_s": prepared - started, "aer_s": time.perf_counter() - prepared}))
if check != "-":
    import numpy as np
    psi = np.stack([np.asarray(s) for s in states])
    np.save(check, psi.T @ psi.conj() / len(psi))
"""


CIRCUITS = {  # name: trajectories
    "ghz9": 20_000,
    "qft7": 20_000,
    "random6": 20_000,
    "qft10": 2_000,
    "qft12": 400,
    "qft14": 40,
}


def circuit_text(name: str) -> str:
    from qiskit import QuantumCircuit, qasm2
    from qiskit.circuit.random import random_circuit
    from qiskit.synthesis.qft import synth_qft_full

    if name.startswith("ghz"):
        n = int(name[3:])
        qc = QuantumCircuit(n)
        qc.h(0)
        for q in range(n - 1):
            qc.cx(q, q + 1)
    elif name.startswith("qft"):
        n = int(name[3:])
        qc = QuantumCircuit(n)
        qc.h(range(n))
        qc.barrier()
        qc.compose(synth_qft_full(n), inplace=True)
    else:
        qc = random_circuit(int(name[6:]), 10, max_operands=2, seed=11)
    return qasm2.dumps(qc)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Runner:
    def __init__(self, python: str, work: Path, arena: Path) -> None:
        self.last_cpu = 0.0  # CPU seconds (user + sys, all threads) of the last child
        self.python = python
        self.work = work
        self.arena = arena
        self.floor = work / "floor.py"
        self.floor.write_text(FLOOR)
        (work / "probe").mkdir()
        (work / "probe" / "sitecustomize.py").write_text(FIRST_RUN_PROBE)

    def timed(self, cmd: list[str], probe: bool = False) -> tuple[float, str, float | None]:
        env = dict(os.environ)
        first = self.work / "first"
        if probe:
            env["NOISEFS_BENCH_FIRST_RUN"] = str(first)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(first.parent / "probe"), env.get("PYTHONPATH")]))  # fmt: skip
        epoch, started, cpu = time.time(), time.perf_counter(), children_cpu()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=self.work)
        wall = time.perf_counter() - started
        self.last_cpu = children_cpu() - cpu
        if done.returncode != 0:
            sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
        first_s = None
        if probe and first.exists():
            first_s = float(first.read_text()) - epoch
            first.unlink()
        return wall, done.stdout, first_s

    def noisefs(self, circuit: Path, k: int, out: Path, probe: bool = False, final: bool = True):
        cmd = [self.python, "-m", "noisefs", "run", str(circuit), "-k", str(k), "--seed", str(SEED),
               "--quiet", "--json", "-o", str(out), "--arena", str(self.arena)]  # fmt: skip
        if final:
            cmd += ["--snapshots", "final"]
        wall, stdout, first_s = self.timed(cmd, probe)
        return wall, json.loads(stdout.strip().splitlines()[-1]), first_s

    def floor_run(
        self, qasm: Path, noise: Path, k: int, check: str = "-", jobs: int = 1
    ) -> tuple[float, dict]:
        """Wall seconds and the floor's own split: imports + circuit + noise model, Aer.
        With ``jobs``, the K shots run as that many equal Aer jobs, one after another."""
        cmd = [self.python, str(self.floor), str(qasm), str(noise), str(k), str(SEED), check,
               str(jobs)]  # fmt: skip
        wall, stdout, _ = self.timed(cmd)
        return wall, json.loads(stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def temporary_runner(python: str, prefix: str) -> Iterator[Runner]:
    """A :class:`Runner` whose arena (on /dev/shm where there is one) and work directory
    are removed when the block ends."""
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    arena_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=shm))
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield Runner(python, work, arena_dir / "arena")
    finally:
        shutil.rmtree(arena_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def phases(summary: dict, wall: float) -> dict:
    t = summary["timing"]
    return {
        "startup": wall - t["total_s"],
        "prepare": t["prepare_s"],
        "aer": t["simulate_s"],
        "store": t["store_s"],
        "fold": t["fold_cpu_s"],  # CPU: its wall time includes waits for Aer's GIL
        "write": t.get("write_s", 0.0),
    }


def prepare_floor(
    runner: Runner, name: str, k: int, jobs: tuple[int, ...] = (1,)
) -> tuple[Path, Path, Path, Path]:
    """Run noisefs once on ``name`` (a warm-up that records its executed circuit and noise)
    and check that the floor script, split into each of ``jobs``, gives its ρ to 1e-8;
    return noisefs's circuit and output, the floor's circuit and noise files."""
    import numpy as np

    circuit = runner.work / f"{name}.qasm"
    circuit.write_text(circuit_text(name))
    out = runner.work / f"{name}.npz"
    runner.noisefs(circuit, k, out)
    with np.load(out) as data:
        meta = json.loads(str(data["meta"]))
        rho = data["rho"][-1] if "rho" in data.files else None
    qasm, noise = runner.work / f"{name}.executed.qasm", runner.work / f"{name}.noise.json"
    qasm.write_text(meta["executed_qasm"])
    noise.write_text(json.dumps(meta["noise"]))
    for count in jobs if rho is not None else ():
        check = runner.work / f"{name}.floor.npy"
        runner.floor_run(qasm, noise, k, str(check), count)
        error = float(np.abs(np.load(check) - rho).max())
        if error > 1e-8:
            sys.exit(f"{name}: the floor's states are not noisefs's (max |Δρ| {error:.2e})")
    return circuit, out, qasm, noise


def compare(runner: Runner, name: str, k: int, reps: int) -> dict:
    circuit, out, qasm, noise = prepare_floor(runner, name, k)
    walls, floors, breakdowns, cpus, floor_cpus, floor_aer = [], [], [], [], [], []
    for _ in range(reps):
        wall, summary, _ = runner.noisefs(circuit, k, out)
        walls.append(wall)
        cpus.append(runner.last_cpu)
        breakdowns.append(phases(summary, wall))
        floor_wall, split = runner.floor_run(qasm, noise, k)
        floors.append(floor_wall)
        floor_cpus.append(runner.last_cpu)
        floor_aer.append(split["aer_s"])
    a, f = statistics.median(walls), statistics.median(floors)
    ac, fc = statistics.median(cpus), statistics.median(floor_cpus)
    aer = statistics.median(floor_aer)
    median_phases = {p: statistics.median(b[p] for b in breakdowns) for p in breakdowns[0]}
    # each noisefs run against the floor run right after it: steadier under drifting load
    pairs = sorted(w / fw for w, fw in zip(walls, floors, strict=True))
    print(f"{name:8s} K={k:6d}  noisefs {a:6.2f} s  floor {f:6.2f} s  ratio {a / f:5.2f}  "
          f"(pairs: median {statistics.median(pairs):.2f}, {pairs[0]:.2f}-{pairs[-1]:.2f})  "
          f"(CPU {ac:.2f} / {fc:.2f} s = {ac / fc:.2f})  | "
          + "  ".join(f"{p} {v:.2f}" for p, v in median_phases.items())
          + f"  | floor: start-up {f - aer:.2f} Aer {aer:.2f}")  # fmt: skip
    return {"k": k, "noisefs_s": a, "floor_s": f, "ratio": a / f, "noisefs_cpu_s": ac,
            "floor_cpu_s": fc, "cpu_ratio": ac / fc, "phases": median_phases,
            "floor_aer_s": aer, "pair_ratios": pairs}  # fmt: skip


def first_trajectory(runner: Runner, reps: int) -> dict:
    circuit = runner.work / "ghz9.qasm"
    circuit.write_text(circuit_text("ghz9"))
    imports, firsts = [], []
    for _ in range(reps):
        imports.append(runner.timed([runner.python, "-c", "import qiskit, qiskit_aer"])[0])
        _, _, first_s = runner.noisefs(circuit, 1, runner.work / "first.npz", probe=True)
        firsts.append(first_s)
    i, f = statistics.median(imports), statistics.median(firsts)
    print(f"first trajectory (GHZ-9, K=1): {f:.2f} s; import qiskit, qiskit_aer: {i:.2f} s; "
          f"difference {f - i:+.2f} s (target <= +0.30)")  # fmt: skip
    return {"first_trajectory_s": f, "import_s": i, "difference_s": f - i}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--python", default=sys.executable, help="interpreter (venv) to run")
    parser.add_argument(
        "--only", default="", help=f"circuits of {', '.join(CIRCUITS)} (or none: start-up only)"
    )
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(CIRCUITS)
    if names == ["none"]:
        names = []
    if unknown := sorted(set(names) - set(CIRCUITS)):
        parser.error(f"--only: unknown circuits {', '.join(unknown)}")
    figures: dict = {"python": args.python, "reps": args.reps, "cpus": os.cpu_count()}
    with temporary_runner(args.python, "noisefs-bench-floor-") as runner:
        print(f"bench_floor: {args.python}, {args.reps} reps, {os.cpu_count()} CPUs")
        figures["first"] = first_trajectory(runner, args.reps)
        for name in names:
            figures[name] = compare(runner, name, CIRCUITS[name], args.reps)
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
