"""``noisefs status``: usage of an arena (bytes, files, free list, spill, peaks, owners, runs).

Creates nothing: for a missing arena it says so and exits 0 (with ``--json``:
``{"root": ..., "exists": false}``), since "no arena yet" is a normal state to report.
"""

from __future__ import annotations

import argparse
import json

from noisefs.units import format_bytes as fb


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "status",
        help="usage of an arena",
        description="Usage of an arena: bytes, files, free list, spill, peaks, owners, runs.",
    )
    parser.add_argument(
        "--arena", metavar="DIR", help="arena root (default /dev/shm/noisefs-<uid>)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def collect(root) -> dict:
    """The status figures of the arena at ``root`` (``exists: false`` when there is none)."""
    from noisefs.arena import Arena, default_root  # lazy: numpy, not at --help

    root = root or default_root()
    try:
        arena = Arena.open_existing(root)
    except FileNotFoundError:
        return {"root": str(root), "exists": False}
    with arena:
        figures = arena.stats()
        live = arena.live_owners()
    from noisefs.daemon.statusfile import read_status  # lazy: the daemon package (watchdog)

    figures["daemon"] = read_status(root)
    figures["exists"] = True
    figures["live_owners"] = len(live)
    figures["owner_pids"] = sorted({o["pid"] for o in live})
    return figures


def _pct(used: int, total: int) -> str:
    return f"{100.0 * used / total:5.1f} %" if total else "  -  "


def _daemon_row(d: dict | None) -> str:
    if not d:
        return "none (`noisefs daemon` polices arenas and ingests <root>/inbox)"
    if not d["running"]:
        return f"not running (last: pid {d.get('pid', '?')}, {d.get('state', '?')})"
    runs = d.get("runs", {})
    ingest = ", ".join(f"{name}: {r['ingested']}" for name, r in sorted(runs.items())) or "none"
    rejected = sum(d.get("counters", {}).get("rejected", {}).values())
    return (
        f"pid {d.get('pid')}, up {d.get('uptime_s', 0):.0f} s, {d.get('mode')}; "
        f"ingested {ingest}; rejected {rejected}"
    )


def render(s: dict) -> str:
    if not s.get("exists"):
        return f"no arena at {s['root']} (nothing to report; it is created on first use)"
    spill_bound = (
        "5 % of its filesystem kept free"
        if s["spill_quota_bytes"] is None
        else fb(s["spill_quota_bytes"])
    )
    rows = [
        ("root", s["root"]),
        ("spill dir", f"{s['spill_dir']} (bound: {spill_bound})"),
        (
            "bytes",
            f"{fb(s['bytes_used'])} of {fb(s['quota_bytes'])}  {_pct(s['bytes_used'], s['quota_bytes'])}"
            f"  (data {fb(s['data_bytes'])}, metadata allowance {fb(s['metadata_bytes'])})",
        ),
        (
            "files",
            f"{s['files_used']} of {s['max_files']}  {_pct(s['files_used'], s['max_files'])}"
            f"  (data {s['data_files']}, metadata {s['metadata_files']})",
        ),
        (
            "free list",
            f"{s['free_files']} files, {fb(s['free_bytes'])} (recycled by the next puts)",
        ),
        (
            "spilled",
            f"{s['spilled_files']} files, {fb(s['spilled_bytes'])} now; "
            f"{s['spilled_total_files']} files, {fb(s['spilled_total_bytes'])} since creation",
        ),
        ("peaks", f"{fb(s['peak_bytes'])}, {s['peak_files']} files"),
        (
            "owners",
            f"{s['live_owners']} live of {s['owners']} registered"
            + (f" (pids {', '.join(map(str, s['owner_pids']))})" if s["owner_pids"] else ""),
        ),
        (
            "unowned",
            f"{s['unowned_snapshots']} snapshots left by handles that closed"
            + (" (`noisefs gc --unowned` drops them)" if s["unowned_snapshots"] else ""),
        ),
    ]
    runs = s["runs"]
    rows.append(
        ("runs", ", ".join(f"{name}: {count}" for name, count in sorted(runs.items())) or "none")
    )
    rows.append(("daemon", _daemon_row(s.get("daemon"))))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(args) -> int:
    figures = collect(args.arena)
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        print(render(figures))
    return 0
