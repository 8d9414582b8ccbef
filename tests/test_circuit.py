"""noisefs.sim.circuit: loading, final-measurement stripping, translation, snapshots, export."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import ClassicalRegister, QuantumRegister
from qiskit.quantum_info import DensityMatrix, Statevector
from qiskit_aer import AerSimulator

from noisefs.errors import CircuitError, InputError
from noisefs.sim.circuit import (
    ALLOWED_NON_GATES,
    BASIS_GATES,
    executed_qasm,
    insert_saves,
    load_circuit,
    prepare,
    snapshot_points,
    strip_final_measurements,
    translate,
)

QASMBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "circuits" / "qasmbench"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BENCH = sorted(QASMBENCH.glob("*.qasm")) if QASMBENCH.is_dir() else []
BROKEN = "vqe_uccsd_n4.qasm"  # measures register q, which it never declares (line 225)

needs_bench = pytest.mark.skipif(not BENCH, reason=f"QASMBench subset not found at {QASMBENCH}")


def write(tmp_path: Path, text: str | bytes, name: str = "c.qasm") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def names(qc: QuantumCircuit) -> list[str]:
    return [inst.operation.name for inst in qc.data]


def all_names(qc: QuantumCircuit) -> set[str]:
    out = set()
    for inst in qc.data:
        out.add(inst.operation.name)
        for block in getattr(inst.operation, "blocks", ()):
            out |= all_names(block)
    return out


def dm(qc: QuantumCircuit, shots: int = 1) -> np.ndarray:
    """Noiseless density matrix averaged over ``shots`` (exact without mid-circuit measurement)."""
    c = qc.copy()
    c.save_density_matrix(label="rho")
    result = AerSimulator(method="statevector").run(c, shots=shots, seed_simulator=1).result()
    return np.asarray(result.data(0)["rho"])


# ------------------------------------------------------------------------------------ loading


@needs_bench
@pytest.mark.parametrize("path", BENCH, ids=[p.name for p in BENCH])
def test_qasmbench_loads_and_prepares(path):
    if path.name == BROKEN:
        with pytest.raises(CircuitError) as info:
            load_circuit(path)
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"{path}:225: ")
        assert "'q'" in message
        return
    prepared = prepare(path)
    assert prepared.num_qubits >= 2
    assert all_names(prepared.circuit) <= set(BASIS_GATES) | ALLOWED_NON_GATES
    assert len(prepared.source_sha256) == 64


@needs_bench
def test_qasmbench_has_crlf_and_non_ascii_files():
    raw = {p.name: p.read_bytes() for p in BENCH}
    crlf = [n for n, b in raw.items() if b"\r\n" in b]
    non_ascii = [n for n, b in raw.items() if any(x > 127 for x in b)]
    assert crlf and non_ascii
    for name in crlf + non_ascii:
        assert load_circuit(QASMBENCH / name).num_qubits > 0


@needs_bench
def test_qasmbench_midcircuit_measurement_kept():
    prepared = prepare(QASMBENCH / "ipea_n2.qasm")
    assert prepared.removed_measurements == 1  # only the last one, into c[3]
    assert names(prepared.circuit).count("measure") == 3
    assert names(prepared.circuit).count("if_else") == 11


def test_legacy_gates_crlf_latin1_comment(tmp_path):
    text = (
        "// Gr\xfc\xdfe aus K\xf6ln\r\n"  # Latin-1 bytes in a comment
        'OPENQASM 2.0;\r\ninclude "qelib1.inc";\r\nqreg q[3];\r\n'
        "sx q[0]; swap q[0],q[1]; cswap q[0],q[1],q[2]; cu1(pi/4) q[0],q[1];\r\n"
        "rzz(0.3) q[1],q[2]; cp(0.2) q[0],q[2]; c3x q[0],q[1],q[2],q[0];\r\n"
    ).replace("c3x q[0],q[1],q[2],q[0];", "ccx q[0],q[1],q[2];")
    path = write(tmp_path, text.encode("latin-1"))
    qc = load_circuit(path)
    assert qc.num_qubits == 3
    assert names(qc)[:4] == ["sx", "swap", "cswap", "cu1"]


def test_utf8_comment_and_bom(tmp_path):
    path = write(
        tmp_path, '\ufeff// ψ — état\nOPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\nh q[0];\n'
    )
    assert names(load_circuit(path)) == ["h"]


def test_non_utf8_outside_comment_is_reported_with_line(tmp_path):
    path = write(tmp_path, b'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q\xe9[1];\n')
    with pytest.raises(CircuitError, match=r"c\.qasm:3: byte 0xe9 is not UTF-8"):
        load_circuit(path)


def test_include_beside_file(tmp_path):
    write(tmp_path, "gate mygate a { x a; }\n", "mine.inc")
    path = write(
        tmp_path,
        'OPENQASM 2.0;\ninclude "qelib1.inc";\ninclude "mine.inc";\nqreg q[1];\nmygate q[0];\n',
    )
    assert names(translate(load_circuit(path))) == ["x"]


def test_qasm3_and_headerless(tmp_path):
    qc = load_circuit(EXAMPLES / "midcircuit.qasm")
    assert {"measure", "reset", "if_else"} <= set(names(qc))
    headerless2 = write(tmp_path, 'include "qelib1.inc";\nqreg q[2];\ncx q[0],q[1];\n', "h2.qasm")
    assert names(load_circuit(headerless2)) == ["cx"]
    headerless3 = write(
        tmp_path, 'include "stdgates.inc";\nqubit[2] q;\ncx q[0], q[1];\n', "h3.qasm"
    )
    assert names(load_circuit(headerless3)) == ["cx"]


@pytest.mark.parametrize(
    "text, pattern",
    [
        (
            'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nfoo q[0];\n',
            r"c\.qasm:4: 'foo' is not defined",
        ),
        ('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[0]\n', r"c\.qasm:4: .*';'"),
        ("OPENQASM 2.0;\nqreg q[2];\nh q[0];\n", r'c\.qasm:3: .*include "qelib1\.inc"'),
        ('OPENQASM 2.0;\ninclude "nothere.inc";\n', r"c\.qasm:2: .*nothere\.inc"),
        ('OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nfoo q[0];\n', r"c\.qasm:4: .*foo"),
        ("OPENQASM 3.0;\nqubit[2] q;\n\nh q[0]\nx q[1];\n", r"c\.qasm:5: syntax error"),
        (
            'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg s[1];\n',
            r"c\.qasm:4: 's' is already defined .*rename s",
        ),
        ("OPENQASM 4.0;\nqreg q[1];\n", r"c\.qasm:1: OPENQASM 4\.0 is not supported"),
        (
            'OPENQASM 2.0;\ninclude "qelib1.inc";\ncreg c[2];\n',
            r"c\.qasm: the circuit has no qubits",
        ),
        ("   \n\n", r"c\.qasm: the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", r"c\.qasm: is a binary file"),
        ("this is not a circuit\n", r"c\.qasm:1: .*no OPENQASM header"),
    ],
)
def test_bad_circuits_give_one_line(tmp_path, text, pattern):
    path = write(tmp_path, text)
    with pytest.raises(CircuitError, match=pattern) as info:
        load_circuit(path)
    assert "\n" not in str(info.value)


def test_missing_directory_unreadable(tmp_path):
    with pytest.raises(CircuitError, match="no such file"):
        load_circuit(tmp_path / "absent.qasm")
    with pytest.raises(CircuitError, match="is a directory"):
        load_circuit(tmp_path)
    if os.geteuid() != 0:
        path = write(tmp_path, "OPENQASM 2.0;\nqreg q[1];\n")
        path.chmod(0)
        with pytest.raises(CircuitError, match="permission denied"):
            load_circuit(path)


# ------------------------------------------------------------------------- final measurements


def test_strip_final_measurements_basic():
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.barrier()
    qc.measure([0, 1], [0, 1])
    qc.barrier()  # barriers after do not act
    out = strip_final_measurements(qc)
    assert names(out) == ["h", "cx", "barrier", "barrier"]
    assert out.num_clbits == 2 and out.cregs == qc.cregs


def test_measurement_read_by_later_condition_is_kept():
    q, c = QuantumRegister(2, "q"), ClassicalRegister(2, "c")
    qc = QuantumCircuit(q, c)
    qc.h(0)
    qc.measure(0, 0)
    with qc.if_test((c, 1)):  # register condition reads c[0]
        qc.x(1)
    qc.measure(1, 1)
    out = strip_final_measurements(qc)
    assert names(out) == ["h", "measure", "if_else"]
    bit = QuantumCircuit(2, 2)
    bit.measure(0, 0)
    with bit.if_test((bit.clbits[0], True)):
        bit.x(1)
    assert names(strip_final_measurements(bit)) == ["measure", "if_else"]


def test_measurement_followed_by_gate_or_reset_kept():
    qc = QuantumCircuit(1, 1)
    qc.measure(0, 0)
    qc.x(0)
    assert names(strip_final_measurements(qc)) == ["measure", "x"]
    qc = QuantumCircuit(1, 1)
    qc.measure(0, 0)
    qc.reset(0)
    assert names(strip_final_measurements(qc)) == ["measure", "reset"]


def test_remeasurement():
    # same qubit: the first is followed by an operation on its qubit, the second is final
    qc = QuantumCircuit(1, 1)
    qc.h(0)
    qc.measure(0, 0)
    qc.measure(0, 0)
    assert names(strip_final_measurements(qc)) == ["h", "measure"]
    # same bit, other qubit: overwriting is not reading, so the first is final as well
    qc = QuantumCircuit(2, 1)
    qc.measure(0, 0)
    qc.measure(1, 0)
    assert names(strip_final_measurements(qc)) == []
    # ... unless something reads the bit between the two
    qc = QuantumCircuit(3, 1)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], True)):
        qc.x(2)
    qc.measure(1, 0)
    assert names(strip_final_measurements(qc)) == ["measure", "if_else"]


def test_measurements_inside_control_flow():
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], True)) as else_:
        qc.x(1)
        qc.measure(1, 1)  # final inside the branch
    with else_:
        qc.measure(1, 1)
        qc.x(1)  # not final: the x acts after it
    out = strip_final_measurements(qc)
    true_body, false_body = out.data[-1].operation.blocks
    assert names(true_body) == ["x"]
    assert names(false_body) == ["measure", "x"]
    loop = QuantumCircuit(1, 1)
    with loop.while_loop((loop.clbits[0], False)):
        loop.h(0)
        loop.measure(0, 0)
    out = strip_final_measurements(loop)
    assert names(out.data[0].operation.blocks[0]) == ["h", "measure"]


def test_qiskit_would_strip_more():
    """Qiskit's own helper drops a measurement a later condition reads; we keep it."""
    qc = QuantumCircuit(2, 1)
    qc.h(0)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], True)):
        qc.x(1)
    assert names(strip_final_measurements(qc)).count("measure") == 1


