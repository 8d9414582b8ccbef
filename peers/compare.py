"""Compare two pytest junit reports (plain and wrapped): counts and the tests that differ.

    python peers/compare.py PLAIN.xml[,PLAIN2.xml...] WRAPPED.xml[,WRAPPED2.xml...] [--scopes F]

Prints the outcome counts of each side, then every test whose outcome differs, with the first
line of its failure message on the side that failed; ``--scopes`` (the plugin's
``--managed-log``) adds what managed did in that test (jobs batched, reasons of pass-through).
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter


def outcomes(paths: list[str]) -> dict[str, tuple[str, str]]:
    """``{test id: (outcome, first line of the message)}`` of the junit files ``paths``."""
    found: dict[str, tuple[str, str]] = {}
    for path in paths:
        for case in ET.parse(path).getroot().iter("testcase"):
            test = f"{case.get('classname')}::{case.get('name')}"
            outcome, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                    message = (node.get("message") or node.text or "").strip().splitlines()
                    message = message[0][:200] if message else ""
                    break
            found[test] = (outcome, message)
    return found


def aligned(plain: dict, wrapped: dict) -> tuple[dict, dict]:
    """The two sides keyed alike: pytest names a class after the rootdir it found, which can
    differ between runs (``aer-main.test.terra...`` against ``test.terra...``); a name found
    on one side only loses leading components while that finds it on the other."""

    def matched(side: dict, other: dict) -> dict:
        out = {}
        for key, value in side.items():
            probe = key
            while probe not in other and "." in probe:
                probe = probe.split(".", 1)[1]
            out[probe if probe in other else key] = value
        return out

    wrapped = matched(wrapped, plain)
    return matched(plain, wrapped), wrapped


def scope_notes(path: str | None) -> dict[str, dict]:
    """The plugin's per-test scope figures, keyed like :func:`outcomes` (class::name)."""
    if not path:
        return {}
    notes = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            module, _, rest = entry["test"].partition("::")
            cls, _, name = rest.rpartition("::")
            key = f"{module.removesuffix('.py').replace('/', '.')}.{cls}::{name}"
            notes[key] = entry
    return notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plain")
    parser.add_argument("wrapped")
    parser.add_argument("--scopes", default=None)
    args = parser.parse_args()
    plain = outcomes(args.plain.split(","))
    wrapped = outcomes(args.wrapped.split(","))
    plain, wrapped = aligned(plain, wrapped)
    notes = scope_notes(args.scopes)
    for name, side in (("plain", plain), ("wrapped", wrapped)):
        counts = Counter(outcome for outcome, _ in side.values())
        print(
            f"{name:8s} {len(side)} tests: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        )
    common = sorted(set(plain) & set(wrapped))
    differ = [t for t in common if plain[t][0] != wrapped[t][0]]
    both_passed = sum(1 for t in common if plain[t][0] == wrapped[t][0] == "passed")
    passed_plain = sum(1 for t in common if plain[t][0] == "passed")
    print(
        f"in both: {len(common)}; passed plain {passed_plain}, of which passed wrapped {both_passed}"
    )
    print(f"differ: {len(differ)}")
    for test in differ:
        (p, pm), (w, wm) = plain[test], wrapped[test]
        print(f"- {test}: plain {p}, wrapped {w}: {wm or pm}")
        note = notes.get(test) or notes.get(test.split(".", 1)[-1])
        if note:
            print(
                f"    managed: batched {note.get('batched_jobs')}, passed through {note.get('passthroughs')}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
