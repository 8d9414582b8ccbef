"""Helpers for the daemon tests: real daemon processes, their config, waits, writers.

Every process started here is killed (its whole session) when the test ends, pass or fail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from noisefs.daemon.statusfile import read_status

FAST = {
    "scan_interval_s": 0.5,
    "status_interval_s": 0.1,
    "checkpoint_interval_s": 0.2,
    "gc_interval_s": 0.5,
    "police_interval_s": 0.2,
    "settle_s": 1.0,
    "done_grace_s": 2.0,
}


def write_config(path: Path, root: Path, results: Path, arena: dict | None = None, **top) -> Path:
    """A TOML config for one arena with the fast test timings."""
    lines = [f'results = "{results}"']
    for key, value in {**FAST, **top}.items():
        lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
    lines += ["[[arena]]", f'root = "{root}"']
    for key, value in (arena or {}).items():
        lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value!r}")
    path.write_text("\n".join(lines) + "\n")
    return path


class Daemons:
    """Starts ``python -m noisefs daemon`` processes and kills them all at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, env: dict | None = None, log: str = "daemon.log"):
        err = open(self.tmp / log, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "noisefs", "daemon", *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            # checkpoints default to $XDG_STATE_HOME: keep them in the test's directory
            env={**os.environ, "XDG_STATE_HOME": str(self.tmp / "state"), **(env or {})},
            start_new_session=True,
        )
        proc.log_path = self.tmp / log  # type: ignore[attr-defined]
        proc.log_file = err  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            proc.log_file.close()  # type: ignore[attr-defined]


def daemons_fixture(tmp_path: Path):
    """Body of each test module's ``daemons`` fixture (``yield from`` it)."""
    d = Daemons(tmp_path)
    try:
        yield d
    finally:
        d.kill_all()


def log_text(proc) -> str:
    return Path(proc.log_path).read_text(errors="replace")


def wait_for(pred, timeout: float = 15.0, what: str = "condition", proc=None):
    """Poll ``pred`` until it returns a true value; fail with the daemon's log if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"daemon exited {proc.returncode} waiting for {what}:\n{log_text(proc)}")
        time.sleep(0.05)
    extra = f"\n{log_text(proc)}" if proc is not None else ""
    pytest.fail(f"timed out after {timeout} s waiting for {what}{extra}")


def wait_running(root: Path, proc, timeout: float = 20.0) -> dict:
    """Wait until the daemon reports it polices ``root``."""

    def ready():
        s = read_status(root)
        return s if s and s.get("running") and s.get("state") == "running" else None

    return wait_for(ready, timeout, "the daemon to start", proc)


def wait_ingested(root: Path, run: str, n: int, proc, timeout: float = 20.0) -> dict:
    def done():
        s = read_status(root)
        r = (s or {}).get("runs", {}).get(run)
        return s if r and r["ingested"] >= n else None

    return wait_for(done, timeout, f"{n} files of {run} ingested", proc)


def random_psi(rng, dim: int) -> np.ndarray:
    psi = rng.normal(size=dim) + 1j * rng.normal(size=dim)
    return psi / np.linalg.norm(psi)


def random_rho(rng, dim: int, rank: int = 3) -> np.ndarray:
    a = rng.normal(size=(dim, rank)) + 1j * rng.normal(size=(dim, rank))
    rho = a @ a.conj().T
    return rho / np.trace(rho).real


def save_renamed(path: Path, arr: np.ndarray) -> None:
    """The safe writer protocol: ``.name.tmp`` then rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, arr)
    os.rename(tmp, path)


def save_slowly(path: Path, arr: np.ndarray, chunks: int = 4, pause_s: float = 0.15) -> None:
    """A plain writer that writes its .npy in chunks with pauses (the name is final)."""
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    data = buf.getvalue()
    step = max(1, len(data) // chunks)
    with open(path, "wb") as handle:
        for start in range(0, len(data), step):
            handle.write(data[start : start + step])
            handle.flush()
            time.sleep(pause_s)


def result(results: Path, run: str) -> dict:
    with np.load(results / f"{run}.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def leftovers(root: Path) -> list[str]:
    """Entries under the inbox and the claimed dir (what ingest has not freed)."""
    out = []
    for base in (root / "inbox", root / "daemon" / "claimed"):
        if base.exists():
            out += [str(p) for p in base.rglob("*") if not p.is_dir()]
    return out
