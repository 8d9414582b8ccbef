"""Whole-process benchmark of ``noisefs run`` against the plain-Aer ways of doing the same job.

    python benchmarks/bench_run.py [--quick] [--reps N] [--big-reps N] [--skip 1,2,3,4]
                                   [--sweep-sizes 3,5,7,10,12,14] [--sweep-reps N]
                                   [--sweep-scale F]

Every measurement is a fresh Python process (``subprocess``), timed wall-clock by this
script, with the child's peak RSS from GNU ``time -f %M`` (else a tiny wrapper reading
``RUSAGE_CHILDREN``). The contenders of each part run interleaved (A, B, A, B, ...) and medians are
reported. One untimed warm-up of each kind runs first (page cache, compiled bytecode).

1. Main job vs plain Aer: a 10-qubit QFT (H on every qubit, a barrier, ``synth_qft_full``),
   1024 trajectories, seed 7. A = ``noisefs run`` (private arena on /dev/shm); B = the way users
   average with Aer today: the executed circuit noisefs records + the same noise model +
   ``save_density_matrix()``, ``AerSimulator(method="statevector").run(shots=1024,
   seed_simulator=7)``. The two final density matrices must agree to 1e-8 (the contract's
   reproducibility contract); otherwise the script exits 1. Target: noisefs / plain <= 0.2.
2. Peak RSS of ``noisefs run`` at 512 vs 4096 trajectories (target ratio <= 1.2), and of plain
   Aer with ``save_statevector(pershot=True)`` at 512 vs 4096 shots (grows with the shots).
3. Time to accuracy: Aer's exact ``density_matrix`` method vs ``noisefs run --snapshots final``
   with 256 and 1024 trajectories at 10 and 12 qubits: wall times, and noisefs's max-abs error
   and trace distance (0.5 * sum |eig(rho - rho_exact)|) against the exact rho.

4. Size sweep (issue 8): QFT circuits at n = 3, 5, 7, 10, 12, 14 qubits, K trajectories per n
   chosen so a case runs a few seconds (3-20 s on the development machine), seed 7, whole
   processes. A = ``noisefs run C --trajectories K --snapshots final --quiet``; a = the
   minimal script a user would write instead (``MINIMAL_SCRIPT``: load the file, ``transpile``
   to ``rz, sx, x, cx`` at level 0, drop final measurements, the contract's noise model written with
   ``qiskit_aer.noise``, per-shot statevectors in batches, one ``Psi^T Psi*`` per batch, or
   ``sum |Psi|^2`` above ``--max-dm-qubits`` 12 as noisefs does), run first at each of a few
   batch sizes and then at its best one (reported); b = plain Aer ``save_density_matrix``
   averaging of noisefs's executed circuit (its own K where the same K would take too long;
   compared per trajectory; exact 1e-8 check against noisefs where the K is the same).
   Interleaved A a b A a ... Printed per n: wall ratio A/a (target <= 1.05), peak RSS ratio
   A/a (target <= 1.1 at n = 12, 14), A/b per trajectory, and the time to first trajectory of
   A and a: from this script's ``Popen`` to the child's first Aer ``run`` call (a
   ``sitecustomize`` probe on the child's ``PYTHONPATH`` records it; target < 0.8 s for
   noisefs on the 3-qubit case).

``--quick``: 1 rep, 256 trajectories in part 1, 512 vs 2048 in part 2, 8 and 10 qubits in part 3,
and a sweep over 3, 5 and 7 qubits with about a second of trajectories each.
The 12-qubit part of 3 (and part 2) runs ``--big-reps`` times (default 1): those runs take
10-20 s each and their figures (RSS, errors) are deterministic.

The last line printed is one JSON object with every figure. Exit status: 0 when the
reproducibility check holds and every child succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEED = 7
TOL = 1e-8
TARGET_TIME_RATIO = 0.2
TARGET_RSS_RATIO = 1.2
TARGET_SWEEP_WALL = 1.05  # noisefs / the minimal script, every n
TARGET_SWEEP_RSS = 1.1  # noisefs / the minimal script, n = 12 and 14
TARGET_FIRST_TRAJECTORY_S = 0.8  # noisefs, small circuit, from process start
MAX_DM_QUBITS = 12  # noisefs's default --max-dm-qubits: above it no rho, only probabilities
# n -> (K, K for Aer's save_density_matrix or 0 to skip it): about 4-6 s of trajectories each
# on the development machine (Aer per trajectory: 0.05, 0.14, 0.37, 4.9, 25, 130 ms).
SWEEP = {3: (80_000, 80_000), 5: (32_000, 32_000), 7: (12_000, 12_000), 10: (1_000, 400),
         12: (200, 40), 14: (40, 0)}  # fmt: skip
SWEEP_QUICK = {3: (10_000, 10_000), 5: (4_000, 4_000), 7: (1_500, 1_500)}
SCRIPT_BATCHES = (250, 2_000, 10_000)  # the minimal script tries each (capped at K)

# The plain-Aer baseline, run as its own Python process (what a user's script does).
PLAIN_AER = r"""
import json, sys
import numpy as np
from qiskit_aer import AerSimulator
from noisefs.sim.circuit import load_circuit
from noisefs.sim.noise import NoiseParams, build_noise_model

