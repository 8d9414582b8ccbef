"""The memory a run needs, as one formula: fixed bytes plus bytes per trajectory in flight.

The same formula refuses a run that cannot fit (with what to change) and caps the batch
size the run chooses, so the two never disagree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from noisefs.errors import TooLargeError

USABLE_MEMORY = 0.8  # a run may plan for this share of the available memory
ARENA_SHARE = 0.5  # snapshots in flight may fill at most this share of the arena quota
# What one declared classical bit costs, estimated: Qiskit's Clbit and register entries in the
# parsed and the translated circuit (about 350 bytes measured) and Aer's classical register.
BYTES_PER_CLBIT = 4096
_MAX_FORMULA_QUBITS = 64  # above this no machine has the memory; 2**n is never computed


def usable_bytes(available: int) -> int:
    """The bytes a run may plan for out of ``available`` (an integer, exact)."""
    return int(USABLE_MEMORY * available)


def format_gib(count: int) -> str:
    """``count`` bytes in GiB with one decimal, by integer arithmetic (any size of integer).

    Counts too large to write out (beyond a billion GiB) read as a power of two."""
    tenths = int(count) * 10 // 2**30
    if tenths >= 10**10:
        return f"2^{int(count).bit_length() - 1} bytes"
    return f"{tenths // 10}.{tenths % 10} GiB"


def max_qubits(available: int) -> int:
    """The most qubits that the smallest run (one snapshot, factored store, no density
    matrix, batch 1, one worker) can have within ``available`` bytes: the bound every
    circuit is held to before it is built; :meth:`MemoryBudget.check` then checks the run."""
    usable = usable_bytes(available)
    most = 0
    for n in range(1, _MAX_FORMULA_QUBITS + 1):
        if MemoryBudget(n, 1, "factored", 0, slots=2).needed(1) > usable:
            break
        most = n
    return most


def max_clbits(available: int) -> int:
    """The most classical bits a circuit may declare within ``available`` bytes."""
    return max(1, usable_bytes(available) // BYTES_PER_CLBIT)


def available_memory_bytes() -> int:
    """MemAvailable of /proc/meminfo (or the free physical pages elsewhere)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes a run of ``num_qubits`` with ``num_steps`` snapshots needs.

    ``kept_dim`` is the dimension of the kept density matrix (0 without one), ``slots``
    how many batches can be in flight at once (the executor's)."""

    num_qubits: int
    num_steps: int
    store: str
    kept_dim: int
    slots: int
    workers: int = 1

    @property
    def snapshot_bytes(self) -> int:
        """One trajectory's snapshot at one step."""
        dim = 2**self.num_qubits
        return 16 * dim * (dim if self.store == "dense" else 1)

    @property
    def per_trajectory(self) -> int:
        """Bytes per trajectory of a batch in flight: Aer's result and our stacked copy."""
        return 2 * self.slots * self.num_steps * self.snapshot_bytes

    @property
    def fixed(self) -> int:
        """Running sums and the finished average, probabilities, Aer's own state vectors."""
        dim = 2**self.num_qubits
        s = self.num_steps
        return 2 * s * 16 * self.kept_dim**2 + 3 * s * 8 * dim + max(1, self.workers) * 32 * dim

    def needed(self, batch: int) -> int:
        """Bytes a run with batches of ``batch`` trajectories needs."""
        return self.fixed + batch * self.per_trajectory

    def max_batch(self, available: int, quota_bytes: int | None = None) -> int:
        """The largest batch that fits the memory (and half the arena quota), at least 1.

        Integer arithmetic throughout: the figures of a large circuit exceed any float."""
        room = usable_bytes(available) - self.fixed
        largest = room // self.per_trajectory
        if quota_bytes:
            in_arena = self.slots * self.num_steps * self.snapshot_bytes
            largest = min(largest, int(ARENA_SHARE * quota_bytes) // in_arena)
        return max(1, largest)

    def check(self, batch: int, available: int, what: str, hints: list[str]) -> None:
        """Refuse a run whose ``batch`` cannot fit ``available`` bytes, naming ``hints``."""
        needed = self.needed(batch)
        if needed > usable_bytes(available):
            n, s = self.num_qubits, self.num_steps
            todo = ", ".join(hints) or "fewer qubits or a machine with more memory"
            raise TooLargeError(
                f"{what}: {n} qubits with {s} snapshot(s) need about {format_gib(needed)} of "
                f"memory, but {format_gib(available)} is available; try {todo}"
            )
