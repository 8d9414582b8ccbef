"""Options of a run: one table of option specs drives the CLI's argparse, ``noisefs.run``'s
keyword arguments and ``noisefs.managed``'s, validated once into a frozen dataclass.

Adding an option is one :class:`OptionSpec` row (and a :class:`RunOptions` field when
the run reads it); a test checks that every CLI flag has its keyword and the reverse.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from noisefs import option_values as values
from noisefs.errors import InputError
from noisefs.observables import Observable
from noisefs.option_values import STORES, check_quotable
from noisefs.sim.device import DeviceNoise, load_backend
from noisefs.sim.noise import noise_params
from noisefs.sim.noise_model import GivenNoise

DEFAULT_TRAJECTORIES = 1000
DEFAULT_MAX_DM_QUBITS = 12
DEFAULT_PUT_TIMEOUT_S = 120.0  # the arena's too (Arena(timeout_s=...)) and managed's
DEFAULT_SEED_TRANSPILER = 1234


@dataclass(frozen=True)
class RunOptions:
    """Everything that shapes a run. Units are in the names; sizes in bytes, times in seconds.

    ``circuit`` is a file path, OpenQASM text or a ``QuantumCircuit``."""

    circuit: object
    trajectories: int = DEFAULT_TRAJECTORIES
    seed: int | None = None
    snapshots: str = "barriers"
    output: Path | None = None
    arena_root: Path | None = None
    quota_bytes: int | None = None
    max_files: int | None = None
    spill_dir: Path | None = None
    spill_quota_bytes: int | None = None
    batch: int | None = None
    workers: int = 1
    aer_threads: int | None = None  # per simulating process; None: the cores, shared out
    store: str = "factored"
    scheduler: object | None = None  # an address or a distributed.Client
    scheduler_file: Path | None = None
    resume: bool = False
    optimize: int = 0
    seed_transpiler: int = DEFAULT_SEED_TRANSPILER
    max_dm_qubits: int = DEFAULT_MAX_DM_QUBITS
    keep_qubits: tuple[int, ...] | None = None
    target_tol: float | None = None
    put_timeout_s: float = DEFAULT_PUT_TIMEOUT_S
    checkpoint_interval_s: float = 5.0
    observables: tuple[Observable, ...] = ()
    probabilities: bool = True  # keep the 2ⁿ probabilities of each snapshot

    def replace(self, **changes) -> RunOptions:
        return dataclasses.replace(self, **changes)


# -- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionSpec:
    """One option: its keyword, its CLI flags, how to validate it and where it goes.

    ``field`` is the :class:`RunOptions` field it sets, or ``None`` for a noise parameter
    (passed to :func:`noisefs.sim.noise.noise_params`). ``aliases`` are further keyword
    names accepted from Python (the field's own name among them)."""

    name: str
    flags: tuple[str, ...]
    help: str
    group: str
    parse: Callable[[str, object], object]
    field: str | None = None
    metavar: str | None = None
    aliases: tuple[str, ...] = ()
    is_flag: bool = False
    repeatable: bool = False  # the flag may be given more than once (a list of values)
    choices: tuple[str, ...] | None = None
    managed: bool = False  # also an option of noisefs.managed(...)

    @property
    def flag(self) -> str:
        return self.flags[0]

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def _spec(name, flags, help, group, parse, field="", **kw) -> OptionSpec:
    field = name if field == "" else field
    if "{default}" in help:  # the default shown is RunOptions' own: written once
        help = help.replace("{default}", _default_shown(_RUN_DEFAULTS[field]))
    # the field's name is a keyword too, unless another option owns it (--observables FILE)
    own_field = () if not kw.pop("field_alias", True) else (field,)
    aliases = tuple(a for a in own_field if a and a != name) + kw.pop("aliases", ())
    return OptionSpec(name, tuple(flags), help, group, parse, field, aliases=aliases, **kw)


_RUN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunOptions)}


