"""Shared fixtures: a private arena root under /dev/shm and a spill dir, removed afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the processes tests start, even when the suite itself was started in
    the background (``cmd &`` in a script starts it with SIGINT ignored, and an ignored
    signal stays ignored across exec: the Ctrl-C tests would then test nothing)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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


@contextlib.contextmanager
def mounted_tmpfs(options: str):
    """A real tmpfs mounted with ``options`` (e.g. ``size=8m,nr_inodes=32``) for the test;
    skips the test where it cannot be mounted (not root, no mount permission)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = Path("/tmp") / f"noisefs-mnt-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"{options},mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        shutil.rmtree(mnt, ignore_errors=True)
