"""Circuits in: load OpenQASM 2/3, strip final measurements, translate, choose snapshot points.

The pipeline the runner uses is :func:`prepare` (load + strip + translate). Conventions:

* **Steps.** A snapshot point is a *step* ``k``: the number of top-level instructions of the
  executed circuit (``qc.data``) that have run before the snapshot. ``0`` is the initial state
  and ``len(qc.data)`` the end; the end is always the last step. A step after which only
  barriers follow collapses with the end.
* **Final measurements.** A measurement is final when nothing after it acts on its qubit and
  nothing after it reads the value it wrote. Barriers do not act; a later measurement of the
  same qubit does (of ``measure q->c0; measure q->c1`` only the second is final). A later measurement into the
  same bit overwrites the value (it is not a read), so it does not keep an earlier one alive;
  a later condition (``if``/``while``/``switch``) on the bit or on its register is a read.
  Measurements inside ``if``/``switch`` blocks are stripped by the same rule; those inside
  loops are always kept (the next iteration follows them). Registers and clbits stay.
* **Layer order.** :func:`translate` writes the executed circuit layer by layer (ASAP layers
  of the DAG, barriers placed between layers without forming one), so each layer is a
  contiguous run of ``qc.data`` and ``"layers"`` snapshots are exact DAG layers. Reordering
  operations on disjoint wires changes neither the state nor the noise (the model has no idle
  errors). The qubit order is never changed: qubit 0 is the least significant, as written.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qiskit import QuantumCircuit, qasm2, qasm3, transpile
from qiskit.circuit import CircuitInstruction, ClassicalRegister, Clbit, ControlFlowOp
from qiskit.circuit.classical import expr
from qiskit.converters import circuit_to_dag, dag_to_circuit

from noisefs.errors import CircuitError, InputError

__all__ = [
    "ALLOWED_NON_GATES",
    "BASIS_GATES",
    "PreparedCircuit",
    "executed_qasm",
    "insert_saves",
    "load_circuit",
    "prepare",
    "snapshot_points",
    "strip_final_measurements",
    "translate",
]

BASIS_GATES = ("rz", "sx", "x", "cx")
CONTROL_FLOW = frozenset({"if_else", "while_loop", "for_loop", "switch_case", "box"})
ALLOWED_NON_GATES = frozenset(
    {"measure", "reset", "barrier", "delay", "store", "break_loop", "continue_loop"} | CONTROL_FLOW
)
SNAPSHOT_MODES = "final, barriers, layers or every:N (N a whole number >= 1)"

_HEADER = re.compile(
    r"\A(?P<pre>(?:\s+|//[^\n]*(?:\n|\Z)|/\*.*?\*/)*)OPENQASM\s+(?P<version>[0-9]+(?:\.[0-9]+)?)\s*;",
    re.DOTALL,
)
_QASM2_POS = re.compile(r"^(?P<src>.*?):(?P<line>\d+),(?P<col>\d+):\s*(?P<msg>.*)$", re.DOTALL)
_QASM3_POS = re.compile(r"^(?:L)?(?P<line>\d+)(?:,|:C)(?P<col>\d+):\s*(?P<msg>.*)$", re.DOTALL)


# --------------------------------------------------------------------------------------------
# Loading


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _read_bytes(path: Path) -> bytes:
    name = str(path)
    try:
        if path.is_dir():
            raise CircuitError(f"{name}: is a directory, not an OpenQASM file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise CircuitError(f"{name}: no such file") from None
    except PermissionError:
        raise CircuitError(f"{name}: permission denied (cannot read the circuit file)") from None
    except IsADirectoryError:
        raise CircuitError(f"{name}: is a directory, not an OpenQASM file") from None
    except OSError as exc:
        raise CircuitError(f"{name}: cannot read: {exc.strerror or exc}") from None
    return data


def _decode(data: bytes, name: str) -> str:
    """The file as text: UTF-8 (BOM allowed), CRLF/CR normalised to LF.

    Bytes that are not UTF-8 are accepted inside ``//`` comments (Latin-1 comments are common
    in old suites; the parser ignores comments anyway) and rejected anywhere else.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise CircuitError(f"{name}: the file is empty; expected an OpenQASM 2 or 3 program")
    if b"\x00" in data:
        raise CircuitError(f"{name}: is a binary file, not OpenQASM text")
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Find every byte that is not UTF-8 and accept it only inside a // comment.
    offset = 0
    while offset < len(data):
        try:
            data[offset:].decode("utf-8")
            break
        except UnicodeDecodeError as exc:
            bad = offset + exc.start
            line_start = data.rfind(b"\n", 0, bad) + 1
            if b"//" not in data[line_start:bad]:
                line = data.count(b"\n", 0, bad) + 1
                raise CircuitError(
                    f"{name}:{line}: byte 0x{data[bad]:02x} is not UTF-8 text "
                    "(outside a comment); save the file as UTF-8"
                ) from None
            offset = offset + exc.end
    return data.decode("utf-8", errors="replace")


