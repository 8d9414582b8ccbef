"""``noisefs run CIRCUIT``: simulate, aggregate, write a result file."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from noisefs.options import OPTIONS, add_arguments, default_output, make_run


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "run",
        help="simulate a circuit's noisy trajectories and write averaged density matrices",
        description="Simulate T1/T2 and gate-error trajectories of an OpenQASM 2/3 circuit with Qiskit Aer, "
        "stream the snapshots through a bounded /dev/shm arena and write averaged states to a .npz file.",
    )
    p.add_argument("circuit", help="OpenQASM 2 or 3 file")
    add_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no summary")
    return p


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


# presentation flags of the CLI alone (Python callers get the Result and `progress=`)
CLI_ONLY = ("json", "quiet")


def main(args: argparse.Namespace) -> int:
    from noisefs.pipeline.trajectory import TrajectoryRun  # lazy: qiskit, not at --help

    signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM checkpoints like Ctrl-C
    values = {spec.name: getattr(args, spec.name) for spec in OPTIONS}
    options, noise = make_run(Path(args.circuit), **values)  # a CLI argument is a path
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
    import numpy as np  # lazy: not at --help

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
        "observables_final": None
        if result.observable_names is None
        else {
            str(name): [float(result.observables[-1, m]), float(result.observables_stderr[-1, m])]
            for m, name in enumerate(result.observable_names)
        },
        "target_tol": meta.get("target_tol"),
        "target_reached": meta.get("target_reached"),
        "arena": meta["arena"],
        "timing": meta.get("timing", {}),
    }