qasm, noise, mode, shots, seed, out = sys.argv[1:7]
shots, seed = int(shots), int(seed)
circuit = load_circuit(qasm)
n = circuit.num_qubits
model = build_noise_model(NoiseParams(**json.loads(open(noise).read())), n)
if mode == "average":      # Aer averages the trajectories itself
    circuit.save_density_matrix()
    sim = AerSimulator(method="statevector", noise_model=model)
    rho = sim.run(circuit, shots=shots, seed_simulator=seed).result().data(0)["density_matrix"]
    rho = np.asarray(rho)
elif mode == "pershot":    # every trajectory's state comes back; the user averages them
    circuit.save_statevector(pershot=True)
    sim = AerSimulator(method="statevector", noise_model=model)
    states = sim.run(circuit, shots=shots, seed_simulator=seed).result().data(0)["statevector"]
    psi = np.stack([np.asarray(s) for s in states])          # (K, 2^n)
    rho = (psi.T @ psi.conj()) / shots                        # sum_k psi_k psi_k^dagger / K
elif mode == "exact":      # the exact density-matrix method, one shot
    circuit.save_density_matrix()
    sim = AerSimulator(method="density_matrix", noise_model=model)
    rho = np.asarray(sim.run(circuit, shots=1, seed_simulator=seed).result().data(0)["density_matrix"])
else:
    sys.exit(f"unknown mode {mode}")
np.save(out, rho)
"""


# The minimal script a user would write instead of noisefs (issue 8), its own Python process.
MINIMAL_SCRIPT = r"""
import sys
import numpy as np
from qiskit import qasm2, transpile
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, depolarizing_error, thermal_relaxation_error