# ---------------------------------------------------------------------------------- translate


def _random_circuit() -> QuantumCircuit:
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.ry(0.3, 1)
    qc.swap(0, 2)
    qc.cp(0.7, 1, 2)
    qc.u(0.1, 0.2, 0.3, 0)
    qc.ccx(0, 1, 2)
    qc.t(1)
    qc.x(2)
    return qc


def test_translate_basis_and_qubit_order():
    qc = _random_circuit()
    out = translate(qc)
    assert set(names(out)) <= set(BASIS_GATES)
    assert Statevector(out).equiv(Statevector(qc))
    assert list(out.qubits) == list(qc.qubits)


def test_translate_keeps_identity_pairs_and_barriers():
    qc = QuantumCircuit(2)
    qc.x(0)
    qc.x(0)
    qc.barrier()
    qc.cx(0, 1)
    qc.cx(0, 1)
    assert names(translate(qc)) == ["x", "x", "barrier", "cx", "cx"]
    assert names(translate(qc, optimization_level=2)) == ["barrier"]


def test_translate_is_deterministic_and_layer_ordered():
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.h(1)
    first, second = translate(qc), translate(qc)
    assert executed_qasm(first) == executed_qasm(second)
    # rz q0, rz q1, sx q0, sx q1, rz q0, rz q1: layers are contiguous
    assert names(first) == ["rz", "rz", "sx", "sx", "rz", "rz"]
    assert [first.find_bit(i.qubits[0]).index for i in first.data] == [0, 1, 0, 1, 0, 1]


