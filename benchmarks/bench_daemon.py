"""Benchmark of ``noisefs daemon`` ingest against a plain Python loop over the same files.

    python benchmarks/bench_daemon.py [--psi-files 10000] [--rho-files 100] [--idle-s 10]

1. Backlog throughput: N 6-qubit ψ files (and M 16-MiB ρ files, 10 qubits) are written by
   a foreign process into a staging directory on /dev/shm, then the whole run directory
   is renamed into ``<arena>/inbox/`` at once; the time until the daemon has folded the
   last one (its trace) gives files/s and GB/s. The same files are then written again and
   folded by a plain loop (``np.load``, add ψψ† or ρ, ``unlink``).
2. Latency: a foreign process writes ψ files one by one with the rename protocol (at a
   steady ~500 files/s); rename → folded per file, median and p99.
3. The idle daemon: CPU over ``--idle-s`` seconds (target < 1 % of a core) and RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

WRITER = r"""
import os, sys, time
import numpy as np
stage, kind, n, dim, pace, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
rng = np.random.default_rng(1)
os.makedirs(stage, exist_ok=True)
if kind == "psi":
    base = rng.normal(size=(min(n, 1024), dim)) + 1j * rng.normal(size=(min(n, 1024), dim))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
else:
    a = rng.normal(size=(dim, 4)) + 1j * rng.normal(size=(dim, 4))
    base = a @ a.conj().T
    base = (base / np.trace(base).real)[None]
log = open(os.path.join(os.path.dirname(stage), f"renamed-{kind}.txt"), "w")
for i in range(n):
    tmp, name = os.path.join(stage, f".{prefix}{i}.npy.tmp"), f"{prefix}{i}.npy"
    with open(tmp, "wb") as h:
        np.save(h, base[i % len(base)])
    os.rename(tmp, os.path.join(stage, name))
    if pace:
        log.write(f"{name} {time.time():.6f}\n")
        time.sleep(pace)
