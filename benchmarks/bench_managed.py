"""Whole-process benchmark of ``noisefs.managed``: the same Aer job wrapped and unwrapped.

    python benchmarks/bench_managed.py [--quick] [--reps N] [--batch B] [--shots 2000,4000,8000]

Each measurement is a fresh Python process (``subprocess``) that builds the circuit, runs the
job with ``AerSimulator(noise_model=...).run(...)`` (``--mode unwrapped``) or the same call
inside ``with noisefs.managed(...)`` (``--mode wrapped``), and reports its wall time (the
``run(...).result()`` call alone). Its peak RSS is read by this process from the child's own
rusage (``os.wait4``: the whole process, imports and all). Wrapped and unwrapped children run
interleaved; medians are printed.

(a) 10 qubits, per-shot statevector saves at 5 points, 2,000 / 4,000 / 8,000 shots (the
    scenario of issue 15): peak RSS wrapped vs unwrapped, side by side, and their ratio
    (target: wrapped <= 0.25x unwrapped at 8,000 shots, and wrapped flat in shots). The
    children check that the averaged rho of the last save agrees (wrapped: the DensityMatrix
    managed returns; unwrapped: the average of the per-shot states, accumulated one at a
    time). Then the wrapped peak's composition: the process before the job (interpreter,
    imports, circuit, simulator), the averaged results the Result holds (five 16 MiB rho),
    one batch of per-shot states as Aer returns them (the batch the sizer picked x 5 saves x
    16 KiB), and the rest (the arena file of one save's batch, mapped while it is folded; the
    fold's temporaries; modules the first job imports; allocator slack).
(b) 10 qubits, 1,024 shots, ``save_density_matrix`` (Aer averages rho inside the engine): wall
    time, wrapped vs unwrapped (target: wrapped <= 0.3x unwrapped); the two rho must agree to
    1e-8.

``--quick``: 2,000 shots in (a), 256 in (b). The last line is one JSON object with every figure.
Exit status 1 when a check fails or a child fails. Other work on the machine (the development
machine has 2 cores shared with other jobs) slows both sides; the ratios are what to read.
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
import uuid
from pathlib import Path

QUBITS = 10
SAVES = 5


def build_circuit(case: str):
    """10 qubits: layers of rx and a cx chain, with saves at 5 points (a) or one (b)."""
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(QUBITS)
    layers = SAVES if case == "a" else 4
    for layer in range(layers):
        for q in range(QUBITS):
            qc.rx(0.3 + 0.1 * q + 0.05 * layer, q)
        for q in range(QUBITS - 1):
            qc.cx(q, q + 1)
        if case == "a":
            qc.save_statevector(label=f"s{layer}", pershot=True)
    if case == "b":
        qc.save_density_matrix(label="rho")
    return qc


def noise():
    from qiskit_aer.noise import NoiseModel, depolarizing_error, thermal_relaxation_error

    model = NoiseModel()
    model.add_all_qubit_quantum_error(
        depolarizing_error(0.002, 1).compose(thermal_relaxation_error(50e-6, 70e-6, 50e-9)),
        ["rx"],
    )
    model.add_all_qubit_quantum_error(depolarizing_error(0.01, 2), ["cx"])
    return model


def child(case: str, mode: str, shots: int, batch: int, out: str) -> None:
    import resource
    import time

    import numpy as np
    from qiskit_aer import AerSimulator

    import noisefs

    rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    qc = build_circuit(case)
    sim = AerSimulator(noise_model=noise())
    rss_before_job = _vm_rss()
    root = Path("/dev/shm") / f"noisefs-bench-managed-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    try:
        if mode == "wrapped":
            with noisefs.managed(batch=batch, quota="256MiB", root=root):
                result = sim.run(qc, shots=shots, seed_simulator=7).result()
        else:
            result = sim.run(qc, shots=shots, seed_simulator=7).result()
        wall = time.perf_counter() - started
        data = result.data()
        if case == "a":
            last = data[f"s{SAVES - 1}"]
            if mode == "wrapped":
                rho = np.asarray(last)
            else:
                rho = np.zeros((2**QUBITS, 2**QUBITS), dtype=complex)
                for state in last:
                    v = np.asarray(state)
                    rho += np.outer(v, v.conj())
                rho /= len(last)
        else:
            rho = np.asarray(data["rho"])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        held = sum(_array_bytes(value) for value in data.values())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    np.save(out, rho)
    note = result.metadata.get("noisefs", {})
    print(
        json.dumps(
            {
                "wall_s": wall,
                "peak_rss": peak,
                "rss_imports": rss_imports,
                "rss_before_job": rss_before_job,
                "results_bytes": held,
                "batch": note.get("batch"),
                "batches": note.get("batches"),
                "arena_peak_bytes": (note.get("arena") or {}).get("peak_bytes", 0),
                "mode_seen": note.get("mode", "aer"),
            }
        )
    )


def _vm_rss() -> int:
    """This process's resident set now (bytes), from /proc (0 where there is none)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _array_bytes(value) -> int:
    """Bytes of the arrays a Result's data value holds (a per-shot list: all of them)."""
    import numpy as np

    if isinstance(value, list):
        return sum(_array_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_array_bytes(v) for v in value.values())
    data = getattr(value, "data", value)
    return int(data.nbytes) if isinstance(data, np.ndarray) else 0


