"""A circuit ready to run: taken from a file, text or a ``QuantumCircuit``, final
measurements stripped, translated (:class:`PreparedCircuit`, :func:`prepare`)."""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from qiskit import QuantumCircuit
from qiskit.circuit import ClassicalRegister, Clbit

from noisefs.errors import CircuitError, InputError
from noisefs.sim.declarations import check_qubit_count
from noisefs.sim.device_layout import DeviceLayout, route_to_device
from noisefs.sim.measurements import strip_counted
from noisefs.sim.noise import BASIS_GATES
from noisefs.sim.qasm import TEXT_LABEL, load_file, load_text, looks_like_qasm
from noisefs.sim.snapshots import executed_qasm
from noisefs.sim.translate import translate

__all__ = ["CircuitSource", "PreparedCircuit", "circuit_sha256", "prepare"]

CircuitSource = str | os.PathLike | QuantumCircuit
SourceKind = Literal["file", "text", "circuit"]

_AUTO_NAME = re.compile(r"circuit-\d+")  # what Qiskit names a circuit nobody named
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, eq=False)
class PreparedCircuit:
    """A circuit ready to run: loaded, final measurements stripped, translated.

    ``path`` is the file as given (``None`` for text or a ``QuantumCircuit``); ``label`` is
    what messages call the circuit (the path, ``<OpenQASM text>`` or ``circuit 'NAME'``);
    ``name`` is a short name made of ``[A-Za-z0-9._-]`` for run names and default outputs
    (the file stem, the circuit's ``.name``, or ``"circuit"``). ``source_sha256``: see
    :func:`prepare`.
    """

    path: str | None
    source_sha256: str
    circuit: QuantumCircuit = field(repr=False)
    num_qubits: int
    num_clbits: int
    removed_measurements: int = 0
    optimization_level: int = 0
    seed_transpiler: int = 1234
    name: str = "circuit"
    label: str = "circuit"
    source_kind: SourceKind = "file"
    layout: DeviceLayout | None = None  # where the qubits went on a device (``device=``)


def _short_name(raw: str | None) -> str:
    if not raw or _AUTO_NAME.fullmatch(raw):
        return "circuit"
    safe = _UNSAFE.sub("_", raw).strip("._")[:64]
    return safe or "circuit"


def circuit_sha256(qc: QuantumCircuit) -> str | None:
    """SHA-256 of a ``QuantumCircuit``'s QPY serialisation (``qiskit.qpy.dump``).

    QPY is deterministic for one Qiskit version (the same circuit built twice, in any
    process, gives the same bytes) and covers what OpenQASM export cannot (opaque gates,
    unitaries, classical expressions). Should QPY refuse a circuit, its OpenQASM 3 text is
    hashed instead; ``None`` when neither can write it (:func:`prepare` then hashes the
    executed circuit's OpenQASM text).
    """
    from qiskit import qasm3, qpy  # lazy: qiskit's QASM 3 and QPY modules, when asked

    try:
        buffer = io.BytesIO()
        qpy.dump(qc, buffer)
        data = buffer.getvalue()
    except Exception:
        try:
            data = qasm3.dumps(qc).encode("utf-8")
        except Exception:
            return None
    return hashlib.sha256(data).hexdigest()


def _check_circuit(qc: QuantumCircuit, label: str) -> None:
    if qc.num_qubits == 0:
        raise CircuitError(f"{label}: the circuit has no qubits; declare some with qreg or qubit")
    check_qubit_count(qc.num_qubits, label)
    _check_parameters(qc, label, "bind them with QuantumCircuit.assign_parameters")


def _check_parameters(qc: QuantumCircuit, label: str, hint: str, file: str | None = None) -> None:
    if qc.parameters:
        names = ", ".join(p.name for p in list(qc.parameters)[:5])
        more = "" if len(qc.parameters) <= 5 else f" and {len(qc.parameters) - 5} more"
        raise CircuitError(
            f"{label}: the circuit has unbound parameters ({names}{more}); {hint} before "
            "running it",
            file=file,
        )


_INPUTS_HINT = "replace each OpenQASM 3 'input' by its value"