def test_nothing_written_after_a_partial_barrier_moves_before_it(tmp_path):
    path = write(
        tmp_path,
        'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nx q[0];\nbarrier q[0];\nx q[1];\nx q[1];\n',
    )
    executed = prepare(path).circuit
    assert names(executed) == ["x", "barrier", "x", "x"]
    (barrier_step, end) = snapshot_points(executed, "barriers")
    assert (barrier_step, end) == (2, 4)  # the state there has x on q0 only


def test_box_scopes_are_inlined(tmp_path):
    path = write(
        tmp_path,
        'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nh q[0];\nbox { cx q[0], q[1]; }\n',
    )
    executed = prepare(path).circuit
    assert "box" not in all_names(executed) and names(executed)[-1] == "cx"


def test_translate_control_flow_and_noiseless_equivalence():
    qc = load_circuit(EXAMPLES / "midcircuit.qasm")
    stripped = strip_final_measurements(qc)
    out = translate(stripped)
    assert all_names(out) <= set(BASIS_GATES) | ALLOWED_NON_GATES
    assert np.allclose(dm(out, 100), dm(stripped, 100), atol=1e-10)


def test_translate_bad_level():
    with pytest.raises(InputError):
        translate(QuantumCircuit(1), optimization_level=7)


# ---------------------------------------------------------------------------------- snapshots


