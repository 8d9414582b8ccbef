"""``noisefs gc``: reclaim what dead processes left in an arena (never a live owner's data).

A missing arena has nothing to reclaim: it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json

from noisefs.units import format_bytes


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "gc",
        help="reclaim what dead processes left",
        description="Reclaim what dead processes left in an arena (never a live owner's data).",
    )
    parser.add_argument(
        "--arena", metavar="DIR", help="arena root (default /dev/shm/noisefs-<uid>)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="report what would be reclaimed, change nothing"
    )
    parser.add_argument(
        "--unowned",
        action="store_true",
        help="also drop snapshots that closed handles left unconsumed (no live process "
        "will read them; a consumer that still wants them loses them)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(args) -> int:
    from noisefs.arena import Arena, default_root  # lazy: numpy, not at --help

    root = args.arena or default_root()
    try:
        arena = Arena.open_existing(root)
    except FileNotFoundError:
        report = {"root": str(root), "exists": False}
        print(json.dumps(report) if args.json else f"no arena at {root}: nothing to reclaim")
        return 0
    with arena:
        report = arena.gc(dry_run=args.dry_run, unowned=args.unowned)
    report["root"] = str(root)
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return 0
    verb = "would reclaim" if args.dry_run else "reclaimed"
    print(
        f"{root}: {verb} {format_bytes(report['bytes'])} and {report['files']} inodes: "
        f"{report['dead_owners']} dead owners, {report['partial_files']} partial files, "
        f"{report['snapshots']} snapshots of dead owners, {report['orphan_files']} orphan files, "
        f"{report['missing_files']} rows without a file, {report['lock_files']} stale lock files, "
        f"{report['free_files']} free-list files"
        + (f", {report['unowned_snapshots']} unowned snapshots" if args.unowned else "")
    )
    return 0