def _default_shown(
    value: object,
) -> str:  # not option_values.shown: that one writes integers in messages
    if isinstance(value, float):
        return f"{value:g}s"  # the float defaults are durations
    return str(value)


SIM, NOISE, OUT, ARENA = "simulation", "noise", "output", "arena and execution"
OPTIONS: tuple[OptionSpec, ...] = (
    _spec("trajectories", ("--trajectories", "-k"), "number of trajectories (default {default})", SIM, values.integer(), metavar="K"),
    _spec("seed", ("--seed",), "trajectory i uses Aer shot seed S+i (default: random, recorded)", SIM, values.seed, metavar="S"),
    _spec("snapshots", ("--snapshots",), "final | barriers (default) | layers | every:N", SIM, values.text, metavar="WHEN"),
    _spec("optimize", ("--optimize",), "transpiler optimization level (default {default}: every gate you wrote suffers noise)", SIM, values.optimize, metavar="N"),
    _spec("seed_transpiler", ("--seed-transpiler",), "transpiler seed (default {default})", SIM, values.integer(minimum=0), metavar="S"),
    _spec("target_tol", ("--target-tol",), "stop once every <Z_q> standard error is at most X", SIM, values.positive_float, metavar="X"),
    _spec("t1", ("--t1",), "T1 relaxation time, e.g. 50us or 50e-6", NOISE, values.raw, field=None),
    _spec("t2", ("--t2",), "T2 dephasing time (at most 2*T1)", NOISE, values.raw, field=None),
    _spec("time_1q", ("--time-1q",), "duration of sx and x, e.g. 50ns", NOISE, values.raw, field=None),
    _spec("time_2q", ("--time-2q",), "duration of cx, e.g. 300ns", NOISE, values.raw, field=None),
    _spec("p1", ("--p1",), "1-qubit depolarizing probability", NOISE, values.raw, field=None),
    _spec("p2", ("--p2",), "2-qubit depolarizing probability", NOISE, values.raw, field=None),
    _spec("readout", ("--readout",), "symmetric readout flip probability (default 0)", NOISE, values.raw, field=None),
    _spec("calibration", ("--calibration",), "JSON or TOML file with per-qubit T1/T2 and per-gate errors", NOISE, values.raw, field=None, metavar="FILE"),
    _spec("backend", ("--backend",), "a device's noise instead of the rule: a fake device of qiskit_ibm_runtime.fake_provider (FakeTorino, FakeSherbrooke, ...); the circuit is transpiled to it and run on the qubits it uses", NOISE, values.raw, field=None, metavar="NAME"),
    _spec("output", ("--output", "-o"), "result file (default <circuit stem>.noisefs.npz beside the circuit)", OUT, values.path, metavar="PATH"),
    _spec("max_dm_qubits", ("--max-dm-qubits",), "keep full density matrices up to N qubits (default {default})", OUT, values.integer(minimum=0), metavar="N"),
    _spec("keep_qubits", ("--keep-qubits",), "keep the reduced density matrix of these qubits, e.g. 0,1,2", OUT, values.keep, metavar="LIST"),
    _spec("observable", ("--observable",), "an observable to average, with its standard error, at every snapshot: a Pauli label (ZZIII), a sparse one (Z0 Z3) or a sum (0.5*Z0 Z1 - 1.2*X0); repeatable", OUT, values.observables, field="observables", metavar="SPEC", repeatable=True),
    _spec("observables_file", ("--observables",), "a JSON or TOML file of names to observables", OUT, values.observables_file, field="observables", metavar="FILE", repeatable=True, field_alias=False),
    _spec("no_probabilities", ("--no-probabilities",), "keep no 2^n probabilities per snapshot (<Z>, observables and rho as asked; for 20+ qubits)", OUT, values.negated, field="probabilities", is_flag=True, field_alias=False),
    _spec("resume", ("--resume",), "continue the interrupted run that writes the same --output", OUT, values.flag, is_flag=True),
    _spec("checkpoint_interval", ("--checkpoint-interval",), "seconds between checkpoints beside --output (default {default}; stretched if writing them is slow)", OUT, values.duration, field="checkpoint_interval_s", metavar="SECONDS"),
    _spec("arena", ("--arena",), "arena root (default /dev/shm/noisefs-<uid>)", ARENA, values.path, field="arena_root", metavar="DIR", aliases=("root",), managed=True),
    _spec("quota", ("--quota",), "arena quota, e.g. 512MiB; stored in the arena for every later user (default: the arena's stored quota, 1GiB for a new arena)", ARENA, values.size, field="quota_bytes", metavar="SIZE", managed=True),
    _spec("max_files", ("--max-files",), "arena inode bound; stored like --quota (default: the stored one, 10000 for a new arena)", ARENA, values.integer(), metavar="N", managed=True),
    _spec("spill", ("--spill",), "spill directory (default ~/.cache/noisefs/spill)", ARENA, values.path, field="spill_dir", metavar="DIR", managed=True),
    _spec("spill_quota", ("--spill-quota",), "bound of the spill tier (default: leave 5%% of its filesystem free)", ARENA, values.size, field="spill_quota_bytes", metavar="SIZE", managed=True),
    _spec("put_timeout", ("--put-timeout",), "how long a snapshot waits for arena space before failing (default {default})", ARENA, values.duration, field="put_timeout_s", metavar="SECONDS", managed=True),
    _spec("batch", ("--batch",), "trajectories per Aer job (default: sized by measured cost)", ARENA, values.integer(), metavar="B", managed=True),
    _spec("workers", ("--workers",), "local worker processes (default {default}: one simulation thread)", ARENA, values.integer(), metavar="W"),
    _spec("aer_threads", ("--aer-threads",), "Aer threads per simulating process (default: the cores, shared among the workers)", ARENA, values.integer(maximum=values.MAX_AER_THREADS), metavar="N"),
    _spec("store", ("--store",), "snapshot form (default {default}: psi; dense: rho)", ARENA, values.store, choices=STORES),
    _spec("scheduler", ("--scheduler",), "run on a Dask cluster, e.g. tcp://127.0.0.1:8786", ARENA, values.raw, metavar="ADDR"),
    _spec("scheduler_file", ("--scheduler-file",), "run on the Dask cluster of this scheduler file", ARENA, values.path, metavar="FILE"),
)  # fmt: skip
BY_KEYWORD: dict[str, OptionSpec] = {
    keyword: spec for spec in OPTIONS for keyword in (spec.name, *spec.aliases)
}


