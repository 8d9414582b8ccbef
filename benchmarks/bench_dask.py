"""Benchmark of Dask execution (issue 11) on a local cluster started by this script.

    python benchmarks/bench_dask.py [--qubits 10] [--trajectories 1024] [--reps 3]
                                    [--bytes-trajectories 1024,4096]

The workload is a QFT (H on every qubit, a barrier, ``synth_qft_full``; two snapshot steps),
seed 7. A ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1 run beside this
script; the noisefs client is this process (``noisefs.run(..., scheduler=ADDR)``), timed
wall-clock around the call. Contenders run interleaved after one untimed warm-up of each
(the workers import Qiskit and Aer on their first task); medians are printed.

1. Overhead: one worker with as many threads as cores vs the same run without Dask
   (``noisefs.run`` with its defaults). Target: Dask / local <= 1.1.
2. Bytes the client receives per run: the partial sums of every group's root (the
   executor's ``received_bytes``, the arrays' sizes, ρ sums as their upper triangles;
   pickling adds a few hundred bytes per set), at each of ``--bytes-trajectories``,
   against one set of sums. Target: one set, whatever K.
3. One worker vs two (one thread each) on this machine: wall times and the speed-up.

Every Dask result is checked against the local run (1e-8; the sums are added in another
order, so not bit for bit) and the one-worker and two-worker results bit for bit; the
script exits 1 when a check fails. The last line printed is one JSON object of the figures.
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

import noisefs
import noisefs.execute.dask as dask_execute
from noisefs.aggregate import Aggregator
from noisefs.execute.dask_worker import pack

RECEIVED: list[int] = []  # received_bytes of each Dask run's executor, in order


def _record_received() -> None:
    shutdown = dask_execute.DaskExecutor.shutdown

    def recording(self) -> None:
        if not self._closed:
            RECEIVED.append(self.received_bytes)
        shutdown(self)

    dask_execute.DaskExecutor.shutdown = recording


def qft_qasm(n: int) -> str:
    """OpenQASM 2 text of H on every qubit, a barrier, then the textbook QFT."""
    from qiskit import QuantumCircuit, qasm2
    from qiskit.synthesis.qft import synth_qft_full

    qc = QuantumCircuit(n)
    qc.h(range(n))
    qc.barrier()
    qc.compose(synth_qft_full(n), inplace=True)
    return qasm2.dumps(qc)


class Cluster:
    """A scheduler on loopback and the worker processes of one configuration at a time."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.file = work / "scheduler.json"
        self.processes: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        scheduler = self._spawn("scheduler", "scheduler", "--scheduler-file", str(self.file),
                                "--host", "127.0.0.1", "--port", "0", "--no-dashboard")  # fmt: skip
        deadline = time.monotonic() + 60
        while not self.file.exists():
            if scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((work / "scheduler.log").read_text()[-2000:])
            time.sleep(0.1)
        time.sleep(0.3)
        self.address = json.loads(self.file.read_text())["address"]

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        with open(self.work / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "dask", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def workers_with(self, count: int, threads: int) -> None:
        """Replace the workers by ``count`` workers of ``threads`` threads each."""
        from distributed import Client

        for worker in self.workers:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        with Client(self.address, set_as_default=False) as client:
            while client.scheduler_info(n_workers=-1)["workers"]:  # the old ones are gone
                time.sleep(0.1)
        self.workers = [
            self._spawn(
                f"worker{i}",
                "worker",
                "--scheduler-file",
                str(self.file),
                "--nthreads",
                str(threads),
                "--host",
                "127.0.0.1",
                "--no-dashboard",
                "--memory-limit",
                "0",
            )  # fmt: skip
            for i in range(count)
        ]
        with Client(self.address, set_as_default=False) as client:
            deadline = time.monotonic() + 120
            while len(client.scheduler_info(n_workers=-1)["workers"]) != count:
                if time.monotonic() > deadline:
                    raise RuntimeError((self.work / "worker0.log").read_text()[-2000:])
                time.sleep(0.2)

    def close(self) -> None:
        for process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


def timed(circuit: Path, trajectories: int, arena: Path, scheduler: str | None):
    """(seconds, result) of one run."""
    options = {"arena": str(arena), "quota": "1GiB"}
    if scheduler is not None:
        options["scheduler"] = scheduler
    started = time.perf_counter()
    result = noisefs.run(circuit, trajectories=trajectories, seed=7, **options)
    return time.perf_counter() - started, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qubits", type=int, default=10)
    parser.add_argument("--trajectories", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--bytes-trajectories", default="1024,4096")
    args = parser.parse_args(argv)
    _record_received()
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="noisefs-bench-dask-"))
    arena = Path("/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir())
    arena = arena / f"noisefs-bench-dask-{uuid.uuid4().hex[:8]}"
    circuit = work / f"qft_{args.qubits}.qasm"
    circuit.write_text(qft_qasm(args.qubits))
    cluster = Cluster(work)
    figures: dict = {"qubits": args.qubits, "trajectories": args.trajectories, "cores": cores}
    ok = True
    try:
        # 1. overhead: one worker, all cores, vs no Dask
        cluster.workers_with(1, cores)
        k = args.trajectories
        _, local = timed(circuit, k, arena, None)  # warm-ups
        timed(circuit, k, arena, cluster.address)
        local_s, dask_s = [], []
        for _ in range(args.reps):
            seconds, local = timed(circuit, k, arena, None)
            local_s.append(seconds)
            seconds, on_dask = timed(circuit, k, arena, cluster.address)
            dask_s.append(seconds)
            difference = float(np.max(np.abs(on_dask.rho - local.rho)))
            ok &= difference <= 1e-8
        figures["local_s"] = statistics.median(local_s)
        figures["dask_1_worker_s"] = statistics.median(dask_s)
        figures["overhead_ratio"] = figures["dask_1_worker_s"] / figures["local_s"]
        figures["dask_vs_local_max_abs"] = difference
        print(f"{k} trajectories, {args.qubits} qubits, {cores} cores, median of {args.reps}:")
        print(f"  local (no Dask)              {figures['local_s']:7.2f} s")
        print(f"  Dask, 1 worker x {cores} threads   {figures['dask_1_worker_s']:7.2f} s")
        print(f"  ratio Dask / local           {figures['overhead_ratio']:7.2f}  (target <= 1.1)")

        # 2. bytes the client receives
        state = Aggregator(args.qubits, len(local.steps), "full").state()
        full_set = sum(np.asarray(a).nbytes for a in state.values())
        one_set = sum(np.asarray(a).nbytes for a in pack(state).values()) + 16  # + timings
        figures["one_set_of_sums_bytes"] = one_set
        figures["aggregator_state_bytes"] = full_set
        print(f"  one set of sums: {one_set:,d} bytes (rho as upper triangles; the "
              f"aggregator's own state is {full_set:,d})")  # fmt: skip
        figures["received_bytes"] = {}
        for count in [int(c) for c in args.bytes_trajectories.split(",")]:
            RECEIVED.clear()
            _, result = timed(circuit, count, arena, cluster.address)
            received = RECEIVED[-1]
            figures["received_bytes"][count] = received
            print(f"  client received {received:>10,d} bytes for K={count:<6d} "
                  f"({received / one_set:.2f} sets of sums of {one_set:,d} bytes; target 1)")  # fmt: skip

        # 3. one worker vs two, one thread each
        times = {}
        results = {}
        for workers in (1, 2):
            cluster.workers_with(workers, 1)
            timed(circuit, k, arena, cluster.address)  # warm-up
            runs = [timed(circuit, k, arena, cluster.address) for _ in range(args.reps)]
            times[workers] = statistics.median(seconds for seconds, _ in runs)
            results[workers] = runs[-1][1]
        identical = np.array_equal(results[1].rho, results[2].rho)
        ok &= identical
        figures["one_worker_s"], figures["two_workers_s"] = times[1], times[2]
        figures["speedup_two_workers"] = times[1] / times[2]
        figures["one_vs_two_bit_identical"] = identical
        print(f"  Dask, 1 worker x 1 thread    {times[1]:7.2f} s")
        print(f"  Dask, 2 workers x 1 thread   {times[2]:7.2f} s  (speed-up "
              f"{times[1] / times[2]:.2f}x; results bit-identical: {identical})")  # fmt: skip
    finally:
        cluster.close()
        shutil.rmtree(arena, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    figures["checks_passed"] = bool(ok)
    print(json.dumps(figures))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