log.close()
"""


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_files(stage: Path, kind: str, n: int, dim: int, pace: float = 0.0, prefix="f") -> None:
    """Write ``n`` files in a foreign process (safe protocol: temp name, then rename)."""
    args = [str(stage), kind, str(n), str(dim), str(pace), prefix]
    subprocess.run([sys.executable, "-c", WRITER, *args], check=True)


def read_trace(path: Path) -> dict[str, float]:
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, t = line.rsplit(" ", 1)
            out[name] = float(t)
    return out


def wait_trace(path: Path, names: set[str], timeout: float, proc=None) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode}")
        trace = read_trace(path)
        if names <= trace.keys():
            return trace
        time.sleep(0.02)
    raise TimeoutError(f"only {len(names & read_trace(path).keys())} of {len(names)} folded")


def plain_loop(stage: Path, kind: str, dim: int) -> tuple[float, int]:
    files = sorted(stage.iterdir())
    acc = np.zeros((dim, dim), complex)
    nbytes = sum(f.stat().st_size for f in files)
    start = time.perf_counter()
    for f in files:
        a = np.load(f)
        if kind == "psi":
            acc += np.outer(a, a.conj())
        else:
            acc += a
        os.unlink(f)
    return time.perf_counter() - start, nbytes


def backlog(root, base, trace, kind, n, dim, run, step, proc) -> dict:
    stage_run = base / f"stage-{run}"
    stage = stage_run / str(step)
    write_files(stage, kind, n, dim, prefix=run)
    names = {f.name for f in stage.iterdir() if not f.name.startswith(".")}
    nbytes = sum(f.stat().st_size for f in stage.iterdir())
    start = time.time()
    os.rename(stage_run, root / "inbox" / run)  # the whole backlog appears at once
    got = wait_trace(trace, names, timeout=600, proc=proc)
    took = max(got[name] for name in names) - start
    write_files(stage, kind, n, dim, prefix=run)
    loop_s, _ = plain_loop(stage, kind, dim)
    shutil.rmtree(stage_run)
    return {
        "files": n,
        "bytes": nbytes,
        "daemon_s": took,
        "daemon_files_per_s": n / took,
        "daemon_GBps": nbytes / took / 1e9,
        "loop_s": loop_s,
        "loop_files_per_s": n / loop_s,
        "loop_GBps": nbytes / loop_s / 1e9,
        "ratio_vs_loop": loop_s / took,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--psi-files", type=int, default=10_000)
    ap.add_argument("--rho-files", type=int, default=100)
    ap.add_argument("--latency-files", type=int, default=1000)
    ap.add_argument("--idle-s", type=float, default=10.0)
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    base = Path("/dev/shm") / f"noisefs-bench-{uuid.uuid4().hex[:8]}"
    root = base / "arena"
    base.mkdir(mode=0o700)
    tmp = Path(tempfile.mkdtemp(prefix="noisefs-bench-"))
    trace = base / "trace.txt"
    cfg = tmp / "daemon.toml"
    cfg.write_text(
        f'results = "{tmp / "results"}"\nstatus_interval_s = 2.0\n'
        f'[[arena]]\nroot = "{root}"\nquota = "8GiB"\nmax_files = 200000\n'
        f'spill = "{tmp / "spill"}"\n'
    )
    env = {**os.environ, "NOISEFS_FAULTS": f"daemon.trace={trace}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "noisefs", "daemon", "--config", str(cfg)],
        env=env,
        stderr=open(tmp / "daemon.log", "wb"),  # noqa: SIM115
        start_new_session=True,
    )
    report: dict = {}
    try:
        deadline = time.monotonic() + 30
        while not (root / "daemon" / "status.json").exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError((tmp / "daemon.log").read_text())
            time.sleep(0.05)
        time.sleep(2)
        c0, t0 = cpu_s(proc.pid), time.monotonic()
        time.sleep(opts.idle_s)
        idle = (cpu_s(proc.pid) - c0) / (time.monotonic() - t0)
        report["idle"] = {"cpu_fraction_of_core": idle, "rss_mib": rss_mib(proc.pid)}
        report["psi"] = backlog(root, base, trace, "psi", opts.psi_files, 64, "psi", 0, proc)
        report["rho"] = backlog(root, base, trace, "rho", opts.rho_files, 1024, "rho", 0, proc)
        report["rss_after_mib"] = rss_mib(proc.pid)
        stage = root / "inbox" / "lat" / "0"
        stage.mkdir(parents=True)
        write_files(stage, "psi", opts.latency_files, 64, pace=0.002, prefix="lat")
        renamed = read_trace(root / "inbox" / "lat" / "renamed-psi.txt")
        folded = wait_trace(trace, set(renamed), 60, proc)
        lat = sorted(folded[n] - renamed[n] for n in renamed)
        report["latency_ms"] = {
            "files": len(lat),
            "median": 1e3 * statistics.median(lat),
            "p99": 1e3 * lat[int(0.99 * (len(lat) - 1))],
            "max": 1e3 * lat[-1],
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    if opts.json:
        print(json.dumps(report, indent=1))
        return 0
    i, p, r, lat = report["idle"], report["psi"], report["rho"], report["latency_ms"]
    print(
        f"idle daemon: {100 * i['cpu_fraction_of_core']:.2f} % of a core (target < 1 %), RSS {i['rss_mib']:.0f} MiB"
    )
    for name, x in (("6-qubit psi", p), ("16 MiB rho", r)):
        print(
            f"{name}: {x['files']} files, {x['bytes'] / 1e6:.0f} MB: daemon {x['daemon_s']:.2f} s "
            f"({x['daemon_files_per_s']:.0f} files/s, {x['daemon_GBps']:.2f} GB/s); plain loop "
            f"{x['loop_s']:.2f} s ({x['loop_files_per_s']:.0f} files/s, {x['loop_GBps']:.2f} GB/s); "
            f"daemon/loop speed {x['ratio_vs_loop']:.2f}x"
        )
    print(f"RSS after ingest: {report['rss_after_mib']:.0f} MiB")
    print(
        f"latency rename -> folded ({lat['files']} files at ~500/s): median {lat['median']:.1f} ms, "
        f"p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