def add_arguments(parser: argparse.ArgumentParser, specs=OPTIONS) -> None:
    """Add ``specs`` to ``parser`` in their groups (every default None: unset)."""
    groups: dict[str, Any] = {}  # argparse's group class is private
    for spec in specs:
        title = spec.group
        if spec.group == NOISE:
            title = (
                "noise (defaults: T1 50us, T2 70us, 1q gate 50ns, 2q gate 300ns, p1 1e-3, p2 1e-2)"
            )
        group = groups.setdefault(spec.group, parser.add_argument_group(title))
        if spec.is_flag:
            group.add_argument(
                *spec.flags, dest=spec.name, action="store_true", default=None, help=spec.help
            )
        else:
            group.add_argument(
                *spec.flags, dest=spec.name, default=None, metavar=spec.metavar,
                choices=spec.choices, help=spec.help,
                action="append" if spec.repeatable else "store",
            )  # fmt: skip


def split_options(**kwargs) -> tuple[dict, dict]:
    """Validate keyword options by the table: (RunOptions fields, noise parameters).

    Unknown names are refused by name; ``None`` means unset."""
    fields: dict = {}
    noise: dict = {}
    for keyword, value in kwargs.items():
        spec = BY_KEYWORD.get(keyword)
        if spec is None:
            raise InputError(f"unknown run option {keyword!r}")
        if value is None:
            continue
        check_quotable(spec.flag, value)
        if spec.field is None:
            noise[spec.name] = value
        elif spec.field == "observables" and spec.field in fields:  # --observable and a file
            fields[spec.field] = _joined(fields[spec.field], spec.parse(spec.flag, value))
        else:
            fields[spec.field] = spec.parse(spec.flag, value)
    return fields, noise