def _header_version(text: str) -> tuple[str | None, int]:
    """(``"2"``/``"3"``/other version string or None, line of the header)."""
    match = _HEADER.match(text)
    if not match:
        return None, 0
    line = match.group("pre").count("\n") + 1
    return match.group("version"), line


def _qasm2_error(name: str, exc: Exception) -> CircuitError:
    message = _one_line(str(exc).strip().strip('"'))
    match = _QASM2_POS.match(message)
    if not match:
        return CircuitError(f"{name}: {message}")
    src = name if match.group("src") in ("<input>", "") else match.group("src")
    msg = match.group("msg")
    hint = ""
    quoted = re.search(r"'([^']+)'", msg)
    word = quoted.group(1) if quoted else "it"
    if "custom instruction" in msg and "before definition" in msg:
        hint = f'; add include "qelib1.inc"; after the OPENQASM line, or define gate {word}'
    elif "is not defined in this scope" in msg:
        hint = f"; declare {word} (qreg/creg or a gate definition) before its first use"
    elif "is already defined" in msg:
        hint = (
            f"; OpenQASM 2 has one namespace for gates and registers (qelib1.inc defines gates"
            f" such as s, t, h, u), so rename {word}"
        )
    elif "unable to find" in msg:
        hint = "; put the include file beside the circuit"
    return CircuitError(f"{src}:{match.group('line')}: {msg} (column {match.group('col')}){hint}")


def _qasm3_syntax_position(text: str) -> tuple[int, int, str] | None:
    """Re-parse with a listener that records the first syntax error (the strict parser does not say)."""
    try:
        from antlr4 import CommonTokenStream, InputStream
        from antlr4.error.ErrorListener import ErrorListener
        from openqasm3 import parser as oq3
    except Exception:  # pragma: no cover - depends on openqasm3 internals
        return None
    found: list[tuple[int, int, str]] = []

    class _Record(ErrorListener):
        def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):  # noqa: N802
            if not found:
                found.append((line, column, msg))

    try:
        lexer = oq3.qasm3Lexer(InputStream(text))
        lexer.removeErrorListeners()
        lexer.addErrorListener(_Record())
        parser = oq3.qasm3Parser(CommonTokenStream(lexer))
        parser.removeErrorListeners()
        parser.addErrorListener(_Record())
        parser.program()
    except Exception:  # pragma: no cover
        pass
    return found[0] if found else None


def _qasm3_error(name: str, text: str, exc: Exception) -> CircuitError:
    message = _one_line(str(exc).strip().strip('"'))
    if not message:
        where = _qasm3_syntax_position(text)
        if where is not None:
            line, col, msg = where
            return CircuitError(f"{name}:{line}: syntax error: {_one_line(msg)} (column {col})")
        return CircuitError(f"{name}: OpenQASM 3 syntax error ({type(exc).__name__})")
    match = _QASM3_POS.match(message)
    if match:
        return CircuitError(
            f"{name}:{match.group('line')}: {match.group('msg')} (column {match.group('col')})"
        )
    return CircuitError(f"{name}: {message}")


def _loads2(text: str, name: str, include_dir: str) -> QuantumCircuit:
    try:
        return qasm2.loads(
            text,
            include_path=(include_dir,),
            custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS,
            strict=False,
        )
    except Exception as exc:
        raise _qasm2_error(name, exc) from None


