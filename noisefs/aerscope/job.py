"""Run one intercepted ``backend.run`` call: batched, passed through, or refused.

Batches call ``AerBackend._execute_circuits_job`` (what the original ``run``'s job calls, with
``format_result=False``), never the intercepted ``run``; their raw outputs are merged
(:mod:`noisefs.aerscope.merge`) and formatted by Aer's own ``_format_results``, so the
``Result`` and its ``Statevector``/``DensityMatrix`` types are the installed Aer's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from qiskit.providers import JobStatus, JobV1
from qiskit.result import Result

from noisefs.aerscope.aer_rules import automatic_picks_density_matrix
from noisefs.aerscope.errors import ManagedError
from noisefs.aerscope.merge import ExperimentMerger, merge_outputs
from noisefs.aerscope.plan import binds_per_circuit, bounded_batch, draw_seed, plan_offsets
from noisefs.aerscope.registry import Scope
from noisefs.aerscope.rewrite import rewrite_circuit
from noisefs.aerscope.states import StateFolder
from noisefs.aerscope.verdict import effective_option, static_verdict, total_shots
from noisefs.progress import track_batches


class ManagedJob(JobV1):
    """The job a managed ``backend.run`` returns; its :meth:`result` works after the scope."""

    def __init__(
        self,
        backend: Any,
        job_id: str,
        result: Result | None = None,
        error: BaseException | None = None,
        inner: Any = None,
        note: dict | None = None,
    ) -> None:
        super().__init__(backend, job_id)
        self._result = result
        self._error = error
        self._inner = inner  # a passed-through Aer job
        self._note = note or {}

    def submit(self) -> None:
        """Nothing to do: a managed job has run (or been submitted to Aer) when returned."""

    def result(self, timeout: float | None = None) -> Result:
        """The job's :class:`qiskit.result.Result`; raises what the job raised."""
        if self._inner is not None:
            if self._result is None:
                result = self._inner.result(timeout=timeout)
                if isinstance(getattr(result, "metadata", None), dict):
                    result.metadata["noisefs"] = self._note
                self._result = result
            return self._result
        if self._error is not None:
            raise self._error
        return self._result

    def status(self) -> JobStatus:
        """DONE, ERROR, or the passed-through Aer job's own status."""
        if self._inner is not None:
            return self._inner.status()
        return JobStatus.ERROR if self._error is not None else JobStatus.DONE


class _Passthrough(Exception):
    """Internal: the job turned out to be one Aer must run whole (the reason is the message)."""


def run_managed(
    scope: Scope,
    backend: Any,
    circuits: Any,
    parameter_binds: list | None,
    run_options: dict,
    original_run: Callable,
) -> ManagedJob:
    """Run one ``backend.run`` call inside ``scope``; return a :class:`ManagedJob`."""
    from qiskit import QuantumCircuit

    single = isinstance(circuits, QuantumCircuit)
    circuit_list = [circuits] if single else list(circuits)
    reason = static_verdict(backend, run_options)  # raises for a refused option
    if reason is None and not all(isinstance(c, QuantumCircuit) for c in circuit_list):
        reason = "not every circuit is a QuantumCircuit"
    if reason is None:
        shots = total_shots(backend, run_options)
        job_id = str(uuid.uuid4())
        try:
            result, note = _run_batched(
                scope, backend, circuit_list, parameter_binds, run_options, shots, job_id
            )
            return ManagedJob(backend, job_id, result=result, note=note)
        except _Passthrough as exc:
            reason = str(exc)
        except Exception as exc:  # noqa: BLE001 - surfaced by result(), as Aer's jobs do
            return ManagedJob(backend, job_id, error=exc)
    scope.record_passthrough(reason)
    inner = original_run(backend, circuits, parameter_binds=parameter_binds, **run_options)
    return ManagedJob(
        backend, inner.job_id(), inner=inner, note={"mode": "passthrough", "reason": reason}
    )


def _execute(backend, circuits, parameter_binds, options: dict, job_id: str) -> dict:
    return backend._execute_circuits_job(
        circuits, parameter_binds, dict(options), job_id=job_id, format_result=False
    )


