"""An observable's forms: Pauli terms and named Pauli sums, read from what a user gives.

The forms accepted (CLI strings, files and Python objects alike):

* a Pauli label in Qiskit's order, ``"ZZIII"`` (rightmost character = qubit 0; its length
  must be the circuit's qubit count);
* a sparse label, ``"Z0 Z3"``, ``"X2"`` (a Pauli letter and a qubit index per factor);
* a weighted sum of either, ``"0.5*Z0 Z1 - 1.2*X0"``, ``"2*ZZ + XI"``;
* ``qiskit.quantum_info.Pauli`` and ``SparsePauliOp`` (Hermitian: real coefficients);
* a dict of names to any of these, or a list of them (each named by its text);
* a JSON or TOML file of names to operator strings (:func:`load_observables_file`).

:mod:`noisefs.observables` binds them to a run's qubits and computes their values.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from noisefs.errors import InputError, one_line

__all__ = [
    "Observable",
    "PauliTerm",
    "load_observables_file",
    "parse_observables",
    "sparse_term",
]

_MAX_QUBIT_INDEX = 4096
_MAX_TERMS = 4096  # per observable: a sum of more terms is a matrix, not an observable
_MAX_OBSERVABLES = 1024
_DENSE = re.compile(r"[IXYZ]+")
_FACTOR = re.compile(r"([XYZI])([0-9]+)")
_COEFF = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*\*?\s*(.*)$")


@dataclass(frozen=True)
class PauliTerm:
    """``coeff`` times a Pauli string: ``factors`` maps qubit → ``"X"``, ``"Y"`` or ``"Z"``
    (identities left out). ``width`` is the qubit count a dense label declared (0: sparse)."""

    coeff: float
    factors: tuple[tuple[int, str], ...]
    width: int = 0

    @property
    def x_mask(self) -> int:
        return sum(1 << q for q, p in self.factors if p in "XY")

    @property
    def z_mask(self) -> int:
        return sum(1 << q for q, p in self.factors if p in "YZ")

    @property
    def num_y(self) -> int:
        return sum(1 for _, p in self.factors if p == "Y")

    def label(self) -> str:
        """The sparse label, ``"X0 Z3"`` (``"I"`` for the identity)."""
        return " ".join(f"{p}{q}" for q, p in self.factors) or "I"


@dataclass(frozen=True)
class Observable:
    """A named Hermitian Pauli sum."""

    name: str
    terms: tuple[PauliTerm, ...]

    def text(self) -> str:
        """A canonical text form, readable back by :func:`parse_observables`."""
        parts = [f"{t.coeff!r}*{t.label()}" for t in self.terms]
        return " + ".join(parts).replace("+ -", "- ") if parts else "0*I"

    def largest_qubit(self) -> int:
        return max((q for t in self.terms for q, _ in t.factors), default=-1)


def sparse_term(label: str, coeff: float, name: str) -> PauliTerm:
    """The term ``coeff`` times the sparse label ``label`` (``"X0 Z3"``) of observable
    ``name``; raises :class:`InputError` naming it for anything unreadable."""
    factors: dict[int, str] = {}
    for token in label.split():
        match = _FACTOR.fullmatch(token)
        if match is None:
            raise InputError(
                f"observable {name!r}: cannot read {token!r} (a sparse factor is a Pauli "
                "letter and a qubit index, such as Z0 or X12)"
            )
        letter, index = match.group(1), match.group(2)
        if len(index) > 6 or int(index) > _MAX_QUBIT_INDEX:
            raise InputError(f"observable {name!r}: qubit index {index[:12]} is out of range")
        qubit = int(index)
        if qubit in factors:
            raise InputError(f"observable {name!r}: qubit {qubit} appears twice in {label!r}")
        if letter != "I":
            factors[qubit] = letter
    return PauliTerm(coeff, tuple(sorted(factors.items())))


def _term(text: str, coeff: float, name: str) -> PauliTerm:
    text = text.strip()
    if _DENSE.fullmatch(text):
        if len(text) > _MAX_QUBIT_INDEX:
            raise InputError(f"observable {name!r}: a label of {len(text)} letters is too long")
        width = len(text)
        factors = tuple((width - 1 - i, p) for i, p in enumerate(text) if p != "I")
        return PauliTerm(coeff, tuple(sorted(factors)), width)
    if text == "":
        raise InputError(f"observable {name!r}: a term has no Pauli label")
    return sparse_term(text, coeff, name)


def _split_terms(text: str) -> list[tuple[float, str]]:
    """``"0.5*Z0 Z1 - 1.2*X0"`` → [(0.5, "Z0 Z1"), (-1.2, "X0")]; runs of signs multiply
    (``"+ -1.0*Z0"`` is -1.0); a sign right after ``e``/``E`` belongs to an exponent."""
    terms: list[tuple[float, str]] = []
    sign = 1.0
    for piece in re.split(r"(?<![eE])([+-])", text):
        if piece in ("+", "-"):
            sign = -sign if piece == "-" else sign
            continue
        if not piece.strip():
            continue
        match = _COEFF.match(piece.strip())
        if match:
            coeff, rest = float(match.group(1)), match.group(2)
        else:
            coeff, rest = 1.0, piece
        if not math.isfinite(coeff):
            raise InputError(f"observable {text!r}: coefficient {coeff} is not finite")
        terms.append((sign * coeff, rest))
        sign = 1.0
    return terms


def _from_text(text: str, name: str) -> Observable:
    if len(text) > 100_000:
        raise InputError(f"observable {name[:40]!r}...: the text is too long")
    terms = tuple(_term(rest, coeff, name) for coeff, rest in _split_terms(text))
    if not terms:
        raise InputError(f"observable {name!r}: no Pauli term in {text!r}")
    return _observable(name, terms)


def _from_qiskit(op: object, name: str) -> Observable:
    from qiskit.quantum_info import Pauli, SparsePauliOp  # lazy: qiskit only for its operators

    if isinstance(op, Pauli):
        op = SparsePauliOp(op)
    n = op.num_qubits
    terms = []
    for label, qubits, coeff in op.to_sparse_list():
        value = complex(coeff)
        if not (math.isfinite(value.real) and math.isfinite(value.imag)):
            raise InputError(f"observable {name!r}: coefficient {value} is not finite")
        if abs(value.imag) > 1e-12 * max(1.0, abs(value.real)):
            raise InputError(
                f"observable {name!r} is not Hermitian: coefficient {value} of {label or 'I'} "
                "is not real"
            )
        factors = tuple(sorted((q, p) for p, q in zip(label, qubits, strict=True) if p != "I"))
        terms.append(PauliTerm(value.real, factors, n))
    return _observable(name, tuple(terms))


def _observable(name: str, terms: tuple[PauliTerm, ...]) -> Observable:
    if len(terms) > _MAX_TERMS:
        raise InputError(f"observable {name!r} has {len(terms)} terms (at most {_MAX_TERMS})")
    return Observable(name, terms)


def _one(value: object, name: str | None) -> Observable:
    from qiskit.quantum_info import Pauli, SparsePauliOp  # lazy: qiskit only for its operators

    if isinstance(value, str):
        return _from_text(value, name or " ".join(value.split()))
    if isinstance(value, Pauli) and value.phase % 2:
        raise InputError(f"observable {name or value}: a Pauli with phase ±i is not Hermitian")
    if isinstance(value, (Pauli, SparsePauliOp)):
        observable = _from_qiskit(value, name or "operator")
        return observable if name else Observable(observable.text(), observable.terms)
    raise InputError(
        "an observable is a Pauli label, a sum of them, a Pauli or a SparsePauliOp, not "
        f"{type(value).__name__}"
    )


def parse_observables(value: object) -> tuple[Observable, ...]:
    """The user's observables (any form of the module docstring), unbound to a qubit count;
    :class:`ObservableSet` binds and checks them. Raises :class:`InputError` naming the
    observable for anything unreadable."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
        result = tuple(_one(v, name) for name, v in items)
    elif isinstance(value, (list, tuple)):
        result = tuple(_one(v, None) for v in value)
    else:
        result = (_one(value, None),)
    if len(result) > _MAX_OBSERVABLES:
        raise InputError(f"{len(result)} observables (at most {_MAX_OBSERVABLES})")
    names = [o.name for o in result]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise InputError(f"observable name(s) given twice: {', '.join(doubled)}")
    return result


def load_observables_file(path: str | os.PathLike) -> tuple[Observable, ...]:
    """A JSON or TOML file: a table of names to operator strings (``{"zz": "Z0 Z1"}``)."""
    name = str(path)
    if "\x00" in name:  # open() would raise ValueError
        raise InputError(f"{name!r}: not a file name (it holds a NUL byte)")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(
            f"{name}: cannot read the observables file: {exc.strerror or exc}"
        ) from None
    try:
        text = data.decode("utf-8-sig")
        if Path(path).suffix.lower() == ".toml" or not text.lstrip().startswith("{"):
            table = tomllib.loads(text)
        else:
            table = json.loads(text)
    except RecursionError:
        raise InputError(f"{name}: the observables file is nested too deeply") from None
    except ValueError as exc:  # JSON, TOML and UTF-8 errors are all ValueErrors
        raise InputError(f"{name}: not a valid observables file: {one_line(exc)}") from None
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise InputError(
            f'{name}: expected a table of names to operator strings, e.g. {{"zz": "Z0 Z1"}}'
        )
    try:
        return parse_observables(table)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
