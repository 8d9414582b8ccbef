"""A pytest plugin: every test of any suite runs inside a ``noisefs.managed`` scope.

Loaded with ``-p peers.managed_plugin`` (the repository root on ``PYTHONPATH``); see
``peers/README.md`` for the command that runs qiskit-aer's own ``test/terra`` under it. Not
part of the CI run (``testpaths = ["tests"]``; this folder holds no ``test_*.py``).

The scope wraps the test's call phase (``pytest_runtest_call``: for a ``unittest`` test case
that is ``setUp``, the test and ``tearDown``), with a small batch so that every job of more
than a few shots really runs in several batches. One arena root under ``/dev/shm`` serves
the whole session and is removed at its end. With ``--managed-log FILE`` each test's scope
figures (jobs batched, batches, jobs passed through and why) are written to ``FILE`` as one
JSON line per test, to tell a test whose jobs were batched from one whose jobs all passed
through.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Generator
from pathlib import Path

import pytest

import noisefs

_ROOT_KEY = pytest.StashKey[Path]()
_LOG_KEY = pytest.StashKey[object]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """The plugin's options: batch, quota and the per-test log."""
    group = parser.getgroup("noisefs-managed", "every test inside noisefs.managed")
    group.addoption(
        "--managed-batch",
        type=int,
        default=8,
        help="shots per Aer call inside each test's scope (default 8)",
    )
    group.addoption(
        "--managed-quota",
        default="256MiB",
        help="the scope's arena quota (default 256MiB)",
    )
    group.addoption(
        "--managed-log",
        default=None,
        help="write each test's scope figures to this file, one JSON line per test",
    )


def pytest_configure(config: pytest.Config) -> None:
    """One arena root for the session; the log opened."""
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/tmp")
    config.stash[_ROOT_KEY] = shm / f"noisefs-peers-{uuid.uuid4().hex[:8]}"
    log = config.getoption("managed_log")
    config.stash[_LOG_KEY] = open(log, "a", encoding="utf-8") if log else None  # noqa: SIM115


def pytest_unconfigure(config: pytest.Config) -> None:
    """The session's arena root removed; the log closed."""
    shutil.rmtree(config.stash[_ROOT_KEY], ignore_errors=True)
    log = config.stash[_LOG_KEY]
    if log is not None:
        log.close()


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"noisefs.managed around every test: batch={config.getoption('managed_batch')}, "
        f"quota={config.getoption('managed_quota')}, root={config.stash[_ROOT_KEY]}"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """The test's call phase inside a managed scope (quiet: no progress bars)."""
    config = item.config
    scope_of = noisefs.managed(
        batch=config.getoption("managed_batch"),
        quota=config.getoption("managed_quota"),
        root=config.stash[_ROOT_KEY],
        quiet=True,
    )
    with scope_of as scope:
        try:
            return (yield)
        finally:
            log = config.stash[_LOG_KEY]
            if log is not None:
                figures = {k: v for k, v in scope.stats().items() if k != "arena"}
                log.write(json.dumps({"test": item.nodeid, **figures}, default=str) + "\n")
                log.flush()
