"""``noisefs inspect RESULT``: summarise or plot a result file."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tokenize
import zipfile

from noisefs.atomic import atomic_write, check_writable, writing
from noisefs.errors import InputError
from noisefs.npzcheck import verify_npz
from noisefs.plotting import require_matplotlib, result_figure

MAX_QUBITS_SHOWN = 8


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "inspect",
        help="summarise or plot a result file",
        description="Print a summary of a noisefs result file, or plot purity and <Z_q> per snapshot step.",
    )
    p.add_argument("result", help="a .noisefs.npz file written by noisefs run")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--plot",
        metavar="PNG",
        default=None,
        help="write a plot of <Z_q>, purity and the observables, each ± stderr",
    )
    return p


# what zipfile and numpy's header parser raise for other damaged bytes (a flipped bit in a
# zip header: an unknown compression method or version, the "encrypted" flag)
DAMAGED = (
    EOFError, NotImplementedError, RuntimeError, tokenize.TokenError, SyntaxError, MemoryError,
)  # fmt: skip


def load_result(path: str):
    from noisefs.result import Result  # lazy: numpy, not at --help

    try:
        verify_npz(path)  # a flipped byte anywhere, not only in the members read
        return Result.load(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except KeyError:
        raise InputError(f"{path}: not a noisefs result file (an array is missing)") from None
    except (ValueError, OSError, zipfile.BadZipFile, json.JSONDecodeError) + DAMAGED:
        # numpy's own message for a non-npz file suggests allow_pickle: never repeat that
        raise InputError(
            f"{path}: not a noisefs result file (expected the .npz that `noisefs run` writes)"
        ) from None


def summary(result) -> dict:
    meta = result.meta
    purity = result.purity()
    rows = []
    for i, step in enumerate(result.steps):
        rows.append(
            {
                "step": int(step),
                "purity": None if purity is None else float(purity[i]),
                "z_mean": [float(z) for z in result.z_mean[i]],
                "z_stderr": [float(z) for z in result.z_stderr[i]],
            }
        )
        if result.observable_names is not None:
            rows[-1]["observables"] = {
                str(name): [float(result.observables[i, m]), float(result.observables_stderr[i, m])]
                for m, name in enumerate(result.observable_names)
            }
    return {
        "file": str(result.path),
        "circuit": meta.get("circuit"),
        "num_qubits": result.num_qubits,
        "trajectories": result.trajectories,
        "seed": meta.get("seed"),
        "noise": meta.get("noise"),
        "density": meta.get("density", "full" if result.rho is not None else "none"),
        "versions": meta.get("versions"),
        "arena": meta.get("arena"),
        "timing": meta.get("timing"),
        "snapshots": rows,
    }


def print_table(info: dict) -> None:
    noise = info["noise"] or {}
    print(f"{info['file']}")
    print(f"  circuit       {info['circuit']} ({info['num_qubits']} qubits)")
    print(f"  trajectories  {info['trajectories']}  seed {info['seed']}")
    if noise.get("kind") == "noise_model":
        print(
            f"  noise         an Aer NoiseModel: {len(noise['quantum_errors'])} gate error(s), "
            f"{len(noise['readout_errors'])} readout error(s), basis {', '.join(noise['basis_gates'])}"
        )
    elif noise:
        print(
            f"  noise         T1 {noise['t1_s'] * 1e6:g} us  T2 {noise['t2_s'] * 1e6:g} us  "
            f"1q {noise['time_1q_s'] * 1e9:g} ns  2q {noise['time_2q_s'] * 1e9:g} ns  "
            f"p1 {noise['p1']:g}  p2 {noise['p2']:g}  readout {noise['readout']:g}"
            + ("  (per-qubit calibration)" if noise.get("per_qubit") else "")
        )
    shown = min(info["num_qubits"], MAX_QUBITS_SHOWN)
    header = f"  {'step':>6} {'purity':>8} " + " ".join(
        f"{'<Z' + str(q) + '>':>15}" for q in range(shown)
    )
    print(header)
    for row in info["snapshots"]:
        purity = "-" if row["purity"] is None else f"{row['purity']:.4f}"
        cells = " ".join(f"{row['z_mean'][q]:+.4f}±{row['z_stderr'][q]:.4f}" for q in range(shown))
        print(f"  {row['step']:>6} {purity:>8} {cells}")
    if info["num_qubits"] > shown:
        print(f"  ({info['num_qubits'] - shown} more qubits in --json)")
    observed = info["snapshots"][0].get("observables") if info["snapshots"] else None
    if observed:
        print(f"  {'step':>6} " + " ".join(f"{name[:18]:>19}" for name in observed))
        for row in info["snapshots"]:
            cells = " ".join(f"{m:+.4f}±{e:.4f}".rjust(19) for m, e in row["observables"].values())
            print(f"  {row['step']:>6} {cells}")
    if info["density"] == "reduced":
        print("  (purity of the reduced state of the kept qubits)")


def plot(result, path: str) -> None:
    """Write ``result``'s picture (:func:`noisefs.plotting.result_figure`) to ``path``, in
    the image format its extension names."""
    require_matplotlib("--plot")  # MissingExtra, an InputError: exit 2 with the pip line
    # lazy: matplotlib, an optional extra, only for --plot
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: as above

    image_format = os.path.splitext(path)[1].lstrip(".").lower()
    formats = FigureCanvasAgg.get_supported_filetypes()
    if image_format not in formats:
        raise InputError(
            f"--plot {path}: cannot tell the image format from its extension; use one of "
            + ", ".join(f".{name}" for name in sorted(formats))
        )
    fig = result_figure(result)
    try:
        with writing(path, "plot"), atomic_write(path) as handle:
            fig.savefig(handle, format=image_format, dpi=100)
    finally:
        plt.close(fig)


def main(args: argparse.Namespace) -> int:
    result = load_result(args.result)
    info = summary(result)
    if args.plot:
        check_writable(args.plot, "--plot")
        plot(result, args.plot)
    if args.json:
        json.dump(info, sys.stdout)
        sys.stdout.write("\n")
    else:
        print_table(info)
        if args.plot:
            print(f"  plot written to {args.plot}")
    return 0