def _check_values(qc: QuantumCircuit, label: str, file: str | None) -> None:
    """Refuse what Aer would run, but not as written: a non-finite gate angle (``rz(1e400)``
    reads as infinity), and a condition on a value its register cannot hold (Aer compares
    ``c == 5`` on a 2-bit register as ``c == 1``: the value's low bits)."""
    for instruction in qc.data:
        op = instruction.operation
        for value in op.params:
            if isinstance(value, float) and not math.isfinite(value):
                raise CircuitError(
                    f"{label}: {op.name} has the angle {value}; give a finite number", file=file
                )
        condition = getattr(op, "condition", None)  # (bit or register, value); or an Expr
        if isinstance(condition, tuple) and isinstance(condition[0], (Clbit, ClassicalRegister)):
            target, value = condition
            width = 1 if isinstance(target, Clbit) else len(target)
            if not 0 <= int(value) < 2**width:
                what = "bit" if width == 1 else f"{width}-bit register"
                raise CircuitError(
                    f"{label}: a condition compares a {what} with {_shown(int(value))}, a value "
                    "it never holds (Aer would compare its low bits); compare with what it can "
                    "hold",
                    file=file,
                )
        for block in getattr(op, "blocks", ()):
            _check_values(block, label, file)


def _shown(number: int) -> str:
    return str(number) if abs(number) < 10**30 else f"an integer of {number.bit_length()} bits"


def _load(
    source: CircuitSource,
) -> tuple[QuantumCircuit, str | None, str | None, str, str, SourceKind]:
    """(circuit, sha256, path, label, name, kind) of any accepted source."""
    if isinstance(source, QuantumCircuit):
        label = f"circuit {source.name!r}"
        _check_circuit(source, label)
        return source, circuit_sha256(source), None, label, _short_name(source.name), "circuit"
    if isinstance(source, str) and looks_like_qasm(source):
        qc = load_text(source)
        _check_parameters(qc, TEXT_LABEL, _INPUTS_HINT)
        digest = hashlib.sha256(source.encode("utf-8", errors="replace")).hexdigest()
        return qc, digest, None, TEXT_LABEL, "circuit", "text"
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not isinstance(path, str):
            path = os.fsdecode(path)
        qc, data = load_file(path)
        _check_parameters(qc, path, _INPUTS_HINT, file=path)
        digest = hashlib.sha256(data).hexdigest()
        return qc, digest, path, path, _short_name(Path(path).stem), "file"
    raise InputError(
        "a circuit is a path to an OpenQASM file, OpenQASM text (str) or a "
        f"qiskit.QuantumCircuit, not {type(source).__name__}"
    )


def prepare(
    source: CircuitSource,
    optimization_level: int = 0,
    seed_transpiler: int = 1234,
    basis: tuple[str, ...] = BASIS_GATES,
    device: object | None = None,
) -> PreparedCircuit:
    """Load, strip final measurements and translate a circuit; errors name where it came from.

    ``source`` is one of:

    * a ``pathlib.Path`` (or any ``os.PathLike``): always a file name;
    * a ``str``: OpenQASM text when it contains a line break or starts (after whitespace
      and comments) with its ``OPENQASM`` header, otherwise a file name. One-line text
      without a header therefore reads as a file name; give it its header. Includes in
      text are looked up in the working directory;
    * a ``qiskit.QuantumCircuit`` (not modified; unbound parameters are refused).

    The same circuit as a file, as that file's text, or as the ``QuantumCircuit`` that
    :func:`~noisefs.sim.qasm.load_circuit` reads from it gives the same executed circuit.
    With ``device`` (a ``BackendV2``) the circuit is transpiled to the device instead and
    cut down to the qubits it uses (:func:`~noisefs.sim.device_layout.route_to_device`).
    ``source_sha256`` is the SHA-256 of the file's bytes, of the text's UTF-8 bytes (so the
    text of a UTF-8 file hashes like the file), or of a ``QuantumCircuit``'s QPY bytes
    (:func:`circuit_sha256`; of the executed circuit's OpenQASM text should neither QPY nor
    OpenQASM 3 write it). Errors are :class:`CircuitError` naming the file and line
    where known (``<OpenQASM text>:LINE`` for text, ``circuit 'NAME'`` for a circuit).
    """
    source_qc, digest, path, label, name, kind = _load(source)
    _check_values(source_qc, label, path)
    stripped, removed = strip_counted(source_qc)
    layout = None
    try:
        if device is None:
            executed = translate(stripped, optimization_level, seed_transpiler, basis)
        else:
            executed, layout = route_to_device(
                stripped, device, optimization_level, seed_transpiler
            )
    except CircuitError as exc:
        raise CircuitError(f"{label}: {exc}", file=path, line=exc.line) from None
    except InputError as exc:
        raise InputError(f"{label}: {exc}") from None
    if digest is None:
        digest = hashlib.sha256(executed_qasm(executed).encode("utf-8")).hexdigest()
    return PreparedCircuit(
        path=path,
        source_sha256=digest,
        circuit=executed,
        num_qubits=executed.num_qubits,
        num_clbits=executed.num_clbits,
        removed_measurements=removed,
        optimization_level=optimization_level,
        seed_transpiler=seed_transpiler,
        name=name,
        label=label,
        source_kind=kind,
        layout=layout,
    )