def _snap_circuit() -> QuantumCircuit:
    qc = QuantumCircuit(3)
    qc.x(0)  # 0  layer 1
    qc.x(1)  # 1  layer 1
    qc.barrier()  # 2
    qc.cx(0, 1)  # 3  layer 2
    qc.x(2)  # 4  layer 2 (its wire is at 1 after the barrier)
    qc.cx(1, 2)  # 5  layer 3
    qc.barrier()  # 6  (at the end: collapses with the end)
    return qc


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("final", [7]),
        ("barriers", [3, 7]),
        ("layers", [2, 5, 7]),
        ("every:1", [1, 2, 4, 5, 7]),
        ("every:2", [2, 5, 7]),
        ("every:3", [4, 7]),
        ("every:5", [7]),
        ("every:100", [7]),
        (" Barriers ", [3, 7]),
    ],
)
def test_snapshot_points(mode, expected):
    assert snapshot_points(_snap_circuit(), mode) == expected


def test_snapshot_points_layers_on_unordered_circuit():
    qc = QuantumCircuit(2)
    qc.x(0)  # layer 1
    qc.x(0)  # layer 2
    qc.x(1)  # layer 1: no prefix holds exactly layer 1 ...
    qc.cx(0, 1)  # layer 3
    assert snapshot_points(qc, "layers") == [3, 4]
    assert snapshot_points(translate(qc), "layers") == [2, 3, 4]  # ... after translate it does


def test_snapshot_points_empty_and_barrier_only():
    assert snapshot_points(QuantumCircuit(1), "barriers") == [0]
    qc = QuantumCircuit(1)
    qc.barrier()
    assert snapshot_points(qc, "barriers") == [1]
    assert snapshot_points(qc, "layers") == [1]


@pytest.mark.parametrize(
    "mode", ["", "all", "every", "every:", "every:0", "every:-1", "every:1.5", "layer", None, 3]
)
def test_bad_snapshot_mode(mode):
    with pytest.raises(InputError, match="final, barriers, layers or every:N"):
        snapshot_points(_snap_circuit(), mode)


def test_insert_saves_positions_and_states():
    qc = _snap_circuit()
    steps = snapshot_points(qc, "every:2")
    with_saves, labels = insert_saves(qc, steps, label_prefix="p")
    assert labels == ["p0", "p1", "p2"]
    got = names(with_saves)
    assert got == [
        "x",
        "x",
        "save_statevector",
        "barrier",
        "cx",
        "x",
        "save_statevector",
        "cx",
        "barrier",
        "save_statevector",
    ]
    assert all(
        len(i.qubits) == 3 for i in with_saves.data if i.operation.name == "save_statevector"
    )
    assert names(qc).count("save_statevector") == 0  # the input is untouched
    data = (
        AerSimulator(method="statevector")
        .run(with_saves, shots=2, seed_simulator=3)
        .result()
        .data(0)
    )
    for label, step in zip(labels, steps, strict=True):
        assert len(data[label]) >= 1  # pershot (Aer keeps one entry for a noiseless circuit)
        prefix = qc.copy_empty_like()
        for inst in qc.data[:step]:
            prefix.append(inst)
        assert Statevector(data[label][0]).equiv(Statevector(prefix))
    start, labels0 = insert_saves(qc, [0])
    assert names(start)[0] == "save_statevector" and labels0 == ["s0"]


