"""An arena usage sampler outside noisefs: ``python tests/usage_sampler.py ROOT OUT``.

Walks ROOT with ``os.scandir`` (no noisefs code, no ledger) as fast as it can, pausing
``--every`` seconds between walks: bytes as ``du`` charges them (``st_blocks * 512`` of
every entry below ROOT) and entries as ``find ROOT | wc -l`` minus one counts them; every
``--du-every``-th sample also runs ``du -s --block-size=1`` and ``find`` themselves. Stops
when OUT's stop file (``OUT.stop``) appears and writes a JSON summary to OUT: samples,
highest bytes and entries seen (scandir and du/find), when, and where (entries and
bytes under each top-level name of ROOT at those samples); the highest without what lies
inside ``inbox/`` (``max_own_*``: what noisefs itself holds, foreign writers' files apart).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time


def walk(root: str, where: dict | None = None) -> tuple[int, int]:
    """(bytes charged, entries) below ``root``; entries vanishing mid-walk are skipped.
    ``where`` receives the entries and bytes under each top-level name."""
    total = entries = 0
    stack = [(root, None)]
    while stack:
        path, top = stack.pop()
        try:
            with os.scandir(path) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    entries += 1
                    total += st.st_blocks * 512
                    name = top or entry.name
                    if where is not None:
                        counts = where.setdefault(name, [0, 0])
                        counts[0] += 1
                        counts[1] += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, name))
        except (FileNotFoundError, NotADirectoryError):
            continue
    return total, entries


def du_find(root: str) -> tuple[int, int]:
    du = subprocess.run(["du", "-s", "--block-size=1", root], capture_output=True, text=True)
    find = subprocess.run(["find", root], capture_output=True, text=True)
    return int(du.stdout.split()[0]), len(find.stdout.splitlines()) - 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("out")
    parser.add_argument("--every", type=float, default=0.002)
    parser.add_argument("--du-every", type=int, default=25)
    args = parser.parse_args()
    stop = args.out + ".stop"
    summary = {"samples": 0, "du_samples": 0, "max_bytes": 0, "max_entries": 0}
    summary.update(du_max_bytes=0, du_max_entries=0, started=time.time())
    with open(args.out + ".ready", "w"):
        pass
    while not os.path.exists(stop):
        where: dict = {}
        used, entries = walk(args.root, where)
        summary["samples"] += 1
        if used > summary["max_bytes"]:
            summary["max_bytes"], summary["max_bytes_at"] = used, time.time()
            summary["max_bytes_where"] = where
        if entries > summary["max_entries"]:
            summary["max_entries"], summary["max_entries_where"] = entries, where
        # what noisefs itself holds: all but the contents of inbox/ (foreign writers' files)
        inbox_entries, inbox_bytes = where.get("inbox", [0, 0])
        own_entries = entries - max(0, inbox_entries - 1)
        summary["max_own_entries"] = max(summary.get("max_own_entries", 0), own_entries)
        summary["max_own_bytes"] = max(summary.get("max_own_bytes", 0), used - inbox_bytes)
        summary["max_inbox_entries"] = max(summary.get("max_inbox_entries", 0), inbox_entries)
        if summary["samples"] % args.du_every == 0:
            used, entries = du_find(args.root)
            summary["du_samples"] += 1
            summary["du_max_bytes"] = max(summary["du_max_bytes"], used)
            summary["du_max_entries"] = max(summary["du_max_entries"], entries)
        time.sleep(args.every)
    summary["stopped"] = time.time()
    with open(args.out + ".tmp", "w") as f:
        json.dump(summary, f)
    os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
