"""``noisefs daemon``: police arenas and ingest foreign snapshot files until SIGTERM/SIGINT.

Exit codes: 0 after SIGTERM/SIGINT (everything held is checkpointed and written), 2 for a
bad config or option, 3 when another daemon already polices an arena or an arena path is
unsafe.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "daemon",
        help="long-running policing of arenas and ingest of foreign snapshot files",
        description="Police arenas (reclaim dead owners' data, move cold snapshots to spill "
        "under pressure) and fold .npy files written into <arena>/inbox/<run>/<step>/ into "
        "averaged density matrices, written to <results>/<run>.npz when <run>/DONE appears. "
        "Runs until SIGTERM or SIGINT; SIGHUP rereads --config. See docs/daemon.md.",
    )
    parser.add_argument(
        "--arena",
        action="append",
        default=[],
        metavar="DIR",
        help="arena root to police (repeatable; default: the config's, else "
        "/dev/shm/noisefs-<uid>)",
    )
    parser.add_argument("--quota", metavar="SIZE", help="byte bound of every arena (e.g. 2GiB)")
    parser.add_argument("--max-files", type=int, metavar="N", help="inode bound of every arena")
    parser.add_argument("--spill", metavar="DIR", help="spill directory of every arena")
    parser.add_argument(
        "--results",
        metavar="DIR",
        help="where <run>.npz results go (default ~/.local/share/noisefs/results)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT (needs noisefs[metrics])",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML config (reread on SIGHUP)")
    return parser


def main(args) -> int:
    # one ingest thread: BLAS thread pools only contend with it (a 256 x 64 ZHERK takes
    # 1.5 ms on one thread, 25 ms with OpenBLAS's threads on a busy 2-core machine)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from noisefs.daemon import load_config, run_daemon  # lazy: numpy, watchdog: not at --help

    overrides = {
        "arenas": args.arena,
        "quota": args.quota,
        "max_files": args.max_files,
        "spill": args.spill,
        "results": args.results,
        "metrics_port": args.metrics_port,
    }
    cfg = load_config(args.config, overrides)
    if getattr(args, "debug", False):
        cfg = replace(cfg, log_level="debug")
    return run_daemon(cfg, args.config, overrides)