def _loads3(text: str, name: str) -> QuantumCircuit:
    try:
        return qasm3.loads(text)
    except Exception as exc:
        raise _qasm3_error(name, text, exc) from None


def load_circuit(path: str | os.PathLike) -> QuantumCircuit:
    """Parse an OpenQASM 2 or 3 file, told apart by its ``OPENQASM`` header.

    OpenQASM 2 is read as real suites write it: the gates older ``qelib1.inc`` lacks (``sx``,
    ``swap``, ``cswap``, ``cu1``, ``rzz``, ``c3x`` ...), includes beside the file, CRLF line
    endings, UTF-8 or Latin-1 bytes in comments. A file without a header is tried as OpenQASM 2,
    then 3. Every failure is a one-line :class:`CircuitError` ``"<file>:<line>: <what>"``.
    """
    return _load(Path(os.fspath(path)), str(path))[0]


def _load(file: Path, name: str) -> tuple[QuantumCircuit, bytes]:
    data = _read_bytes(file)
    text = _decode(data, name)
    version, line = _header_version(text)
    include_dir = str(file.parent.resolve()) if file.parent else "."
    if version is None:
        try:
            qc = _loads2(text, name, include_dir)
        except CircuitError as first:
            try:
                qc = _loads3(text, name)
            except CircuitError:
                raise CircuitError(
                    f"{first} (the file has no OPENQASM header; it was read as OpenQASM 2, "
                    "and failed as OpenQASM 3 too)"
                ) from None
    elif version.split(".")[0] == "2":
        qc = _loads2(text, name, include_dir)
    elif version.split(".")[0] == "3":
        qc = _loads3(text, name)
    else:
        raise CircuitError(
            f"{name}:{line}: OPENQASM {version} is not supported; use OpenQASM 2.0 or 3.0"
        )
    if qc.num_qubits == 0:
        raise CircuitError(f"{name}: the circuit has no qubits; declare some with qreg or qubit")
    return qc, data


# --------------------------------------------------------------------------------------------
# Final measurements


def _expr_bits(value) -> set[Clbit]:
    bits: set[Clbit] = set()
    if value is None:
        return bits
    if isinstance(value, tuple):  # legacy (Clbit | ClassicalRegister, int) condition
        value = value[0]
    if isinstance(value, Clbit):
        return {value}
    if isinstance(value, ClassicalRegister):
        return set(value)
    if isinstance(value, expr.Expr):
        for var in expr.iter_vars(value):
            bits |= _expr_bits(var.var)
    return bits


def _read_bits(inst: CircuitInstruction) -> set[Clbit]:
    """Clbits an instruction may read: its cargs (conservative) and any condition/target/rvalue."""
    op = inst.operation
    bits = set(inst.clbits)
    for attribute in ("condition", "target", "rvalue", "lvalue"):
        bits |= _expr_bits(getattr(op, attribute, None))
    return bits


def _strip_data(
    data: Sequence[CircuitInstruction], touched: set, live: set
) -> tuple[list[CircuitInstruction], int]:
    """Backward walk; ``touched``: qubits acted on later; ``live``: clbits read later."""
    kept: list[CircuitInstruction] = []
    removed = 0
    for inst in reversed(data):
        op = inst.operation
        name = op.name
        if name == "measure":
            qubit, clbit = inst.qubits[0], inst.clbits[0]
            if qubit not in touched and clbit not in live:
                removed += 1
                touched.add(qubit)  # it still acts on its qubit: an earlier one is not final
                continue
            touched.add(qubit)
            live.discard(clbit)  # the value before this measurement is overwritten here
            kept.append(inst)
            continue
        if name == "barrier":
            kept.append(inst)
            continue
        if name in ("if_else", "switch_case"):
            blocks = []
            for block in op.blocks:
                qmap = dict(zip(block.qubits, inst.qubits, strict=True))
                cmap = dict(zip(block.clbits, inst.clbits, strict=True))
                inner_touched = {b for b, outer in qmap.items() if outer in touched}
                inner_live = {b for b, outer in cmap.items() if outer in live}
                new_data, n = _strip_data(block.data, inner_touched, inner_live)
                removed += n
                if n:
                    new_block = block.copy_empty_like()
                    for item in new_data:
                        new_block._append(item)
                    block = new_block
                blocks.append(block)
            inst = inst.replace(operation=op.replace_blocks(blocks))
        touched.update(inst.qubits)
        live |= _read_bits(inst)
        kept.append(inst)
    kept.reverse()
    return kept, removed