def _fix_method(
    backend, circuits, parameter_binds, run_options, shots, seed, job_id, truncation
) -> str:
    """The method every batch runs with; for ``automatic``, what Aer picks for the whole
    job's shot count (a 1-shot probe of the user's circuits, plus Aer's shots rule)."""
    method = effective_option(backend, run_options, "method", "automatic")
    if method and method != "automatic":
        return method
    probe_options = {**run_options, "shots": 1, "seed_simulator": seed}
    probe = _execute(backend, circuits, parameter_binds, probe_options, job_id)
    if not probe.get("success", False):
        raise _Passthrough("the 1-shot probe of the automatic method failed; Aer reports it")
    expanded = _expand(circuits, parameter_binds)
    for k, raw in enumerate(probe["results"]):
        meta = raw.get("metadata", {})
        if meta.get("measure_sampling"):
            raise _Passthrough(_sampled_reason(k))
        picked = meta.get("method", "statevector")
        if picked != "statevector":
            raise _Passthrough(f"the automatic method picks {picked!r} for experiment {k}")
        picks_dm = automatic_picks_density_matrix(expanded[k], meta, shots, truncation)
        if picks_dm is None:
            raise _Passthrough(
                f"whether the automatic method picks 'density_matrix' for experiment {k} at "
                f"{shots} shots cannot be told (control flow); give method='statevector' to batch"
            )
        if picks_dm:
            raise _Passthrough(
                f"the automatic method picks 'density_matrix' for experiment {k} at {shots} "
                "shots (noise, more shots than 2^qubits): Aer samples it from one evolution"
            )
    return "statevector"


def _sampled_reason(experiment: int) -> str:
    return (
        f"Aer samples experiment {experiment} from one evolution (measurement sampling: "
        "no per-shot noise); batching would change its counts and memory"
    )


def _expand(circuits, parameter_binds) -> list:
    out = []
    counts = binds_per_circuit(circuits, parameter_binds)
    for circuit, count in zip(circuits, counts, strict=True):
        out.extend([circuit] * count)
    return out


def _run_batched(scope: Scope, backend, circuits, parameter_binds, run_options, shots, job_id):
    started = time.perf_counter()
    seed, drawn = draw_seed(backend, run_options)
    truncation = bool(effective_option(backend, run_options, "enable_truncation", True))
    rewritten = [rewrite_circuit(c, truncation) for c in circuits]
    run_circuits = [r.circuit for r in rewritten]
    experiment_specs = _expand([r.specs for r in rewritten], parameter_binds)
    method = _fix_method(
        backend, circuits, parameter_binds, run_options, shots, seed, job_id, truncation
    )
    batch = bounded_batch(scope.options.batch, experiment_specs, _state_budget(scope))
    plan = plan_offsets(shots, batch)
    folder = StateFolder(scope.arena, run_name=f"managed-{job_id[:8]}")
    mergers = [ExperimentMerger(i, specs, folder) for i, specs in enumerate(experiment_specs)]

    first_output = None
    # One batch at a time: Aer holds the GIL while it simulates (measured: another Python
    # thread runs at ~2 % of its speed meanwhile), so a pipelined fold would only wait.
    for index, (offset, size) in enumerate(track_batches(plan, len(plan), scope.options.quiet)):
        options = {**run_options, "shots": size, "seed_simulator": seed + offset}
        options["method"] = method
        raw = _execute(backend, run_circuits, parameter_binds, options, job_id)
        if not raw.get("success", False):
            return _failed(backend, raw, seed, index), {}
        if index == 0:
            sampled = [
                k
                for k, r in enumerate(raw["results"])
                if r.get("metadata", {}).get("measure_sampling")
            ]
            if sampled:
                raise _Passthrough(_sampled_reason(sampled[0]))
            first_output = {k: v for k, v in raw.items() if k != "results"}
        if len(raw["results"]) != len(mergers):
            raise ManagedError(
                f"Aer returned {len(raw['results'])} results for {len(mergers)} experiments"
            )
        for merger, result in zip(mergers, raw.pop("results"), strict=True):
            merger.add(result, index)  # per-shot states: into the arena, folded, released
        del raw
        folder.sample()
    folder.sample(force=True)
    output = merge_outputs(
        first_output, [m.output() for m in mergers], time.perf_counter() - started
    )
    note = {
        "mode": "batched",
        "seed_simulator": seed,
        "seed_drawn": drawn,
        "shots": shots,
        "batch": batch,
        "batches": len(plan),
        "method": method,
        "arena": folder.note(),
    }
    output["metadata"]["noisefs"] = note
    output["job_id"] = job_id
    scope.record_batched(len(plan))
    return type(backend)._format_results(output), note


def _state_budget(scope: Scope) -> int:
    """Bytes one batch's per-shot states may take in RAM: half the arena quota (1 GiB when
    the arena keeps its own), so a batch also fits the arena."""
    quota = scope.options.quota or 2**30
    return max(1, quota // 2)


def _failed(backend, raw: dict, seed: int, index: int):
    """A failed batch's output formatted as Aer would, noting which batch failed."""
    raw.setdefault("metadata", {})["noisefs"] = {
        "mode": "batched",
        "seed_simulator": seed,
        "failed_batch": index,
    }
    return type(backend)._format_results(raw)
