"""Run one intercepted ``backend.run`` call: batched, or passed through to Aer whole.

A job is batched only where every step tells exactly what Aer would do with it; otherwise it
is passed through untouched, with the reason in ``result.metadata["noisefs"]``: an option
that decides it (:mod:`noisefs.aerscope.verdict`), circuits or shots or a seed or parameter
binds that Aer rejects (its own error then comes from its own job's ``result()``, as without
noisefs), a job Aer cannot count exactly (no shot, more shots than Aer counts, no
experiment), a probe or first batch that Aer fails or raises on, measurement sampling.

Batches call ``AerBackend._execute_circuits_job`` (what the original ``run``'s job calls, with
``format_result=False``), never the intercepted ``run``; their raw outputs are merged
(:mod:`noisefs.aerscope.merge`) and formatted by Aer's own ``_format_results``, so the
``Result`` and its ``Statevector``/``DensityMatrix`` types are the installed Aer's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qiskit import QuantumCircuit
from qiskit.providers import JobStatus, JobV1
from qiskit.result import Result
from qiskit_aer.backends.aerbackend import AerBackend

from noisefs.aer_private import execute_circuits_job, format_results
from noisefs.aerscope.aer_rules import automatic_picks_density_matrix
from noisefs.aerscope.merge import ExperimentMerger, merge_outputs
from noisefs.aerscope.plan import (
    BatchPlan,
    batch_seed,
    bounded_batch,
    draw_seed,
    expand,
    experiments_per_circuit,
    state_budget,
)
from noisefs.aerscope.registry import Scope
from noisefs.aerscope.rewrite import rewrite_circuit
from noisefs.aerscope.states import StateFolder
from noisefs.aerscope.verdict import (
    AER_MAX_SHOTS,
    effective_option,
    job_shots,
    static_verdict,
)
from noisefs.progress import track_batches


class ManagedJob(JobV1):
    """The job a managed ``backend.run`` returns; its :meth:`result` works after the scope."""

    def __init__(
        self,
        backend: AerBackend,
        job_id: str,
        result: Result | None = None,
        error: BaseException | None = None,
        inner: JobV1 | None = None,
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
    """Internal: the job is one Aer must run whole (the reason is the message)."""


@dataclass(frozen=True)
class _Planned:
    """What the checks before the first batch found, each as Aer reads it."""

    circuits: list[QuantumCircuit]
    experiments: list[int]  # results per circuit
    shots: int
    seed: int
    seed_drawn: bool


def run_managed(
    scope: Scope,
    backend: AerBackend,
    circuits: Any,
    parameter_binds: Any,
    run_options: dict,
    replaced_run: Callable,
) -> ManagedJob:
    """Run one ``backend.run`` call inside ``scope``; return a :class:`ManagedJob`.
    ``replaced_run``: the ``AerBackend.run`` that the interception replaced (Aer's own, or
    another library's wrapper around it), which a passed-through call runs."""
    job_id = str(uuid.uuid4())
    try:
        planned = _check(backend, circuits, parameter_binds, run_options)
        result, note = _run_batched(scope, backend, planned, parameter_binds, run_options, job_id)
        return ManagedJob(backend, job_id, result=result, note=note)
    except _Passthrough as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 - surfaced by result(), as Aer's jobs do
        return ManagedJob(backend, job_id, error=exc)
    scope.record_passthrough(reason)
    inner = replaced_run(backend, circuits, parameter_binds=parameter_binds, **run_options)
    return ManagedJob(
        backend, inner.job_id(), inner=inner, note={"mode": "passthrough", "reason": reason}
    )


def _aer_rejects(what: str, exc: Exception) -> _Passthrough:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return _Passthrough(
        f"Aer rejects {what} ({type(exc).__name__}: {first[:120]}); "
        "its own job raises its own error from result()"
    )


def _check(backend, circuits, parameter_binds, run_options: dict) -> _Planned:
    """Everything known before a batch runs, read as Aer reads it; raises
    :class:`_Passthrough` where the job is Aer's to run (or to reject) whole."""
    if isinstance(circuits, QuantumCircuit):
        circuit_list = [circuits]
    elif isinstance(circuits, (list, tuple)) and all(
        isinstance(c, QuantumCircuit) for c in circuits
    ):
        circuit_list = list(circuits)
    else:
        raise _Passthrough("circuits are not a QuantumCircuit or a list of them")
    if not circuit_list:
        raise _Passthrough("no circuit")
    reason = static_verdict(backend, run_options)
    if reason is not None:
        raise _Passthrough(reason)
    try:
        shots = job_shots(backend, run_options)
    except Exception as exc:  # noqa: BLE001 - whatever Aer raises, its own job raises
        raise _aer_rejects(
            f"shots={effective_option(backend, run_options, 'shots')!r}", exc
        ) from None
    if shots == 0:
        raise _Passthrough("shots=0: no shot to batch")
    if shots > AER_MAX_SHOTS:
        raise _Passthrough(
            f"{shots} shots: Aer counts shots in a C int (2^32 shots run none), so the job "
            "is Aer's own"
        )
    try:
        seed, drawn = draw_seed(backend, run_options)
    except Exception as exc:  # noqa: BLE001
        seed_given = effective_option(backend, run_options, "seed_simulator")
        raise _aer_rejects(f"seed_simulator={seed_given!r}", exc) from None
    try:
        experiments = experiments_per_circuit(backend, circuit_list, parameter_binds, run_options)
    except Exception as exc:  # noqa: BLE001
        raise _aer_rejects("the parameter_binds", exc) from None
    if sum(experiments) == 0:
        raise _Passthrough("the parameter_binds give no experiment")
    return _Planned(circuit_list, experiments, shots, seed, drawn)


def _execute_first(backend, circuits, parameter_binds, options: dict, job_id: str, what: str):
    """The probe's or the first batch's raw output; a :class:`_Passthrough` where Aer raises
    or fails (its own job then raises or fails as it would without noisefs)."""
    try:
        raw = execute_circuits_job(backend, circuits, parameter_binds, options, job_id)
    except Exception as exc:  # noqa: BLE001
        raise _Passthrough(
            f"Aer raised {type(exc).__name__} on the {what}; Aer runs the job whole"
        ) from None
    if not raw.get("success", False):
        raise _Passthrough(f"Aer failed the {what}; Aer runs the job whole")
    return raw


def _fix_method(backend, planned: _Planned, parameter_binds, run_options, truncation, job_id):
    """The method every batch runs with; for ``automatic``, what Aer picks for the whole
    job's shot count (a 1-shot probe of the user's circuits, plus Aer's shots rule)."""
    method = effective_option(backend, run_options, "method", "automatic")
    if method != "automatic":
        return method
    probe_options = {**run_options, "shots": 1, "seed_simulator": planned.seed}
    probe = _execute_first(
        backend, planned.circuits, parameter_binds, probe_options, job_id, "1-shot probe"
    )
    expanded = expand(planned.circuits, planned.experiments)
    if len(probe["results"]) != len(expanded):
        raise _Passthrough(_miscount(len(probe["results"]), len(expanded)))
    shots = planned.shots
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


def _miscount(results: int, experiments: int) -> str:
    return (
        f"Aer gave {results} results where its binds were counted as {experiments} "
        "experiments; Aer runs the job whole"
    )


def _run_batched(scope: Scope, backend, planned: _Planned, parameter_binds, run_options, job_id):
    started = time.perf_counter()
    truncation = bool(effective_option(backend, run_options, "enable_truncation", True))
    try:
        rewritten = [rewrite_circuit(c, truncation) for c in planned.circuits]
    except Exception as exc:  # noqa: BLE001 - a circuit the rewrite does not know: Aer's
        raise _Passthrough(
            f"the saves cannot be made per-shot ({type(exc).__name__}: {exc}); Aer runs the "
            "job whole"
        ) from None
    run_circuits = [r.circuit for r in rewritten]
    experiment_specs = expand([r.specs for r in rewritten], planned.experiments)
    method = _fix_method(backend, planned, parameter_binds, run_options, truncation, job_id)
    budget = state_budget(experiment_specs, scope.options.quota)
    batch = bounded_batch(scope.options.batch, experiment_specs, budget)
    plan = BatchPlan(planned.shots, batch)
    folder = StateFolder(scope.arena, run_name=f"managed-{job_id[:8]}")
    mergers = [ExperimentMerger(i, specs, folder) for i, specs in enumerate(experiment_specs)]

    first_output = None
    # One batch at a time: Aer holds the GIL while it simulates (measured: another Python
    # thread runs at ~2 % of its speed meanwhile), so a pipelined fold would only wait.
    for index, (offset, size) in enumerate(track_batches(plan, len(plan), scope.options.quiet)):
        options = {**run_options, "shots": size, "method": method}
        options["seed_simulator"] = batch_seed(planned.seed, offset)
        if index == 0:
            raw = _execute_first(
                backend, run_circuits, parameter_binds, options, job_id, "first batch"
            )
            results = raw["results"]
            for k, result in enumerate(results):
                if result.get("metadata", {}).get("measure_sampling"):
                    raise _Passthrough(_sampled_reason(k))
            if len(results) != len(mergers):
                raise _Passthrough(_miscount(len(results), len(mergers)))
            first_output = {k: v for k, v in raw.items() if k != "results"}
        else:
            raw = execute_circuits_job(backend, run_circuits, parameter_binds, options, job_id)
            if not raw.get("success", False):
                return _failed(backend, raw, planned.seed, index), {}
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
        "seed_simulator": planned.seed,
        "seed_drawn": planned.seed_drawn,
        "shots": planned.shots,
        "batch": batch,
        "batches": len(plan),
        "method": method,
        "arena": folder.note(),
    }
    output["metadata"]["noisefs"] = note
    output["job_id"] = job_id
    scope.record_batched(len(plan))
    return format_results(backend, output), note


def _failed(backend, raw: dict, seed: int, index: int) -> Result:
    """A failed batch's output formatted as Aer would, noting which batch failed."""
    raw.setdefault("metadata", {})["noisefs"] = {
        "mode": "batched",
        "seed_simulator": seed,
        "failed_batch": index,
    }
    return format_results(backend, raw)