def _strip_counted(qc: QuantumCircuit) -> tuple[QuantumCircuit, int]:
    data, removed = _strip_data(qc.data, set(), set())
    out = qc.copy_empty_like()
    for inst in data:
        out._append(inst)
    return out, removed


def strip_final_measurements(qc: QuantumCircuit) -> QuantumCircuit:
    """A copy without final measurements (see the module docstring for the exact rule).

    Unlike Qiskit's ``remove_final_measurements`` this keeps a measurement whose bit a later
    condition reads, and keeps every register and clbit.
    """
    return _strip_counted(qc)[0]


# --------------------------------------------------------------------------------------------
# Translation


def _wires(inst: CircuitInstruction) -> set:
    return set(inst.qubits) | _read_bits(inst)


def _levels(data: Sequence[CircuitInstruction]) -> list[tuple[int, int]]:
    """ASAP layer of each instruction: ``(layer, 0)`` for an operation, ``(m, 1)`` for a
    barrier after layer ``m`` (barriers synchronise, never count). Every barrier, even a
    partial one, is a cut for the order: nothing written after it moves before it, so the
    snapshot taken there shows exactly what was written before it."""
    wire_level: dict = {}
    floor = 0  # the layer of the last barrier: nothing after it goes below
    levels = []
    for inst in data:
        wires = _wires(inst)
        depth = max((wire_level.get(w, 0) for w in wires), default=0)
        depth = max(depth, floor)
        if inst.operation.name == "barrier":
            depth = max([depth, *wire_level.values()])
            levels.append((depth, 1))
            floor = depth
        else:
            levels.append((depth + 1, 0))
            for w in wires:
                wire_level[w] = depth + 1
    return levels


def _layer_ordered(qc: QuantumCircuit) -> QuantumCircuit:
    if qc.num_vars or getattr(qc, "num_stretches", 0):
        return qc  # standalone classical variables: wires not tracked, keep Qiskit's order
    levels = _levels(qc.data)
    order = sorted(range(len(qc.data)), key=lambda i: (levels[i], i))
    if order == list(range(len(qc.data))):
        return qc
    out = qc.copy_empty_like()
    for i in order:
        out._append(qc.data[i])
    return out


def _unbox(qc: QuantumCircuit) -> QuantumCircuit:
    """Inline top-level ``box`` scopes (Aer does not run them; a box only groups)."""
    if not any(inst.operation.name == "box" for inst in qc.data):
        return qc
    out = qc.copy_empty_like()
    for inst in qc.data:
        if inst.operation.name != "box":
            out._append(inst)
            continue
        body = _unbox(inst.operation.blocks[0])
        outer = dict(zip(body.qubits, inst.qubits, strict=True))
        outer.update(zip(body.clbits, inst.clbits, strict=True))
        for nested in body.data:
            out._append(
                nested.replace(
                    qubits=[outer[q] for q in nested.qubits],
                    clbits=[outer[c] for c in nested.clbits],
                )
            )
    return out


def _is_dynamic(qc: QuantumCircuit) -> bool:
    return any(isinstance(inst.operation, ControlFlowOp) for inst in qc.data)


def _aer_ordered(qc: QuantumCircuit) -> QuantumCircuit:
    """The order in which Aer executes a circuit with control flow.

    For such circuits Aer inlines every control-flow operation between two barriers and
    runs the result through a Qiskit pass manager, whose DAG round trip re-sorts the
    independent operations between them. Randomness is drawn in execution order, so a save
    (which Aer also treats as a barrier) placed in a different order would change the
    trajectories; written in Aer's own order, saves change nothing. Plain circuits are
    executed as written.
    """
    if not _is_dynamic(qc):
        return qc
    out = qc.copy_empty_like()
    segment = qc.copy_empty_like()

    def flush() -> None:
        if segment.data:
            for inst in dag_to_circuit(circuit_to_dag(segment)).data:
                out._append(inst)
            segment.data.clear()

    for inst in qc.data:
        if isinstance(inst.operation, ControlFlowOp):
            flush()
            out._append(inst)
        else:
            segment._append(inst)
    flush()
    return out


