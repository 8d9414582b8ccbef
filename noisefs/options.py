"""Options of a run: one table of option specs drives the CLI's argparse, ``noisefs.run``'s
keyword arguments and ``noisefs.managed``'s, validated once into a frozen dataclass.

Adding an option is one :class:`OptionSpec` row (and a :class:`RunOptions` field when
the run reads it); a test checks that every CLI flag has its keyword and the reverse.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from noisefs.errors import InputError
from noisefs.observables import Observable, load_observables_file, parse_observables
from noisefs.units import parse_duration, parse_size

STORES = ("factored", "dense")
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


# -- value parsers (each names the option it reads in its messages) ----------------------


# Every count reaches numpy, SQLite or Aer's C++ configuration as a signed 64-bit integer.
_INT64_MAX = 2**63 - 1
_MAX_AER_THREADS = 4096  # Aer's thread option is a C int; more threads than this help no one


def _shown(number: int) -> str:
    """An integer for a message: written out when short, as its size when not."""
    return str(number) if abs(number) < 10**30 else f"an integer of {number.bit_length()} bits"


def _integer(minimum: int = 1, maximum: int = _INT64_MAX) -> Callable[[str, object], int]:
    def parse(flag: str, value: object) -> int:
        if isinstance(value, bool):
            raise InputError(f"{flag} must be an integer, not {value!r}")
        text = None if isinstance(value, int) else str(value).strip()
        if text is not None and len(text) > 40:
            raise InputError(f"{flag} must be an integer of at most {maximum}, not {text[:20]}...")
        try:
            number = value if text is None else int(text)
        except ValueError:
            raise InputError(f"{flag} must be an integer, not {value!r}") from None
        if number < minimum:
            raise InputError(f"{flag} must be at least {minimum}, not {_shown(number)}")
        if number > maximum:
            raise InputError(f"{flag} must be at most {maximum}, not {_shown(number)}")
        return number

    return parse


def _seed(flag: str, value: object) -> int:
    return _integer(minimum=0)(flag, value)  # below 2**63, as Aer's seed_simulator


def _optimize(flag: str, value: object) -> int:
    level = _integer(minimum=0)(flag, value)
    if level > 3:
        raise InputError(f"{flag} takes 0, 1, 2 or 3, not {level}")
    return level


def _size(flag: str, value: object) -> int:
    return parse_size(value)


def _duration(flag: str, value: object) -> float:
    return parse_duration(value)


def _positive_float(flag: str, value: object) -> float:
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float (and its repr beyond int()'s digits)
        shown = _shown(value) if isinstance(value, int) else f"a {type(value).__name__} too large"
        raise InputError(f"{flag} takes a positive number, not {shown}") from None
    except (TypeError, ValueError):
        raise InputError(f"{flag} takes a positive number, not {value!r}") from None
    if not (number > 0 and math.isfinite(number)):
        raise InputError(f"{flag} must be a positive finite number, not {number}")
    return number


def _path(flag: str, value: object) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise InputError(f"{flag} must be a file or directory path, not {value!r}")
    return Path(value).expanduser()


def _store(flag: str, value: object) -> str:
    if str(value) not in STORES:
        raise InputError(f"{flag} takes 'factored' or 'dense', not {value!r}")
    return str(value)


def _text(flag: str, value: object) -> str:
    return str(value)


def _flag(flag: str, value: object) -> bool:
    return bool(value)


def _negated(flag: str, value: object) -> bool:
    return not value  # --no-X sets X to False


def _raw(flag: str, value: object) -> object:
    return value  # validated by its consumer (the noise model, the scheduler connection)


def parse_keep_qubits(text: str | tuple | list | int | None) -> tuple[int, ...] | None:
    """``"0,2,3"`` or a sequence of ints → sorted unique tuple."""
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        text = [text]
    try:
        items = text.split(",") if isinstance(text, str) else list(text)
        values = [int(str(item).strip()) for item in items if str(item).strip()]
    except (TypeError, ValueError):
        raise InputError(
            f"--keep-qubits takes comma-separated qubit indices, not {text!r}"
        ) from None
    if len(set(values)) != len(values):
        raise InputError(f"--keep-qubits names a qubit twice: {text!r}")
    # the reduced state keeps Qiskit's order: the lowest kept qubit is least significant
    qubits = sorted(values)
    if not qubits or qubits[0] < 0:
        raise InputError(f"--keep-qubits takes non-negative qubit indices, not {text!r}")
    return tuple(qubits)


def _keep(flag: str, value: object) -> tuple[int, ...] | None:
    return parse_keep_qubits(value)  # type: ignore[arg-type]


def _observables(flag: str, value: object) -> tuple[Observable, ...]:
    return parse_observables(value)


def _observables_file(flag: str, value: object) -> tuple[Observable, ...]:
    if isinstance(value, (list, tuple)):  # the flag given more than once
        return tuple(o for path in value for o in load_observables_file(str(path)))
    return load_observables_file(str(value))


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


def _default_shown(value: object) -> str:  # not _shown: that one writes integers in messages
    if isinstance(value, float):
        return f"{value:g}s"  # the float defaults are durations
    return str(value)


SIM, NOISE, OUT, ARENA = "simulation", "noise", "output", "arena and execution"
OPTIONS: tuple[OptionSpec, ...] = (
    _spec("trajectories", ("--trajectories", "-k"), "number of trajectories (default {default})", SIM, _integer(), metavar="K"),
    _spec("seed", ("--seed",), "trajectory i uses Aer shot seed S+i (default: random, recorded)", SIM, _seed, metavar="S"),
    _spec("snapshots", ("--snapshots",), "final | barriers (default) | layers | every:N", SIM, _text, metavar="WHEN"),
    _spec("optimize", ("--optimize",), "transpiler optimization level (default {default}: every gate you wrote suffers noise)", SIM, _optimize, metavar="N"),
    _spec("seed_transpiler", ("--seed-transpiler",), "transpiler seed (default {default})", SIM, _integer(minimum=0), metavar="S"),
    _spec("target_tol", ("--target-tol",), "stop once every <Z_q> standard error is at most X", SIM, _positive_float, metavar="X"),
    _spec("t1", ("--t1",), "T1 relaxation time, e.g. 50us or 50e-6", NOISE, _raw, field=None),
    _spec("t2", ("--t2",), "T2 dephasing time (at most 2*T1)", NOISE, _raw, field=None),
    _spec("time_1q", ("--time-1q",), "duration of sx and x, e.g. 50ns", NOISE, _raw, field=None),
    _spec("time_2q", ("--time-2q",), "duration of cx, e.g. 300ns", NOISE, _raw, field=None),
    _spec("p1", ("--p1",), "1-qubit depolarizing probability", NOISE, _raw, field=None),
    _spec("p2", ("--p2",), "2-qubit depolarizing probability", NOISE, _raw, field=None),
    _spec("readout", ("--readout",), "symmetric readout flip probability (default 0)", NOISE, _raw, field=None),
    _spec("calibration", ("--calibration",), "JSON or TOML file with per-qubit T1/T2 and per-gate errors", NOISE, _raw, field=None, metavar="FILE"),
    _spec("backend", ("--backend",), "a device's noise instead of the rule: a fake device of qiskit_ibm_runtime.fake_provider (FakeTorino, FakeSherbrooke, ...); the circuit is transpiled to it and run on the qubits it uses", NOISE, _raw, field=None, metavar="NAME"),
    _spec("output", ("--output", "-o"), "result file (default <circuit stem>.noisefs.npz beside the circuit)", OUT, _path, metavar="PATH"),
    _spec("max_dm_qubits", ("--max-dm-qubits",), "keep full density matrices up to N qubits (default {default})", OUT, _integer(minimum=0), metavar="N"),
    _spec("keep_qubits", ("--keep-qubits",), "keep the reduced density matrix of these qubits, e.g. 0,1,2", OUT, _keep, metavar="LIST"),
    _spec("observable", ("--observable",), "an observable to average, with its standard error, at every snapshot: a Pauli label (ZZIII), a sparse one (Z0 Z3) or a sum (0.5*Z0 Z1 - 1.2*X0); repeatable", OUT, _observables, field="observables", metavar="SPEC", repeatable=True),
    _spec("observables_file", ("--observables",), "a JSON or TOML file of names to observables", OUT, _observables_file, field="observables", metavar="FILE", repeatable=True, field_alias=False),
    _spec("no_probabilities", ("--no-probabilities",), "keep no 2^n probabilities per snapshot (<Z>, observables and rho as asked; for 20+ qubits)", OUT, _negated, field="probabilities", is_flag=True, field_alias=False),
    _spec("resume", ("--resume",), "continue the interrupted run that writes the same --output", OUT, _flag, is_flag=True),
    _spec("checkpoint_interval", ("--checkpoint-interval",), "seconds between checkpoints beside --output (default {default}; stretched if writing them is slow)", OUT, _duration, field="checkpoint_interval_s", metavar="SECONDS"),
    _spec("arena", ("--arena",), "arena root (default /dev/shm/noisefs-<uid>)", ARENA, _path, field="arena_root", metavar="DIR", aliases=("root",), managed=True),
    _spec("quota", ("--quota",), "arena quota, e.g. 512MiB; stored in the arena for every later user (default: the arena's stored quota, 1GiB for a new arena)", ARENA, _size, field="quota_bytes", metavar="SIZE", managed=True),
    _spec("max_files", ("--max-files",), "arena inode bound; stored like --quota (default: the stored one, 10000 for a new arena)", ARENA, _integer(), metavar="N", managed=True),
    _spec("spill", ("--spill",), "spill directory (default ~/.cache/noisefs/spill)", ARENA, _path, field="spill_dir", metavar="DIR", managed=True),
    _spec("spill_quota", ("--spill-quota",), "bound of the spill tier (default: leave 5%% of its filesystem free)", ARENA, _size, field="spill_quota_bytes", metavar="SIZE", managed=True),
    _spec("put_timeout", ("--put-timeout",), "how long a snapshot waits for arena space before failing (default {default})", ARENA, _duration, field="put_timeout_s", metavar="SECONDS", managed=True),
    _spec("batch", ("--batch",), "trajectories per Aer job (default: sized by measured cost)", ARENA, _integer(), metavar="B", managed=True),
    _spec("workers", ("--workers",), "local worker processes (default {default}: one simulation thread)", ARENA, _integer(), metavar="W"),
    _spec("aer_threads", ("--aer-threads",), "Aer threads per simulating process (default: the cores, shared among the workers)", ARENA, _integer(maximum=_MAX_AER_THREADS), metavar="N"),
    _spec("store", ("--store",), "snapshot form (default {default}: psi; dense: rho)", ARENA, _store, choices=STORES),
    _spec("scheduler", ("--scheduler",), "run on a Dask cluster, e.g. tcp://127.0.0.1:8786", ARENA, _raw, metavar="ADDR"),
    _spec("scheduler_file", ("--scheduler-file",), "run on the Dask cluster of this scheduler file", ARENA, _path, metavar="FILE"),
)  # fmt: skip
BY_KEYWORD: dict[str, OptionSpec] = {
    keyword: spec for spec in OPTIONS for keyword in (spec.name, *spec.aliases)
}


def add_arguments(parser: argparse.ArgumentParser, specs=OPTIONS) -> None:
    """Add ``specs`` to ``parser`` in their groups (every default None: unset)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
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