path, k, batch, seed, max_dm, out = sys.argv[1:7]
k, batch, seed, max_dm = int(k), int(batch), int(seed), int(max_dm)
qc = qasm2.load(path, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
qc = transpile(qc, basis_gates=["rz", "sx", "x", "cx"], optimization_level=0, seed_transpiler=1234)
qc.remove_final_measurements()
qc.save_statevector(pershot=True)
n = qc.num_qubits
t1, t2, time_1q, time_2q, p1, p2 = 50e-6, 70e-6, 50e-9, 300e-9, 1e-3, 1e-2
model = NoiseModel(basis_gates=["rz", "sx", "x", "cx"])
relax_1q = thermal_relaxation_error(t1, t2, time_1q)
model.add_all_qubit_quantum_error(depolarizing_error(p1, 1).compose(relax_1q), ["sx", "x"])
relax_2q = thermal_relaxation_error(t1, t2, time_2q).expand(thermal_relaxation_error(t1, t2, time_2q))
model.add_all_qubit_quantum_error(depolarizing_error(p2, 2).compose(relax_2q), ["cx"])
sim = AerSimulator(method="statevector", noise_model=model)
dm = n <= max_dm
total = np.zeros((2**n, 2**n) if dm else 2**n, dtype=complex if dm else float)
for start in range(0, k, batch):
    size = min(batch, k - start)
    states = sim.run(qc, shots=size, seed_simulator=seed + start).result().data(0)["statevector"]
    psi = np.stack([np.asarray(state) for state in states])
    del states
    if dm:
        total += psi.T @ psi.conj()   # sum over the batch of psi psi^dagger, one BLAS call
    else:
        total += (psi.real**2 + psi.imag**2).sum(axis=0)
    del psi
np.save(out, total / k)
"""

# Put on a child's PYTHONPATH: records (epoch seconds) when the child first starts an Aer job
# (AerBackend._execute_circuits_job: what run() submits, and what noisefs calls directly).
FIRST_RUN_PROBE = r"""
import importlib.abc, importlib.util, os, sys, time

_OUT = os.environ.get("NOISEFS_BENCH_FIRST_RUN")
_NAME = "qiskit_aer.backends.aerbackend"


def _wrap(module):
    original = module.AerBackend._execute_circuits_job

    def execute(self, *args, **kwargs):
        if not os.path.exists(_OUT):
            with open(_OUT + ".tmp", "w") as out:
                out.write(repr(time.time()))
            os.replace(_OUT + ".tmp", _OUT)
        return original(self, *args, **kwargs)

    module.AerBackend._execute_circuits_job = execute


class _Probe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _NAME:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_wrap(module):
            exec_module(module)
            _wrap(module)

        spec.loader.exec_module = exec_and_wrap
        return spec


if _OUT:
    sys.meta_path.insert(0, _Probe())
"""

TIME = "/usr/bin/time"  # GNU time: -f %M is the child's peak RSS in KiB
RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


class ChildFailed(RuntimeError):
    pass


def qft_qasm(n: int) -> str:
    """OpenQASM 2 text of H on every qubit, a barrier, then the textbook QFT (deterministic)."""
    from qiskit import QuantumCircuit, qasm2
    from qiskit.synthesis.qft import synth_qft_full

    qc = QuantumCircuit(n)
    qc.h(range(n))
    qc.barrier()
    qc.compose(synth_qft_full(n), inplace=True)
    return qasm2.dumps(qc)


class Bench:
    def __init__(self, work: Path, arena: Path) -> None:
        self.work = work
        self.arena = arena
        self.spill = work / "spill"
        self.spill.mkdir(mode=0o700)
        self.plain = work / "plain_aer.py"
        self.plain.write_text(PLAIN_AER)
        self.minimal = work / "minimal_script.py"
        self.minimal.write_text(MINIMAL_SCRIPT)
        self.probe_dir = work / "probe"
        self.probe_dir.mkdir()
        (self.probe_dir / "sitecustomize.py").write_text(FIRST_RUN_PROBE)
        self.current = None  # the child now running (killed on error)
        self.counter = 0
        exe = Path(sys.executable).with_name("noisefs")
        self.noisefs = [str(exe)] if exe.exists() else [sys.executable, "-m", "noisefs"]
        self.circuits: dict[int, Path] = {}
        self.executed: dict[int, tuple[Path, Path]] = {}

    # -- processes -----------------------------------------------------------------------

    def measure(self, cmd: list[str], what: str, probe: bool = False) -> dict:
        """Run ``cmd`` as a fresh process; wall seconds, peak RSS (MiB) and its stdout.

        With ``probe``, also ``first_run_s``: seconds from just before ``Popen`` to the
        child's first call of Aer's ``run`` (``FIRST_RUN_PROBE``), or None if it made none.

        The peak RSS comes from a small launcher (GNU ``/usr/bin/time -f %M``, else a tiny
        Python wrapper reading ``RUSAGE_CHILDREN``), never from this process's own wait4:
        Linux carries a forked child's RSS high-water mark across ``exec``, so a child forked
        straight from this (large) process would report at least this process's RSS.
        """
        import subprocess

        self.counter += 1
        out_path = self.work / f"child{self.counter}.out"
        err_path = self.work / f"child{self.counter}.err"
        rss_path = self.work / f"child{self.counter}.rss"
        if TIME and os.access(TIME, os.X_OK):
            launcher = [TIME, "-f", "%M", "-o", str(rss_path)]
        else:
            launcher = [sys.executable, "-c", RSS_WRAPPER, str(rss_path)]
        env = None
        first_path = self.work / f"child{self.counter}.first"
        if probe:
            env = dict(os.environ)
            env["NOISEFS_BENCH_FIRST_RUN"] = str(first_path)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(self.probe_dir), env.get("PYTHONPATH")) if p
            )
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            started_epoch = time.time()
            started = time.perf_counter()
            self.current = subprocess.Popen(
                [*launcher, *cmd],
                stdout=out,
                stderr=err,
                cwd=self.work,
                start_new_session=True,
                env=env,
            )
            code = self.current.wait()
            wall = time.perf_counter() - started
            self.current = None
        stdout = out_path.read_text(errors="replace")
        if code != 0:
            raise ChildFailed(
                f"{what} exited {code}:\n$ {' '.join(cmd)}\n{err_path.read_text(errors='replace')[-4000:]}"
            )
        rss_kib = int(rss_path.read_text().split()[-1])
        first_run_s = None
        if probe and first_path.exists():
            first_run_s = float(first_path.read_text()) - started_epoch
            first_path.unlink()
        for path in (out_path, err_path, rss_path):
            path.unlink()
        return {
            "wall_s": wall,
            "rss_mib": rss_kib / 1024,
            "stdout": stdout,
            "first_run_s": first_run_s,
        }

    def kill_current(self) -> None:
        """Kill the child we started (its own session: the launcher and what it runs)."""
        child = self.current
        if child is not None and child.poll() is None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()

    def circuit(self, n: int) -> Path:
        if n not in self.circuits:
            path = self.work / f"qft{n}.qasm"
            path.write_text(qft_qasm(n))
            self.circuits[n] = path
        return self.circuits[n]

    def run_noisefs(
        self, n: int, k: int, out: Path, snapshots: str | None = None, probe: bool = False
    ) -> dict:
        cmd = [*self.noisefs, "run", str(self.circuit(n)), "--trajectories", str(k), "--seed", str(SEED),
               "--quiet", "--json", "-o", str(out), "--arena", str(self.arena), "--spill", str(self.spill)]  # fmt: skip
        if snapshots:
            cmd += ["--snapshots", snapshots]
        result = self.measure(cmd, f"noisefs run (n={n}, K={k})", probe=probe)
        result["summary"] = json.loads(result["stdout"].strip().splitlines()[-1])
        if n not in self.executed:  # record the executed circuit and noise for the baselines
            with np.load(out) as data:
                meta = json.loads(str(data["meta"]))
            qasm = self.work / f"executed{n}.qasm"
            noise = self.work / f"noise{n}.json"
            qasm.write_text(meta["executed_qasm"], encoding="utf-8")
            noise.write_text(json.dumps(meta["noise"]))
            self.executed[n] = (qasm, noise)
        return result

    def run_plain(self, n: int, mode: str, shots: int, out: Path) -> dict:
        qasm, noise = self.executed[n]
        cmd = [
            sys.executable,
            str(self.plain),
            str(qasm),
            str(noise),
            mode,
            str(shots),
            str(SEED),
            str(out),
        ]
        return self.measure(cmd, f"plain Aer {mode} (n={n}, shots={shots})")

    def run_minimal(self, n: int, k: int, batch: int, out: Path) -> dict:
        cmd = [sys.executable, str(self.minimal), str(self.circuit(n)), str(k), str(batch),
               str(SEED), str(MAX_DM_QUBITS), str(out)]  # fmt: skip
        return self.measure(cmd, f"minimal script (n={n}, K={k}, batch {batch})", probe=True)


# -- figures ---------------------------------------------------------------------------------


def final_rho(npz: Path) -> np.ndarray:
    with np.load(npz) as data:
        return np.array(data["rho"][-1])


def trace_distance(a: np.ndarray, b: np.ndarray) -> float:
    diff = a - b
    diff = 0.5 * (diff + diff.conj().T)
    return float(0.5 * np.abs(np.linalg.eigvalsh(diff)).sum())


def med(values) -> float:
    return float(statistics.median(values))


def table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [header] + [[c if isinstance(c, str) else f"{c:.4g}" for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print(
            "  "
            + "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


def walls(results: list[dict]) -> str:
    return " ".join(f"{r['wall_s']:.2f}" for r in results)


# -- the three parts -------------------------------------------------------------------------


def part_main(b: Bench, reps: int, k: int, figures: dict, failures: list[str]) -> None:
    n = 10
    a_runs, b_runs, diffs = [], [], []
    for rep in range(reps):
        a_out, b_out = b.work / f"p1_noisefs_{rep}.npz", b.work / f"p1_plain_{rep}.npy"
        a_runs.append(b.run_noisefs(n, k, a_out))
        b_runs.append(b.run_plain(n, "average", k, b_out))
        diffs.append(float(np.abs(final_rho(a_out) - np.load(b_out)).max()))
        a_out.unlink()
        b_out.unlink()
    a_wall, b_wall = med(r["wall_s"] for r in a_runs), med(r["wall_s"] for r in b_runs)
    ratio = a_wall / b_wall
    timing = {
        key: med(r["summary"]["timing"].get(key, 0.0) for r in a_runs)
        for key in ("prepare_s", "simulate_s", "store_s", "fold_s", "run_s", "write_s", "total_s")
    }
    table(
        f"1. main job: {n}-qubit QFT, {k} trajectories, seed {SEED}, {reps} rep(s), interleaved",
        ["contender", "median wall s", "median peak RSS MiB", "walls s"],
        [
            ["A noisefs run", a_wall, med(r["rss_mib"] for r in a_runs), walls(a_runs)],
            [
                "B plain Aer statevector + save_density_matrix",
                b_wall,
                med(r["rss_mib"] for r in b_runs),
                walls(b_runs),
            ],
        ],
    )
    print(
        "  noisefs's own phases (median s): "
        + ", ".join(f"{key[:-2]} {v:.2f}" for key, v in timing.items())
    )
    worst = max(diffs)
    ok = worst <= TOL
    print(
        f"  max |rho_noisefs - rho_plainAer| = {worst:.3e} (must be <= {TOL:g}): {'OK' if ok else 'FAILED'}"
    )
    print(
        f"  ratio noisefs / plain Aer (baseline: Aer statevector method averaging {k} shots with "
        f"save_density_matrix) = {ratio:.3f}  (target <= {TARGET_TIME_RATIO}: {'met' if ratio <= TARGET_TIME_RATIO else 'MISSED'})"
    )
    if not ok:
        failures.append(f"part 1: max-abs difference {worst:.3e} > {TOL:g}")
    figures["main"] = {
        "num_qubits": n, "trajectories": k, "reps": reps,
        "noisefs_wall_s": a_wall, "plain_aer_wall_s": b_wall, "ratio": ratio,
        "noisefs_walls_s": [r["wall_s"] for r in a_runs], "plain_aer_walls_s": [r["wall_s"] for r in b_runs],
        "noisefs_rss_mib": med(r["rss_mib"] for r in a_runs), "plain_aer_rss_mib": med(r["rss_mib"] for r in b_runs),
        "noisefs_phases_s": timing, "max_abs_diff": worst, "reproducible": ok,
    }  # fmt: skip


def part_rss(
    b: Bench, reps: int, small: int, large: int, figures: dict, failures: list[str]
) -> None:
    n = 10
    runs: dict[str, list[dict]] = {"nf_small": [], "nf_large": [], "ps_small": [], "ps_large": []}
    diffs = []
    for rep in range(reps):
        outs = {
            key: b.work / f"p2_{key}_{rep}.{'npz' if key.startswith('nf') else 'npy'}"
            for key in runs
        }
        runs["nf_small"].append(b.run_noisefs(n, small, outs["nf_small"]))
        runs["nf_large"].append(b.run_noisefs(n, large, outs["nf_large"]))
        runs["ps_small"].append(b.run_plain(n, "pershot", small, outs["ps_small"]))
        runs["ps_large"].append(b.run_plain(n, "pershot", large, outs["ps_large"]))
        for size in ("small", "large"):  # same trajectories either way: a free second oracle
            diffs.append(
                float(np.abs(final_rho(outs[f"nf_{size}"]) - np.load(outs[f"ps_{size}"])).max())
            )
        for path in outs.values():
            path.unlink()
    rss = {key: med(r["rss_mib"] for r in value) for key, value in runs.items()}
    wall = {key: med(r["wall_s"] for r in value) for key, value in runs.items()}
    nf_ratio = rss["nf_large"] / rss["nf_small"]
    ps_ratio = rss["ps_large"] / rss["ps_small"]
    table(
        f"2. peak RSS: {n}-qubit QFT, {small} vs {large} trajectories, {reps} rep(s), interleaved",
        ["contender", "median peak RSS MiB", "median wall s"],
        [
            [f"noisefs run K={small}", rss["nf_small"], wall["nf_small"]],
            [f"noisefs run K={large}", rss["nf_large"], wall["nf_large"]],
            [f"plain Aer pershot statevectors, {small} shots", rss["ps_small"], wall["ps_small"]],
            [f"plain Aer pershot statevectors, {large} shots", rss["ps_large"], wall["ps_large"]],
        ],
    )
    print(
        f"  noisefs RSS ratio K={large} / K={small} (baseline: the same noisefs run at K={small}) = {nf_ratio:.3f}"
        f"  (target <= {TARGET_RSS_RATIO}: {'met' if nf_ratio <= TARGET_RSS_RATIO else 'MISSED'})"
    )
    print(
        f"  plain Aer pershot RSS ratio {large} / {small} shots (contrast; baseline: Aer pershot at {small}) = {ps_ratio:.3f}"
    )
    print(
        f"  wall noisefs / Aer pershot (baseline: Aer pershot + one-BLAS average): K={small} "
        f"{wall['nf_small'] / wall['ps_small']:.2f}, K={large} {wall['nf_large'] / wall['ps_large']:.2f}"
    )
    worst = max(diffs)
    ok = worst <= TOL
    print(
        f"  max |rho_noisefs - rho_pershot average| = {worst:.3e} (must be <= {TOL:g}): {'OK' if ok else 'FAILED'}"
    )
    if not ok:
        failures.append(f"part 2: noisefs differs from the pershot average by {worst:.3e}")
    figures["rss"] = {
        "num_qubits": n, "small": small, "large": large, "reps": reps,
        "noisefs_rss_mib": {str(small): rss["nf_small"], str(large): rss["nf_large"]},
        "noisefs_rss_ratio": nf_ratio,
        "pershot_rss_mib": {str(small): rss["ps_small"], str(large): rss["ps_large"]},
        "pershot_rss_ratio": ps_ratio,
        "noisefs_wall_s": {str(small): wall["nf_small"], str(large): wall["nf_large"]},
        "pershot_wall_s": {str(small): wall["ps_small"], str(large): wall["ps_large"]},
        "max_abs_diff_vs_pershot": worst,
    }  # fmt: skip


def part_accuracy(b: Bench, n: int, reps: int, ks: tuple[int, ...], figures: dict) -> None:
    runs: dict[str, list[dict]] = {**{f"nf{k}": [] for k in ks}, "exact": []}
    errors: dict[int, dict] = {}
    for rep in range(reps):
        outs = {k: b.work / f"p3_n{n}_K{k}_{rep}.npz" for k in ks}
        for k in ks:
            runs[f"nf{k}"].append(b.run_noisefs(n, k, outs[k], snapshots="final"))
        exact_out = b.work / f"p3_n{n}_exact_{rep}.npy"
        runs["exact"].append(b.run_plain(n, "exact", 1, exact_out))
        if rep == 0:  # the errors are deterministic (fixed seed): measure them once
            exact = np.load(exact_out)
            for k in ks:
                rho = final_rho(outs[k])
                errors[k] = {
                    "max_abs": float(np.abs(rho - exact).max()),
                    "trace_distance": trace_distance(rho, exact),
                }
                del rho
            del exact
        for path in [*outs.values(), exact_out]:
            path.unlink()
    wall = {key: med(r["wall_s"] for r in value) for key, value in runs.items()}
    rss = {key: med(r["rss_mib"] for r in value) for key, value in runs.items()}
    rows = [["Aer density_matrix (exact)", wall["exact"], rss["exact"], "0", "0", "1"]]
    for k in ks:
        rows.append([f"noisefs run --snapshots final K={k}", wall[f"nf{k}"], rss[f"nf{k}"],
                     f"{errors[k]['max_abs']:.2e}", f"{errors[k]['trace_distance']:.3f}",
                     f"{wall[f'nf{k}'] / wall['exact']:.2f}"])  # fmt: skip
    table(
        f"3. time to accuracy: {n}-qubit QFT, {reps} rep(s), interleaved (baseline of 'vs exact': Aer density_matrix method)",
        [
            "contender",
            "median wall s",
            "peak RSS MiB",
            "max-abs err",
            "trace dist",
            "wall vs exact",
        ],
        rows,
    )
    figures.setdefault("accuracy", {})[str(n)] = {
        "reps": reps,
        "exact_wall_s": wall["exact"],
        "exact_rss_mib": rss["exact"],
        **{
            f"noisefs_K{k}": {
                "wall_s": wall[f"nf{k}"],
                "rss_mib": rss[f"nf{k}"],
                **errors[k],
                "ratio_vs_exact": wall[f"nf{k}"] / wall["exact"],
            }
            for k in ks
        },
    }


def _probabilities(path: Path) -> np.ndarray:
    """Final probabilities from a noisefs result (``.npz``) or a script's average (``.npy``)."""
    if path.suffix == ".npz":
        with np.load(path) as data:
            return np.array(data["probabilities"][-1])
    value = np.load(path)
    return np.real(np.diag(value)) if value.ndim == 2 else value


def _first(runs: list[dict]) -> float | None:
    values = [r["first_run_s"] for r in runs if r["first_run_s"] is not None]
    return med(values) if values else None


def part_sweep(
    b: Bench,
    plan: dict[int, tuple[int, int]],
    reps: int,
    figures: dict,
    failures: list[str],
) -> None:
    """4. noisefs vs the minimal script vs Aer's own averaging over circuit sizes."""
    rows, out = [], {}
    for n, (k, k_dm) in plan.items():
        batches = sorted({min(k, size) for size in SCRIPT_BATCHES})
        nf_runs: list[dict] = []
        by_batch: dict[int, list[dict]] = {size: [] for size in batches}
        dm_runs: list[dict] = []
        best = batches[-1]
        p_diff = dm_diff = None
        for rep in range(reps):
            nf_out = b.work / f"p4_n{n}_noisefs_{rep}.npz"
            nf_runs.append(b.run_noisefs(n, k, nf_out, snapshots="final", probe=True))
            for size in batches if rep == 0 else [best]:
                script_out = b.work / f"p4_n{n}_script_{rep}_{size}.npy"
                by_batch[size].append(b.run_minimal(n, k, size, script_out))
                if p_diff is None:  # same physics, other trajectories: a sanity bound
                    p_diff = float(
                        np.abs(_probabilities(nf_out) - _probabilities(script_out)).max()
                    )
                script_out.unlink()
            if rep == 0:
                best = min(batches, key=lambda size: by_batch[size][0]["wall_s"])
            if k_dm and (rep == 0 or k_dm == k):
                dm_out = b.work / f"p4_n{n}_aerdm_{rep}.npy"
                dm_runs.append(b.run_plain(n, "average", k_dm, dm_out))
                if k_dm == k and n <= MAX_DM_QUBITS and dm_diff is None:
                    dm_diff = float(np.abs(final_rho(nf_out) - np.load(dm_out)).max())
                    if dm_diff > TOL:
                        failures.append(
                            f"part 4: n={n} noisefs differs from Aer's average by {dm_diff:.3e}"
                        )
                dm_out.unlink()
            nf_out.unlink()
        script_runs = by_batch[best]
        nf_wall, sc_wall = med(r["wall_s"] for r in nf_runs), med(r["wall_s"] for r in script_runs)
        nf_rss, sc_rss = med(r["rss_mib"] for r in nf_runs), med(r["rss_mib"] for r in script_runs)
        wall_ratio, rss_ratio = nf_wall / sc_wall, nf_rss / sc_rss
        dm_wall = med(r["wall_s"] for r in dm_runs) if dm_runs else None
        per_traj = (nf_wall / k) / (dm_wall / k_dm) if dm_runs else None
        nf_first, sc_first = _first(nf_runs), _first([r for v in by_batch.values() for r in v])
        prepare_s = med(r["summary"]["timing"].get("prepare_s", 0.0) for r in nf_runs)
        rows.append([
            str(n), str(k), nf_wall, f"{sc_wall:.3g} (B={best})", f"{wall_ratio:.3f}",
            nf_rss, sc_rss, f"{rss_ratio:.3f}",
            f"{dm_wall:.3g} (K={k_dm})" if dm_runs else "skipped",
            f"{per_traj:.3f}" if per_traj is not None else "-",
            f"{nf_first:.2f}" if nf_first is not None else "-",
            f"{sc_first:.2f}" if sc_first is not None else "-",
        ])  # fmt: skip
        out[str(n)] = {
            "trajectories": k, "reps": reps,
            "noisefs_wall_s": nf_wall, "noisefs_walls_s": [r["wall_s"] for r in nf_runs],
            "script_wall_s": sc_wall, "script_best_batch": best,
            "script_walls_by_batch_s": {str(size): [r["wall_s"] for r in v] for size, v in by_batch.items()},
            "wall_ratio": wall_ratio,
            "noisefs_rss_mib": nf_rss, "script_rss_mib": sc_rss, "rss_ratio": rss_ratio,
            "aer_dm_trajectories": k_dm, "aer_dm_wall_s": dm_wall,
            "noisefs_vs_aer_dm_per_trajectory": per_traj, "max_abs_diff_vs_aer_dm": dm_diff,
            "max_abs_prob_diff_vs_script": p_diff,
            "noisefs_first_trajectory_s": nf_first, "script_first_trajectory_s": sc_first,
            "noisefs_prepare_s": prepare_s,
        }  # fmt: skip
    table(
        f"4. size sweep: QFT, --snapshots final, seed {SEED}, {reps} rep(s), interleaved "
        "(A noisefs, a minimal script at its best batch B, b Aer save_density_matrix)",
        ["n", "K", "A wall s", "a wall s", "A/a", "A RSS MiB", "a RSS MiB", "A/a RSS",
         "b wall s", "A/b per traj", "A 1st traj s", "a 1st traj s"],
        rows,
    )  # fmt: skip
    for n, fig in out.items():
        wall_ok = fig["wall_ratio"] <= TARGET_SWEEP_WALL
        line = f"  n={n}: wall A/a {fig['wall_ratio']:.3f} (target <= {TARGET_SWEEP_WALL}: {'met' if wall_ok else 'MISSED'})"
        if int(n) in (12, 14):
            rss_ok = fig["rss_ratio"] <= TARGET_SWEEP_RSS
            line += f"; RSS A/a {fig['rss_ratio']:.3f} (target <= {TARGET_SWEEP_RSS}: {'met' if rss_ok else 'MISSED'})"
        if fig["max_abs_diff_vs_aer_dm"] is not None:
            line += f"; max |rho_A - rho_b| {fig['max_abs_diff_vs_aer_dm']:.1e}"
        line += f"; max |p_A - p_a| {fig['max_abs_prob_diff_vs_script']:.1e} (other trajectories)"
        print(line)
    smallest = min(out, key=int)
    first = out[smallest]["noisefs_first_trajectory_s"]
    if first is not None:
        ok = first < TARGET_FIRST_TRAJECTORY_S
        print(
            f"  time to first trajectory, noisefs, {smallest} qubits: {first:.2f} s from process "
            f"start (target < {TARGET_FIRST_TRAJECTORY_S}: {'met' if ok else 'MISSED'}); "
            f"the minimal script: {out[smallest]['script_first_trajectory_s']:.2f} s; "
            f"noisefs prepare phase {out[smallest]['noisefs_prepare_s']:.3f} s"
        )
    figures["sweep"] = out


# -- main ------------------------------------------------------------------------------------


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1 rep, smaller sizes (about 2 minutes)"
    )
    parser.add_argument(
        "--reps", type=int, default=None, help="interleaved repetitions (default 3; --quick 1)"
    )
    parser.add_argument(
        "--big-reps",
        type=int,
        default=1,
        help="repetitions of part 2 and of the largest part-3 size (default 1)",
    )
    parser.add_argument("--skip", default="", help="parts to skip, e.g. 2,3")
    parser.add_argument(
        "--sweep-sizes",
        default=None,
        help=f"qubit counts of part 4 (default {','.join(map(str, SWEEP))}; --quick "
        f"{','.join(map(str, SWEEP_QUICK))})",
    )
    parser.add_argument(
        "--sweep-reps", type=int, default=None, help="reps of part 4 (default 2; --quick 1)"
    )
    parser.add_argument(
        "--sweep-scale",
        type=float,
        default=1.0,
        help="multiply part 4's trajectory counts (e.g. 0.1 for a smoke run of large n)",
    )
    args = parser.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    big_reps = min(args.big_reps, reps)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    k_main = 256 if args.quick else 1024
    rss_sizes = (512, 2048) if args.quick else (512, 4096)
    acc_sizes = (8, 10) if args.quick else (10, 12)
    plan = SWEEP_QUICK if args.quick else SWEEP
    if args.sweep_sizes:
        sizes = [int(x) for x in args.sweep_sizes.split(",") if x.strip()]
        unknown = [n for n in sizes if n not in {**SWEEP, **SWEEP_QUICK}]
        if unknown:
            parser.error(f"--sweep-sizes: no plan for {unknown}; choose from {sorted(SWEEP)}")
        plan = {n: plan.get(n, SWEEP.get(n) or SWEEP_QUICK[n]) for n in sizes}
    sweep_reps = args.sweep_reps or (1 if args.quick else 2)
    if args.sweep_scale != 1.0:
        plan = {
            n: (
                max(1, round(k * args.sweep_scale)),
                k_dm and max(1, round(k_dm * args.sweep_scale)),
            )
            for n, (k, k_dm) in plan.items()
        }

    shm = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    shm_root = Path(tempfile.mkdtemp(prefix="noisefs-bench-run-", dir=shm))
    work = Path(tempfile.mkdtemp(prefix="noisefs-bench-run-"))
    bench = Bench(work, shm_root / "arena")
    figures: dict = {
        "quick": args.quick,
        "reps": reps,
        "big_reps": big_reps,
        "cpus": os.cpu_count(),
    }
    failures: list[str] = []
    previous = signal.signal(signal.SIGTERM, _interrupt)
    started = time.perf_counter()
    try:
        print(f"noisefs bench_run: {'quick' if args.quick else 'full'}, {reps} rep(s), {os.cpu_count()} CPUs, "
              f"arena {bench.arena}, work dir {work}")  # fmt: skip
        # untimed warm-ups (also record the executed 10-qubit circuit for the baselines)
        warm = work / "warmup.npz"
        bench.run_noisefs(10, 8, warm)
        bench.run_plain(10, "average", 8, work / "warmup.npy")
        warm.unlink()
        (work / "warmup.npy").unlink()
        if "1" not in skip:
            part_main(bench, reps, k_main, figures, failures)
        if "2" not in skip:
            part_rss(bench, big_reps, *rss_sizes, figures, failures)
        if "3" not in skip:
            for n in acc_sizes:
                part_accuracy(
                    bench, n, big_reps if n == max(acc_sizes) else reps, (256, 1024), figures
                )
        if "4" not in skip:
            part_sweep(bench, plan, sweep_reps, figures, failures)
    except ChildFailed as exc:
        failures.append(str(exc))
        print(f"\nFAILED: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        failures.append("interrupted")
        print("\ninterrupted", file=sys.stderr)
    finally:
        bench.kill_current()
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(shm_root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    figures["elapsed_s"] = time.perf_counter() - started
    figures["failures"] = failures
    figures["ok"] = not failures
    print(
        f"\ntotal {figures['elapsed_s']:.0f} s; {'OK' if not failures else 'FAILED: ' + '; '.join(f.splitlines()[0] for f in failures)}"
    )
    print(json.dumps(figures, sort_keys=True))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