def _check_basis(qc: QuantumCircuit, where: str = "") -> None:
    allowed = set(BASIS_GATES) | ALLOWED_NON_GATES
    for inst in qc.data:
        op = inst.operation
        if op.name not in allowed:
            raise CircuitError(
                f"{where}instruction {op.name!r} could not be translated to {', '.join(BASIS_GATES)}"
            )
        for block in getattr(op, "blocks", ()):
            _check_basis(block, where)


def translate(
    qc: QuantumCircuit, optimization_level: int = 0, seed_transpiler: int = 1234
) -> QuantumCircuit:
    """Transpile to ``rz, sx, x, cx`` (plus measure, reset, barrier, delay, control flow).

    No coupling map, so no layout or routing: qubit ``i`` stays qubit ``i``. Level 0 (the
    default) keeps every gate the user wrote (``x; x`` stays two noisy ``x``). The result is
    written in layer order (module docstring). Failures raise :class:`CircuitError`.
    """
    if not isinstance(optimization_level, int) or not 0 <= optimization_level <= 3:
        raise InputError(f"optimization level must be 0, 1, 2 or 3, not {optimization_level!r}")
    try:
        out = transpile(
            qc,
            basis_gates=list(BASIS_GATES),
            optimization_level=optimization_level,
            seed_transpiler=seed_transpiler,
        )
    except Exception as exc:
        raise CircuitError(
            f"cannot translate the circuit to {', '.join(BASIS_GATES)}: {_one_line(exc)}"
        ) from None
    if out.num_qubits != qc.num_qubits or list(out.qubits) != list(qc.qubits):
        raise CircuitError("translation changed the qubits of the circuit")  # pragma: no cover
    out = _unbox(out)
    _check_basis(out)
    return _aer_ordered(_layer_ordered(out))


# --------------------------------------------------------------------------------------------
# Snapshots


def _parse_mode(mode: str) -> tuple[str, int]:
    if not isinstance(mode, str):
        raise InputError(f"snapshot mode must be {SNAPSHOT_MODES}, not {mode!r}")
    text = mode.strip().lower()
    if text in ("final", "barriers", "layers"):
        return text, 0
    match = re.fullmatch(r"every:(\d+)", text)
    if match and int(match.group(1)) >= 1:
        return "every", int(match.group(1))
    raise InputError(f"unknown snapshot mode {mode!r}: use {SNAPSHOT_MODES}")


def snapshot_points(qc: QuantumCircuit, mode: str) -> list[int]:
    """Sorted unique steps (top-level instructions executed before each snapshot).

    * ``final``: ``[len(qc.data)]``.
    * ``barriers``: after each top-level barrier (step ``i + 1`` for a barrier at ``i``) and
      the end.
    * ``layers``: after each ASAP layer of non-barrier instructions that is a prefix of
      ``qc.data`` (every layer, for a circuit from :func:`translate`), and the end.
    * ``every:N``: after every ``N``-th top-level non-barrier instruction, and the end.

    A step followed only by barriers collapses with the end. Bad modes raise
    :class:`InputError`.
    """
    kind, every = _parse_mode(mode)
    data = qc.data
    end = len(data)
    is_barrier = [inst.operation.name == "barrier" for inst in data]
    steps: set[int] = {end}
    if kind == "barriers":
        steps |= {i + 1 for i, b in enumerate(is_barrier) if b}
    elif kind == "every":
        count = 0
        for i, b in enumerate(is_barrier):
            if not b:
                count += 1
                if count % every == 0:
                    steps.add(i + 1)
    elif kind == "layers":
        levels = [layer for (layer, bar) in _levels(data)]
        ops = [i for i in range(end) if not is_barrier[i]]
        # a cut after op ops[j] is exact when every op so far is in a layer below every op after.
        suffix_min = [0] * (len(ops) + 1)
        suffix_min[len(ops)] = 1 << 62
        for j in range(len(ops) - 1, -1, -1):
            suffix_min[j] = min(levels[ops[j]], suffix_min[j + 1])
        prefix_max = 0
        for j, i in enumerate(ops):
            prefix_max = max(prefix_max, levels[i])
            if prefix_max < suffix_min[j + 1]:
                steps.add(i + 1)
    # steps followed only by barriers are the end
    tail = end
    while tail > 0 and is_barrier[tail - 1]:
        tail -= 1
    return sorted({end if s >= tail else s for s in steps})


