"""Plan a managed job's batches: the base seed, the experiments each circuit gives, the batch
size that bounds one batch's per-shot states, and the (offset, size) of each batch.

Aer seeds shot i of circuit instance k (a circuit, or one parameter bind of it) with
``seed_simulator + 2113·k + i`` in 64-bit unsigned arithmetic (``controller_execute.hpp`` and
``circuit_executor.hpp``; read in the sources of 0.15.1, 0.16.4, 0.17.2 and main, and held by
the tests on 0.18.2). A batch covering shots [offset, offset + size) of every instance, run as
one call with ``seed_simulator = base + offset`` (wrapped as Aer wraps it), therefore draws
exactly the numbers of the unbatched job.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from qiskit import QuantumCircuit

from noisefs.aer_private import converted_binds
from noisefs.aerscope.rewrite import LabelSpec
from noisefs.aerscope.verdict import aer_int, effective_option

SEED_BOUND = 2**31  # a drawn base seed is below this


def draw_seed(backend: Any, run_options: dict) -> tuple[int, bool]:
    """The base seed as Aer reads it (given: any value Aer accepts, ``-1`` included, which
    Aer uses as a seed like any other), or drawn now; and whether it was drawn. Raises what
    Aer raises for a seed it rejects."""
    seed = effective_option(backend, run_options, "seed_simulator")
    if seed is None:
        return secrets.randbelow(SEED_BOUND), True
    return aer_int("seed_simulator", seed), False


def batch_seed(base: int, offset: int) -> int:
    """``base + offset`` as Aer's 64-bit seed arithmetic sees it, in the signed 64-bit range
    its setter takes (a base near 2^63 wraps instead of overflowing)."""
    return (base + offset + 2**63) % 2**64 - 2**63


def experiments_per_circuit(
    backend: Any, circuits: list[QuantumCircuit], parameter_binds: Any, run_options: dict
) -> list[int]:
    """How many results Aer gives for each circuit, counted as Aer counts them: Aer's own
    conversion of the binds (``AerBackend._convert_binds`` on the circuits as Aer compiles
    them: only the parameters a circuit has), then Aer's rule (``controller_execute.hpp``): a
    circuit with no bound parameter is one experiment, else as many as its first
    parameterization has values. Raises what Aer raises for binds it rejects."""
    if not parameter_binds:  # Aer's own test (so an array raises as it does in Aer)
        return [1] * len(circuits)
    table = converted_binds(backend, circuits, parameter_binds, run_options)
    return [len(entries[0][1]) if entries else 1 for entries in table]


def expand(items: list, counts: list[int]) -> list:
    """``items[i]`` repeated ``counts[i]`` times, in order: one per experiment."""
    return [item for item, count in zip(items, counts, strict=True) for _ in range(count)]


# One batch's per-shot states (as Aer returns them, all in RAM at once) take at most this
# share of the averaged results they are folded into, or MIN_STATE_BUDGET where that is more:
# the RAM a job holds beyond its results is bounded by a share of them, whatever the shots.
# 8, not 16: at 10 qubits with five per-shot saves (batch 256 asked) 1/8 gives batch 128, peak
# 225 MiB and +10-25 % time against batch 256's 250 MiB; 1/16 gives 64, 213 MiB, +50-65 %.
RESULT_SHARE = 8
MIN_STATE_BUDGET = 4 << 20
DEFAULT_QUOTA = 1 << 30  # the budget's cap where the scope leaves the arena its own quota


def state_budget(specs: list[dict[str, LabelSpec]], quota: int | None) -> int:
    """Bytes one batch's per-shot states may take in RAM: 1/``RESULT_SHARE`` of the averaged
    results of every per-shot state label of every experiment, at least
    ``MIN_STATE_BUDGET``; and at most half the arena ``quota`` (so a batch also fits the
    arena; 1 GiB where the arena keeps its own quota)."""
    results = sum(spec.result_bytes() for labels in specs for spec in labels.values())
    cap = max(1, (quota or DEFAULT_QUOTA) // 2)
    return min(cap, max(MIN_STATE_BUDGET, results // RESULT_SHARE))


def bounded_batch(batch: int, specs: list[dict[str, LabelSpec]], budget: int) -> int:
    """``batch``, lowered so that one batch's per-shot states (every label of every
    experiment, as Aer returns them) fit in ``budget`` bytes; at least 1."""
    per_shot = sum(spec.shot_bytes() for labels in specs for spec in labels.values())
    if per_shot == 0:
        return batch
    return max(1, min(batch, budget // per_shot))


@dataclass(frozen=True)
class BatchPlan:
    """The (offset, size) of each batch of ``shots`` shots, made one at a time: the plan
    takes no memory whatever the shot count."""

    shots: int
    batch: int

    def __len__(self) -> int:
        return -(-self.shots // self.batch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for start in range(0, self.shots, self.batch):
            yield start, min(self.batch, self.shots - start)
