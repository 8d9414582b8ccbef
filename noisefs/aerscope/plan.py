"""Plan a managed job's batches: the base seed, the experiments per circuit, the batch size
that bounds one batch's per-shot states, and the (offset, size) of each batch.

Aer seeds shot i of circuit instance k (a circuit, or one parameter bind of it) with
``seed_simulator + 2113·k + i`` (``controller_execute.hpp`` and ``circuit_executor.hpp``; read
in the sources of 0.15.1, 0.16.4, 0.17.2 and main, and held by the tests on 0.18.2). A batch
covering shots [offset, offset + size) of every instance, run as one call with
``seed_simulator = base + offset``, therefore draws exactly the numbers of the unbatched job.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from noisefs.aerscope.verdict import effective_option

if TYPE_CHECKING:
    from noisefs.aerscope.rewrite import LabelSpec

SEED_BOUND = 2**31  # Aer keeps seeds in 64 bits; base + 2113·k + shots must not overflow


def draw_seed(backend: Any, run_options: dict) -> tuple[int, bool]:
    """The base seed (given, or drawn now) and whether it was drawn."""
    seed = effective_option(backend, run_options, "seed_simulator", None)
    if seed is None or (isinstance(seed, int) and seed < 0):
        return secrets.randbelow(SEED_BOUND), True
    return int(seed), False


def binds_per_circuit(circuits: list, parameter_binds: list | None) -> list[int]:
    """How many experiments (results) each circuit gives: one per parameter bind."""
    if not parameter_binds:
        return [1] * len(circuits)
    counts = []
    for bind in parameter_binds:
        lengths = [len(v) if hasattr(v, "__len__") else 1 for v in bind.values()]
        counts.append(max(lengths) if lengths else 1)
    return counts


def bounded_batch(batch: int, specs: list[dict[str, LabelSpec]], budget: int) -> int:
    """``batch``, lowered so that one batch's per-shot states (every label of every
    experiment, as Aer returns them) fit in ``budget`` bytes; at least 1."""
    per_shot = sum(spec.shot_bytes() for labels in specs for spec in labels.values())
    if per_shot == 0:
        return batch
    return max(1, min(batch, budget // per_shot))


def plan_offsets(shots: int, batch: int) -> list[tuple[int, int]]:
    """(offset, size) of each batch."""
    return [(start, min(batch, shots - start)) for start in range(0, shots, batch)]
