"""Fixtures and outside-the-arena measuring helpers shared by the arena tests (no tests here).

Measurements use ``du`` and ``find`` as a user would, never the arena's own code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from noisefs.arena import Arena


def du_bytes(root) -> int:
    out = subprocess.run(["du", "-s", "--block-size=1", str(root)], capture_output=True, text=True)
    # du may complain about files vanishing mid-walk while others write; the total still counts
    return int(out.stdout.split()[0])


def inode_count(root) -> int:
    out = subprocess.run(["find", str(root)], capture_output=True, text=True)
    return len(out.stdout.splitlines()) - 1


def data_files(root) -> list[str]:
    return sorted(os.listdir(Path(root) / "data"))


def listing(path) -> list[str]:
    """Entries of ``path``; [] when it does not exist (the spill dir is made on first use)."""
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


@pytest.fixture
def shm_root():
    """A fresh arena root under /dev/shm (not created); removed afterwards."""
    root = Path("/dev/shm") / f"noisefs-test-{uuid.uuid4().hex[:12]}"
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def spill(tmp_path):
    path = tmp_path / "spill"
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_arena(shm_root, spill):
    """Factory: ``make_arena(quota=..., ...)`` opens an Arena on the test's root; closes all."""
    opened: list[Arena] = []

    def make(**kwargs):
        kwargs.setdefault("quota", "16MiB")
        kwargs.setdefault("max_files", 100)
        kwargs.setdefault("spill_dir", spill)
        kwargs.setdefault("timeout_s", 2.0)
        arena = Arena(kwargs.pop("root", shm_root), **kwargs)
        opened.append(arena)
        return arena

    yield make
    for arena in opened:
        try:
            arena.close()
        except Exception:  # noqa: BLE001 - best effort cleanup; the test already reported
            pass