@pytest.mark.parametrize("steps", [[2, 1], [1, 1], [-1], [8], [1.5]])
def test_insert_saves_rejects_bad_steps(steps):
    with pytest.raises(ValueError):
        insert_saves(_snap_circuit(), steps)


# -------------------------------------------------------------------------------- export, prepare


def _roundtrip(tmp_path, qc: QuantumCircuit) -> QuantumCircuit:
    text = executed_qasm(qc)
    return load_circuit(write(tmp_path, text, "executed.qasm")), text


def test_executed_qasm_roundtrip_qasm2(tmp_path):
    prepared = prepare(EXAMPLES / "qft_6.qasm")
    back, text = _roundtrip(tmp_path, prepared.circuit)
    assert text.startswith("OPENQASM 2.0;")
    assert names(back) == names(prepared.circuit)
    assert np.allclose(dm(back), dm(prepared.circuit), atol=1e-12)
    assert executed_qasm(back) == text


def test_executed_qasm_roundtrip_qasm3(tmp_path):
    prepared = prepare(EXAMPLES / "midcircuit.qasm")
    back, text = _roundtrip(tmp_path, prepared.circuit)
    assert text.startswith("OPENQASM 3.0;")
    assert names(back) == names(prepared.circuit)
    assert np.allclose(dm(back, 200), dm(prepared.circuit, 200), atol=1e-12)
    # averaged over trajectories, qubit 0 ends as a classical fair coin
    rho = DensityMatrix(dm(back, 400))
    assert abs(rho.probabilities([0])[1] - 0.5) < 0.1
    assert abs(rho.data[0, 1]) < 1e-12


def test_executed_qasm_roundtrip_arbitrary_angles(tmp_path):
    qc = QuantumCircuit(2)
    qc.u(1.2345678901234567, 0.1111111111111113, 2.987654321987654, 0)
    qc.rzz(0.123456789, 0, 1)
    out = translate(qc)
    back, _ = _roundtrip(tmp_path, out)
    assert np.abs(dm(back) - dm(out)).max() < 1e-12


def test_prepare(tmp_path):
    prepared = prepare(EXAMPLES / "ghz_5.qasm")
    assert prepared.num_qubits == 5 and prepared.num_clbits == 5
    assert prepared.removed_measurements == 5
    assert "measure" not in names(prepared.circuit)
    import hashlib

    assert (
        prepared.source_sha256 == hashlib.sha256((EXAMPLES / "ghz_5.qasm").read_bytes()).hexdigest()
    )
    assert snapshot_points(prepared.circuit, "barriers") == [5, 7, 10]
    rho = dm(prepared.circuit)
    assert (
        np.isclose(rho[0, 0], 0.5)
        and np.isclose(rho[31, 31], 0.5)
        and np.isclose(abs(rho[0, 31]), 0.5)
    )
    opaque = write(
        tmp_path, 'OPENQASM 2.0;\ninclude "qelib1.inc";\nopaque magic a;\nqreg q[1];\nmagic q[0];\n'
    )
    with pytest.raises(CircuitError, match=r"c\.qasm: cannot translate"):
        prepare(opaque)


# --------------------------------------------------------------------- sources: path, text, circuit

