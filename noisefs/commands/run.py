"""``noisefs run CIRCUIT``: simulate, aggregate, write a result file."""

from __future__ import annotations

import argparse
import json
import signal
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "run",
        help="simulate a circuit's noisy trajectories and write averaged density matrices",
        description="Simulate T1/T2 and gate-error trajectories of an OpenQASM 2/3 circuit with Qiskit Aer, "
        "stream the snapshots through a bounded /dev/shm arena and write averaged states to a .npz file.",
    )
    p.add_argument("circuit", help="OpenQASM 2 or 3 file")
    g = p.add_argument_group("simulation")
    g.add_argument(
        "--trajectories",
        "-k",
        default=None,
        metavar="K",
        help="number of trajectories (default 1000)",
    )
    g.add_argument(
        "--seed",
        default=None,
        metavar="S",
        help="trajectory i uses Aer shot seed S+i (default: random, recorded)",
    )
    g.add_argument(
        "--snapshots",
        default="barriers",
        metavar="WHEN",
        help="final | barriers (default) | layers | every:N",
    )
    g.add_argument(
        "--optimize",
        default=None,
        metavar="N",
        help="transpiler optimization level (default 0: every gate you wrote suffers noise)",
    )
    g.add_argument(
        "--target-tol",
        default=None,
        metavar="X",
        help="stop once every <Z_q> standard error is at most X",
    )
    g = p.add_argument_group(
        "noise (defaults: T1 50us, T2 70us, 1q gate 50ns, 2q gate 300ns, p1 1e-3, p2 1e-2)"
    )
    g.add_argument("--t1", default=None, help="T1 relaxation time, e.g. 50us or 50e-6")
    g.add_argument("--t2", default=None, help="T2 dephasing time (at most 2*T1)")
    g.add_argument("--time-1q", default=None, help="duration of sx and x, e.g. 50ns")
    g.add_argument("--time-2q", default=None, help="duration of cx, e.g. 300ns")
    g.add_argument("--p1", default=None, help="1-qubit depolarizing probability")
    g.add_argument("--p2", default=None, help="2-qubit depolarizing probability")
    g.add_argument("--readout", default=None, help="symmetric readout flip probability (default 0)")
    g.add_argument(
        "--calibration",
        default=None,
        metavar="FILE",
        help="JSON or TOML file with per-qubit T1/T2 and per-gate errors",
    )
    g = p.add_argument_group("output")
    g.add_argument(
        "--output",
        "-o",
        default=None,
        metavar="PATH",
        help="result file (default <circuit stem>.noisefs.npz beside the circuit)",
    )
    g.add_argument(
        "--max-dm-qubits",
        default=None,
        metavar="N",
        help="keep full density matrices up to N qubits (default 12)",
    )
    g.add_argument(
        "--keep-qubits",
        default=None,
        metavar="LIST",
        help="keep the reduced density matrix of these qubits, e.g. 0,1,2",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run that writes the same --output",
    )
    g.add_argument(
        "--checkpoint-interval", default=None, metavar="SECONDS",
        help="seconds between checkpoints beside --output (default 5; stretched if writing them is slow)",
    )  # fmt: skip
    g.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no summary")
    g = p.add_argument_group("arena and execution")
    g.add_argument(
        "--arena", default=None, metavar="DIR", help="arena root (default /dev/shm/noisefs-<uid>)"
    )
    g.add_argument(
        "--quota",
        default=None,
        metavar="SIZE",
        help="arena quota, e.g. 512MiB; stored in the arena for every later user "
        "(default: the arena's stored quota, 1GiB for a new arena)",
    )
    g.add_argument(
        "--max-files",
        default=None,
        metavar="N",
        help="arena inode bound; stored like --quota (default: the stored one, 10000 for a new arena)",
    )
    g.add_argument(
        "--spill",
        default=None,
        metavar="DIR",
        help="spill directory (default ~/.cache/noisefs/spill)",
    )
    g.add_argument(
        "--spill-quota",
        default=None,
        metavar="SIZE",
        help="bound of the spill tier (default: leave 5%% of its filesystem free)",
    )
    g.add_argument(
        "--batch",
        default=None,
        metavar="B",
        help="trajectories per Aer job (default: sized to the state)",
    )
    g.add_argument(
        "--workers",
        default=None,
        metavar="W",
        help="local worker processes (default 1: one simulation thread)",
    )
    g.add_argument(
        "--store",
        default=None,
        choices=("factored", "dense"),
        help="snapshot form (default factored: psi; dense: rho)",
    )
    g.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDR",
        help="run batches on a Dask cluster, e.g. tcp://127.0.0.1:8786",
    )
    return p


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    from noisefs.options import default_output, make_options
    from noisefs.pipeline.trajectory import TrajectoryRun
    from noisefs.sim.noise import noise_params

    signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM checkpoints like Ctrl-C
    noise = noise_params(
        t1=args.t1, t2=args.t2, time_1q=args.time_1q, time_2q=args.time_2q,
        p1=args.p1, p2=args.p2, readout=args.readout, calibration=args.calibration,
    )  # fmt: skip
    options = make_options(
        args.circuit,
        trajectories=args.trajectories, seed=args.seed, snapshots=args.snapshots, output=args.output,
        arena_root=args.arena, quota_bytes=args.quota, max_files=args.max_files, spill_dir=args.spill, spill_quota_bytes=args.spill_quota,
        batch=args.batch, workers=args.workers, store=args.store, scheduler=args.scheduler,
        resume=args.resume, optimize=args.optimize, max_dm_qubits=args.max_dm_qubits,
        keep_qubits=args.keep_qubits, target_tol=args.target_tol, checkpoint_interval_s=args.checkpoint_interval,
    )  # fmt: skip
    if options.output is None:
        options = options.replace(output=default_output(options.circuit))
    show_progress = None if not (args.quiet or args.json) else False
    result = TrajectoryRun(options, noise, show_progress=show_progress).execute()
    summary = describe(result)
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    elif not args.quiet:
        print(
            f"{summary['output']}: {summary['trajectories']} trajectories, {summary['num_qubits']} qubits, "
            f"{summary['snapshots']} snapshot(s), seed {summary['seed']}, {summary['timing'].get('total_s', 0):.1f} s"
        )
    return 0


def describe(result) -> dict:
    """The one-object JSON summary that ``noisefs run --json`` prints."""
    import numpy as np

    meta = result.meta
    return {
        "output": str(result.path) if result.path else None,
        "circuit": meta["circuit"],
        "num_qubits": meta["num_qubits"],
        "trajectories": result.trajectories,
        "seed": meta["seed"],
        "snapshots": len(result.steps),
        "steps": [int(s) for s in result.steps],
        "z_mean_final": [float(z) for z in result.z_mean[-1]],
        "z_stderr_max": float(np.max(result.z_stderr)) if result.z_stderr.size else 0.0,
        "purity_final": float(result.purity()[-1]) if result.rho is not None else None,
        "target_tol": meta.get("target_tol"),
        "target_reached": meta.get("target_reached"),
        "arena": meta["arena"],
        "timing": meta.get("timing", {}),
    }