def _joined(first: tuple[Observable, ...], second: tuple[Observable, ...]) -> tuple:
    names = {o.name for o in first}
    doubled = sorted(o.name for o in second if o.name in names)
    if doubled:
        raise InputError(f"observable name(s) given twice: {', '.join(doubled)}")
    return first + second


def make_options(circuit: object, **kwargs) -> RunOptions:
    """Validate user-facing option values (human units allowed) into :class:`RunOptions`.

    Noise options are refused here: :func:`make_run` takes both."""
    fields, noise = split_options(**kwargs)
    if noise:
        raise InputError(f"noise options {sorted(noise)} go to noisefs.sim.noise.noise_params")
    return _run_options(circuit, fields)


def make_run(circuit: object, noise_model: object | None = None, **kwargs):
    """``(RunOptions, NoiseSource)`` from the keyword options of ``noisefs.run``: the noise
    rule with its parameters, a user's ``noise_model``, or a device (``backend``)."""
    fields, noise = split_options(**kwargs)
    options = _run_options(circuit, fields)
    backend = noise.pop("backend", None)
    if noise_model is not None and backend is not None:
        raise InputError("give noise_model= or backend=, not both")
    if noise_model is None and backend is None:
        return options, noise_params(**noise)
    if noise:
        which = "noise_model=" if noise_model is not None else "backend="
        raise InputError(
            f"{which} replaces the noise rule: drop {', '.join(sorted(noise))} (or put them "
            "into the model)"
        )
    if noise_model is not None:
        return options, GivenNoise.from_model(noise_model)
    return options, DeviceNoise(load_backend(backend))


def _run_options(circuit: object, fields: dict) -> RunOptions:
    if "scheduler" in fields or "scheduler_file" in fields:
        _check_dask(fields)
    return RunOptions(circuit=circuit_source(circuit), **fields)


def circuit_source(circuit: object) -> object:
    """A path stays a :class:`Path`; a ``QuantumCircuit`` and OpenQASM text pass as they are
    (text: a string that holds a newline or starts with ``OPENQASM``)."""
    if isinstance(circuit, os.PathLike):
        return Path(circuit)
    if isinstance(circuit, str):
        if not circuit.strip():
            raise InputError("circuit must be a file path, OpenQASM text or a QuantumCircuit")
        if "\n" in circuit or circuit.lstrip().upper().startswith("OPENQASM"):
            return circuit
        return Path(circuit)
    from qiskit import QuantumCircuit  # lazy: qiskit loads with a run, not with the CLI

    if isinstance(circuit, QuantumCircuit):
        return circuit
    raise InputError(
        f"circuit must be a file path, OpenQASM text or a QuantumCircuit, not {type(circuit).__name__}"
    )


def _check_dask(fields: dict) -> None:
    """``--scheduler``/``--scheduler-file``: one of them, and the Dask extra installed."""
    if "scheduler" in fields and "scheduler_file" in fields:
        raise InputError("give --scheduler or --scheduler-file, not both")
    if importlib.util.find_spec("noisefs.execute.dask") is None:
        raise InputError(
            "running on a Dask cluster is not available in this version of noisefs; "
            "use --workers N for local processes"
        )
    if importlib.util.find_spec("distributed") is None:
        raise InputError("--scheduler needs Dask: pip install 'noisefs[dask]'")


def default_output(circuit: Path) -> Path:
    """``<circuit stem>.noisefs.npz`` beside the circuit."""
    return circuit.with_name(f"{circuit.stem}.noisefs.npz")