SOURCES = [p for p in sorted(EXAMPLES.glob("*.qasm")) + BENCH if p.name != BROKEN]


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_file_text_and_circuit_give_the_same_executed_circuit(path):
    from_file = prepare(path)
    data = path.read_bytes()
    text = data.decode("utf-8", errors="replace")
    from_text = prepare(text)
    from_circuit = prepare(load_circuit(path))
    expected = executed_qasm(from_file.circuit)
    assert executed_qasm(from_text.circuit) == expected
    assert executed_qasm(from_circuit.circuit) == expected
    assert from_file.removed_measurements == from_text.removed_measurements
    assert from_file.removed_measurements == from_circuit.removed_measurements
    assert (from_file.path, from_file.label, from_file.name) == (str(path), str(path), path.stem)
    assert from_file.source_kind == "file" and from_file.source_sha256 == sha256(data)
    assert from_text.source_kind == "text" and from_text.path is None
    assert from_text.label == "<OpenQASM text>" and from_text.name == "circuit"
    assert from_text.source_sha256 == sha256(text.encode("utf-8"))
    if data.decode("utf-8", errors="replace").encode("utf-8") == data:
        assert from_text.source_sha256 == from_file.source_sha256  # the text of a UTF-8 file
    assert from_circuit.source_kind == "circuit" and from_circuit.path is None
    assert len(from_circuit.source_sha256) == 64


def sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_path_or_text_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; x q[0];'
    assert prepare(one_line).source_kind == "text"  # header: text, even on one line
    assert prepare("  // hi\n" + one_line).source_kind == "text"
    assert prepare('include "qelib1.inc";\nqreg q[1];\nx q[0];\n').source_kind == "text"
    write(tmp_path, one_line, "x.qasm")
    assert prepare("x.qasm").source_kind == "file"  # no newline, no header: a file name
    assert prepare(tmp_path / "x.qasm").name == "x"
    weird = write(tmp_path, one_line, "OPENQASM 2.0;")  # a Path is always a path
    assert prepare(weird).source_kind == "file"
    with pytest.raises(CircuitError, match="no such file .*OPENQASM header"):
        prepare("qreg q[1]; x q[0];")
    with pytest.raises(InputError, match="not bytes"):
        prepare(one_line.encode())


def test_text_errors_name_the_line():
    with pytest.raises(CircuitError, match=r"^<OpenQASM text>:4: 'foo' is not defined") as info:
        prepare('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nfoo q[0];\n')
    assert info.value.line == 4 and info.value.file == "<OpenQASM text>"
    with pytest.raises(CircuitError, match=r"^<OpenQASM text>:5: syntax error"):
        prepare("OPENQASM 3.0;\nqubit[2] q;\n\nh q[0]\nx q[1];\n")
    with pytest.raises(CircuitError, match="the text is empty"):
        prepare("\n\n")
    with pytest.raises(CircuitError, match=r"^<OpenQASM text>: cannot translate"):
        prepare('OPENQASM 2.0;\ninclude "qelib1.inc";\nopaque magic a;\nqreg q[1];\nmagic q[0];\n')


def test_file_errors_carry_file_and_line(tmp_path):
    path = write(tmp_path, 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nfoo q[0];\n')
    with pytest.raises(CircuitError) as info:
        prepare(path)
    assert (info.value.file, info.value.line) == (str(path), 4)


def test_quantum_circuit_source():
    from qiskit.circuit import Gate, Parameter

    qc = QuantumCircuit(2, 2, name="bell pair!")
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    before = qc.copy()
    prepared = prepare(qc)
    assert qc == before  # not modified
    assert prepared.name == "bell_pair" and prepared.label == "circuit 'bell pair!'"
    assert prepared.removed_measurements == 2
    twin = QuantumCircuit(2, 2, name="bell pair!")
    twin.h(0)
    twin.cx(0, 1)
    twin.measure([0, 1], [0, 1])
    assert prepare(twin).source_sha256 == prepared.source_sha256  # deterministic
    twin.x(0)
    assert prepare(twin).source_sha256 != prepared.source_sha256
    assert prepare(QuantumCircuit(1)).name == "circuit"  # Qiskit's automatic name
    theta = Parameter("theta")
    free = QuantumCircuit(1)
    free.rx(theta, 0)
    with pytest.raises(CircuitError, match="unbound parameters \\(theta\\)"):
        prepare(free)
    with pytest.raises(CircuitError, match="no qubits"):
        prepare(QuantumCircuit(0, name="empty"))
    opaque = QuantumCircuit(1, name="op")
    opaque.append(Gate("magic", 1, []), [0])
    with pytest.raises(CircuitError, match="^circuit 'op': cannot translate"):
        prepare(opaque)
