"""Shared fixtures: a private arena root under /dev/shm and a spill dir, removed afterwards."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
QASMBENCH = SHARED / "circuits" / "qasmbench"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _shm_base() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() else Path("/tmp")


@pytest.fixture
def arena_root():
    """A fresh arena root path (not yet created) under /dev/shm; removed after the test."""
    root = _shm_base() / f"noisefs-test-{uuid.uuid4().hex[:12]}"
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def run_kwargs(arena_root, tmp_path):
    """Arena options for noisefs.run that keep a test's data private and small."""
    return {"arena": str(arena_root), "spill": str(tmp_path / "spill"), "quota": "64MiB"}