def run_child(case: str, mode: str, shots: int, batch: int, tmp: Path) -> dict:
    """One fresh process; its peak RSS from its own rusage, read here (``os.wait4``)."""
    out = tmp / f"{case}-{mode}-{uuid.uuid4().hex[:6]}.npy"
    cmd = [sys.executable, __file__, "--child", case, mode, str(shots), str(batch), str(out)]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        stdout = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"child {case}/{mode} failed:\n{tail}")
    figures = json.loads(stdout.strip().splitlines()[-1])
    figures["process_peak_rss"] = usage.ru_maxrss * 1024  # kilobytes on Linux
    figures["rho_path"] = str(out)
    return figures


def composition(wrapped: dict) -> dict:
    """The wrapped child's peak, taken apart (bytes): the process before the job (measured),
    the arrays the Result holds (measured), one batch of per-shot states as Aer returns them
    (the batch the sizer picked x saves x bytes per state), and the rest: the arena file of
    one save's batch (mapped for the put and for the fold), the fold's temporaries, modules
    the first job imports, allocator slack."""
    peak = wrapped["process_peak_rss"]
    parts = {
        "before_job": wrapped["rss_before_job"],
        "results": wrapped["results_bytes"],
        "one_batch_of_states": (wrapped["batch"] or 0) * SAVES * 16 * 2**QUBITS,
    }
    parts["rest"] = peak - sum(parts.values())
    return {"peak": peak, **parts}


def _median_run(case: str, shots: int, batch: int, reps: int, tmp: Path) -> dict:
    """``reps`` interleaved wrapped/unwrapped children; the medians and the first's rho."""
    runs: dict[str, list[dict]] = {"wrapped": [], "unwrapped": []}
    for _ in range(reps):
        for mode in ("wrapped", "unwrapped"):
            runs[mode].append(run_child(case, mode, shots, batch, tmp))
    keys = ("wall_s", "process_peak_rss", "rss_imports", "rss_before_job", "results_bytes")
    med = {
        mode: {key: statistics.median(r[key] for r in rs) for key in keys}
        for mode, rs in runs.items()
    }
    first = runs["wrapped"][0]
    for key in ("batch", "batches", "arena_peak_bytes", "mode_seen"):
        med["wrapped"][key] = first[key]
    med["wrapped"]["composition"] = composition({**first, **med["wrapped"]})
    return {"runs": runs, "median": med}


def _rho_diff(runs: dict) -> float:
    import numpy as np

    rho_w = np.load(runs["wrapped"][0]["rho_path"])
    rho_u = np.load(runs["unwrapped"][0]["rho_path"])
    return float(np.max(np.abs(rho_w - rho_u)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--shots", default=None, help="shot counts of (a), comma-separated")
    parser.add_argument("--only", choices=("a", "b"), default=None)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, mode, shots, batch, out = args.child
        child(case, mode, int(shots), int(batch), out)
        return 0

    if args.shots:
        shots_a = [int(x) for x in args.shots.split(",")]
    else:
        shots_a = [2000] if args.quick else [2000, 4000, 8000]
    shots_b = 256 if args.quick else 1024
    figures: dict = {"cores": os.cpu_count(), "batch": args.batch, "a": {}, "b": None}
    ok = True
    mib = 2**20
    with tempfile.TemporaryDirectory(prefix="bench-managed-") as tmp:
        tmp_path = Path(tmp)
        if args.only in (None, "a"):
            print(
                f"(a) {QUBITS} qubits, {SAVES} per-shot save_statevector, batch={args.batch} "
                "asked; peak RSS of whole processes (MiB)",
                flush=True,
            )
            print(
                f"{'shots':>7} {'wrapped':>8} {'plain':>8} {'ratio':>6}  batch  batches  rho diff"
            )
            for shots in shots_a:
                got = _median_run("a", shots, args.batch, args.reps, tmp_path)
                med, diff = got["median"], _rho_diff(got["runs"])
                ratio = med["wrapped"]["process_peak_rss"] / med["unwrapped"]["process_peak_rss"]
                ok &= diff <= 1e-8 and med["wrapped"]["mode_seen"] == "batched"
                figures["a"][shots] = {**med, "ratio": ratio, "max_abs_rho_diff": diff}
                print(
                    f"{shots:>7} {med['wrapped']['process_peak_rss'] / mib:>8.0f} "
                    f"{med['unwrapped']['process_peak_rss'] / mib:>8.0f} {ratio:>6.3f}  "
                    f"{med['wrapped']['batch']:>5} {med['wrapped']['batches']:>8}  {diff:.1e}  "
                    f"(wall {med['wrapped']['wall_s']:.1f} s vs {med['unwrapped']['wall_s']:.1f} s)",
                    flush=True,
                )
            last = max(shots_a)
            comp = figures["a"][last]["wrapped"]["composition"]
            figures["a_target"] = {"ratio_at": last, "target": 0.25}
            print(f"wrapped peak at {last} shots, taken apart (MiB):")
            for key, value in comp.items():
                print(f"  {key:<20} {value / mib:8.1f}")
        if args.only in (None, "b"):
            got = _median_run("b", shots_b, args.batch, args.reps, tmp_path)
            med, diff = got["median"], _rho_diff(got["runs"])
            ratio = med["wrapped"]["wall_s"] / med["unwrapped"]["wall_s"]
            ok &= diff <= 1e-8 and med["wrapped"]["mode_seen"] == "batched"
            figures["b"] = {**med, "ratio": ratio, "max_abs_rho_diff": diff, "target": 0.3}
            print(
                f"(b) {shots_b} shots, {QUBITS} qubits, save_density_matrix: wrapped "
                f"{med['wrapped']['wall_s']:.2f} s, unwrapped {med['unwrapped']['wall_s']:.2f} s; "
                f"wall ratio {ratio:.3f} (target <= 0.3); max |rho diff| {diff:.1e}",
                flush=True,
            )
    print(json.dumps(figures, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