_QUOTABLE_BITS = 14_000  # str() of an int raises beyond 4,300 digits (about 14,284 bits)
_QUOTABLE_DEPTH = 8


def _unquotable(value: object, depth: int = 0) -> str | None:
    if isinstance(value, int) and value.bit_length() > _QUOTABLE_BITS:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        if depth >= _QUOTABLE_DEPTH:
            return f"containers nested more than {_QUOTABLE_DEPTH} deep"
        items = [x for kv in value.items() for x in kv] if isinstance(value, dict) else value
        for item in items:
            why = _unquotable(item, depth + 1)
            if why is not None:
                return why
    return None


def check_quotable(flag: str, value: object) -> None:
    """Refuse a value no message can quote, before any parser tries: ``str()`` of an integer
    of more than 4,300 digits raises ``ValueError`` and ``repr()`` of a list nested a
    thousand deep ``RecursionError``; no option takes either."""
    why = _unquotable(value)
    if why is not None:
        raise InputError(f"{flag} takes no value holding {why}")


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
    from noisefs.sim.noise import noise_params

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
        from noisefs.sim.noise_model import GivenNoise

        return options, GivenNoise.from_model(noise_model)
    from noisefs.sim.device import DeviceNoise, load_backend

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
    from qiskit import QuantumCircuit

    if isinstance(circuit, QuantumCircuit):
        return circuit
    raise InputError(
        f"circuit must be a file path, OpenQASM text or a QuantumCircuit, not {type(circuit).__name__}"
    )


def _check_dask(fields: dict) -> None:
    """``--scheduler``/``--scheduler-file``: one of them, and the Dask extra installed."""
    import importlib.util

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