def insert_saves(
    qc: QuantumCircuit, steps: Iterable[int], label_prefix: str = "s"
) -> tuple[QuantumCircuit, list[str]]:
    """A copy with ``save_statevector(label=f"{label_prefix}{j}", pershot=True)`` on all qubits
    after ``steps[j]`` top-level instructions; returns it and the labels in order."""
    from qiskit_aer.library import SaveStatevector

    steps = list(steps)
    end = len(qc.data)
    if any(not isinstance(s, int) or isinstance(s, bool) for s in steps):
        raise ValueError(f"steps must be integers, not {steps!r}")
    if steps != sorted(set(steps)) or (steps and (steps[0] < 0 or steps[-1] > end)):
        raise ValueError(f"steps must be sorted, unique and within 0..{end}: {steps!r}")
    labels = [f"{label_prefix}{j}" for j in range(len(steps))]
    saves: dict[int, str] = dict(zip(steps, labels, strict=True))
    out = qc.copy_empty_like()
    qubits = tuple(qc.qubits)

    def save(step: int) -> None:
        if step in saves:
            op = SaveStatevector(qc.num_qubits, label=saves[step], pershot=True)
            out._append(CircuitInstruction(op, qubits, ()))

    for i, inst in enumerate(qc.data):
        save(i)
        out._append(inst)
    save(end)
    return out, labels


# --------------------------------------------------------------------------------------------
# Export and the whole preparation


def executed_qasm(qc: QuantumCircuit) -> str:
    """OpenQASM 2 text of the executed circuit, or OpenQASM 3 when it has control flow.

    :func:`load_circuit` reads it back to a circuit Aer simulates identically (the global phase,
    which no density matrix sees, is not written; angles within ~1e-12 are written as
    multiples of pi). The OpenQASM 2 text uses ``sx``, so plain ``qiskit.qasm2.loads`` needs
    ``custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS``.
    """
    try:
        return qasm2.dumps(qc)
    except Exception:
        pass
    try:
        return qasm3.dumps(qc)
    except Exception as exc:
        raise CircuitError(
            f"cannot write the executed circuit as OpenQASM: {_one_line(exc)}"
        ) from None


@dataclass(frozen=True, eq=False)
class PreparedCircuit:
    """A circuit ready to run: loaded, final measurements stripped, translated."""

    path: str
    source_sha256: str
    circuit: QuantumCircuit = field(repr=False)
    num_qubits: int
    num_clbits: int
    removed_measurements: int = 0
    optimization_level: int = 0
    seed_transpiler: int = 1234


def prepare(
    path: str | os.PathLike, optimization_level: int = 0, seed_transpiler: int = 1234
) -> PreparedCircuit:
    """Load, strip final measurements and translate ``path``; errors name the file."""
    name = str(path)
    source, data = _load(Path(os.fspath(path)), name)
    digest = hashlib.sha256(data).hexdigest()
    stripped, removed = _strip_counted(source)
    try:
        executed = translate(stripped, optimization_level, seed_transpiler)
    except CircuitError as exc:
        raise CircuitError(f"{name}: {exc}") from None
    return PreparedCircuit(
        path=name,
        source_sha256=digest,
        circuit=executed,
        num_qubits=executed.num_qubits,
        num_clbits=executed.num_clbits,
        removed_measurements=removed,
        optimization_level=optimization_level,
        seed_transpiler=seed_transpiler,
    )
