"""Fuzzing OpenQASM 2 and 3 text: mutations of real circuits (QASMBench, tests/circuits.py)
through ``load_text`` and ``prepare``. Each input parses to a sane circuit or is refused with
one one-line :class:`~noisefs.errors.CircuitError` / :class:`~noisefs.errors.InputError`
(tests/fuzzing.py has the rule and the on-demand command)."""

from __future__ import annotations

import math
import re

from hypothesis import assume, event, example, given
from hypothesis import strategies as st
from qiskit import ClassicalRegister, QuantumCircuit, qasm3

from noisefs.errors import CircuitError, InputError
from noisefs.pipeline.budget import available_memory_bytes, max_qubits
from noisefs.sim.prepare import PreparedCircuit, prepare
from noisefs.sim.qasm import TEXT_LABEL, load_text, looks_like_qasm
from tests import circuits
from tests.conftest import QASMBENCH
from tests.fuzzing import fuzz_settings, one_error_line, outcome, run_cli

SMALL = 4096
SLOW_CLBITS = 200_000  # prepare() translates: bases above this size are parsed, not translated
BASES = {
    **{
        name: getattr(circuits, name)
        for name in ("GHZ4", "QFT4", "MIDCIRCUIT2", "QASM3", "REPETITION")
    },
    **{p.stem: p.read_text() for p in sorted(QASMBENCH.glob("*.qasm"))},
    # OpenQASM 3: what the importer takes (gate modifiers, loops, branches, aliases, boxes)
    "oq3_features": """OPENQASM 3.0;
include "stdgates.inc";
qubit[3] q;
bit[3] c;
qubit r;
gate g(theta) a, b { ctrl @ rx(theta) a, b; inv @ s a; pow(2) @ t b; }
g(pi/3) q[0], q[2];
for int i in {0, 1} { cx q[0], q[2]; }
c[0] = measure q[0];
while (c[0]) { x q[0]; c[0] = measure q[0]; }
if (c == 3) { h q[1]; } else { z q[1]; }
let pair = q[0:1];
cx pair[0], pair[1];
ctrl(2) @ x q[0], q[1], q[2];
negctrl @ x q[0], r;
box { U(0.1, 0.2, 0.3) q[2]; }
delay[100ns] q[0];
gphase(0.5);
barrier q;
reset q[1];
c = measure q;
""",
}
BASES.update(  # the small QASMBench circuits written out as OpenQASM 3 too
    {
        f"{p.stem}_oq3": qasm3.dumps(load_text(p.read_text(), include_dir=QASMBENCH))
        for p in sorted(QASMBENCH.glob("*.qasm"))
        if p.stat().st_size <= 2000
    }
)
ODD = [
    "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\ufeff", "\u200b", "\u200e", "\u202e",
    "\u0301", "\xa0", "\u3000", "²", "٣", "\U0001d7d8", "ｑ", "π", "é", "\x00", "\x7f",
    "\ud800", "\U0010ffff", "'", '"', "\\", "$", "#", "@", "{", "}", "[", "]", "(", ")",
    ";", ",", "->", "==", "//", "/*", "*/", "\r", "\n", "\t", " ",
]  # fmt: skip
HUGE = [
    "0", "-1", "4294967296", "9223372036854775808", "18446744073709551615",
    "18446744073709551616", "1" + "0" * 30, "9" * 401, "1e308", "1e309", "0x" + "f" * 40,
    "1_000_000_000", "00000000000000000000001", "2**64", "-0", "nan", "inf",
]  # fmt: skip


STATEMENTS = [  # inserted whole: the parsers' and the translator's corners
    "opaque g a;\ng q[0];", "U(0,0,0) q;", "rz(1e400) q[0];", "rz(0/0) q[0];", "rz(ln(0)) q[0];",
    "barrier;", "cx q[0],q[0];", "qreg r[0];", "creg d[0];", "gate g() a {}\ng q[0];",
    "if(c==1) x q[0];", "if(c==5) x q[0];", "if(c==18446744073709551617) x q[0];", "reset q;",
    "measure q[0] -> c[0];", 'include "qelib1.inc";', "CX q[0],q[1];", "rxx(0.1) q[0],q[1];",
    "gate g a { g a; }\ng q[0];", "x $0;", "x $40;", "delay[1e300s] q[0];", "bit[0] e;",
    "delay[100dt] q[0];", "for int i in {0, 1} { x q[0]; }", "pow(0.5) @ x q[0];",
    "pow(1e308) @ x q[0];", "ctrl(5) @ x q[0], q[1];", "inv @ inv @ x q[0];", "input float t;",
    "input angle a;\nrz(a) q[0];", "gphase(pi);", "U(1e308, 1e308, 1e308) q[0];",
    "if (c == 5) { x q[0]; }", "while (c == 9) { x q[0]; }", "let a = q[1:0];", "qubit[0] r;",
    "bit b = measure q[0];", "box[5ns] { x q[0]; }", "c[0] = measure q[0];",
]  # fmt: skip


def _splice(text: str, at: int, cut: int, insert: str) -> str:
    at = min(at, len(text))
    return text[:at] + insert + text[at + cut :]


@st.composite
def mutation(draw, text: str) -> str:
    """One mutation of ``text``; positions and sizes are drawn, so hypothesis shrinks them."""
    kind = draw(
        st.sampled_from(
            [
                "truncate", "flip", "odd", "huge", "register", "nest", "cr", "crlf",
                "header", "dup_line", "drop_line", "blocks", "gate_nest", "bytes", "statement",
                "statement",
            ]
        )
    )  # fmt: skip
    event(f"mutation: {kind}")
    at = draw(st.integers(0, max(len(text), 1)))
    if kind == "truncate":
        return text[:at]
    if kind == "flip":
        return _splice(text, at, 1, draw(st.characters(codec="utf-8")))
    if kind == "odd":
        return _splice(text, at, draw(st.integers(0, 2)), draw(st.sampled_from(ODD)))
    if kind == "bytes":  # a run of arbitrary code points
        return _splice(text, at, draw(st.integers(0, 8)), draw(st.text(max_size=12)))
    if kind in ("huge", "register"):
        number = draw(st.sampled_from(HUGE) | st.integers(-(2**70), 2**70).map(str))
        if kind == "register":  # every register's size, or one of them
            sizes = list(
                re.finditer(r"(?:qreg|creg)\s+\w+\s*\[(\d+)\]|(?:qubit|bit)\[(\d+)\]", text)
            )
            if sizes:
                m = draw(st.sampled_from(sizes))
                g = 1 if m.group(1) is not None else 2
                return text[: m.start(g)] + number + text[m.end(g) :]
        digits = [i for i, c in enumerate(text) if c.isdigit()]
        if not digits:
            return text + number
        i = draw(st.sampled_from(digits))
        j = i
        while j < len(text) and text[j].isdigit():
            j += 1
        return text[:i] + number + text[j:]
    if kind == "nest":  # an expression wrapped many times
        depth = draw(st.sampled_from([10, 100, 1000, 5000, 50_000]))
        inner = draw(st.sampled_from(["pi", "0.5", "-", "", "q[0]"]))
        expr = draw(st.sampled_from(["(", "-(", "sin(", "[", "{"])) * depth + inner
        closing = {"(": ")", "-(": ")", "sin(": ")", "[": "]", "{": "}"}
        if draw(st.booleans()):
            expr += "".join(reversed([closing[c] for c in expr if c in "([{"]))
        return _splice(text, at, 0, f"rz({expr}) q[0];\n")
    if kind == "blocks":  # OpenQASM 3 blocks nested
        depth = draw(st.sampled_from([10, 200, 2000]))
        body = "if (c[0]) {\n" * depth + "x q[0];\n" + "}\n" * draw(st.integers(0, depth))
        return _splice(text, at, 0, body)
    if kind == "gate_nest":  # OpenQASM 2 gates each defined by the last
        depth = draw(st.sampled_from([5, 100, 1500]))
        body = "gate g0 a { x a; }\n" + "".join(
            f"gate g{i} a {{ g{i - 1} a; }}\n" for i in range(1, depth)
        )
        return _splice(text, at, 0, body + f"g{depth - 1} q[0];\n")
    if kind == "statement":  # after the declarations, where a statement may stand
        last = max(text.rfind("creg"), text.rfind("bit["), text.rfind("qreg"), text.rfind("qubit"))
        line_end = text.find("\n", last) + 1 if last >= 0 else at
        return _splice(text, line_end or at, 0, draw(st.sampled_from(STATEMENTS)) + "\n")
    if kind == "cr":
        return text.replace("\n", "\r")
    if kind == "crlf":
        return text.replace("\n", "\r\n")
    if kind == "header":
        version = draw(st.sampled_from(["2.0", "3.0", "3", "2", "1.0", "4.0", "99", "3.1", ""]))
        return re.sub(r"OPENQASM\s+[0-9.]+", f"OPENQASM {version}", text, count=1)
    lines = text.split("\n")
    i = draw(st.integers(0, max(len(lines) - 1, 0)))
    if kind == "dup_line":
        return "\n".join(lines[: i + 1] + lines[i:])
    return "\n".join(lines[:i] + lines[i + 1 :])  # drop_line


@st.composite
def mutated(draw, bases=tuple(BASES)) -> str:
    text = BASES[draw(st.sampled_from(bases))]
    for _ in range(draw(st.integers(1, 3))):
        text = draw(mutation(text))
    return text


LIMIT = max_qubits(available_memory_bytes())


def check_circuit(qc: object) -> None:
    assert isinstance(qc, QuantumCircuit)
    assert 1 <= qc.num_qubits <= LIMIT


ALLOWED = {"rz", "sx", "x", "cx", "barrier", "measure", "reset", "delay", "id"}
CONTROL = {"if_else", "while_loop", "for_loop", "switch_case", "box", "break_loop", "continue_loop"}


def _names(circuit: QuantumCircuit) -> set[str]:
    found = set()
    for instruction in circuit.data:
        op = instruction.operation
        found.add(op.name)
        for block in getattr(op, "blocks", ()):
            found |= _names(block)
    return found


def _runs_as_written(circuit: QuantumCircuit) -> None:
    """Nothing Aer would run other than as written: finite angles, and conditions on values
    their registers can hold (Aer compares the value's low bits)."""
    for instruction in circuit.data:
        op = instruction.operation
        assert all(math.isfinite(p) for p in op.params if isinstance(p, float)), op
        condition = getattr(op, "condition", None)
        if isinstance(condition, tuple):
            target, value = condition
            width = len(target) if isinstance(target, ClassicalRegister) else 1
            assert 0 <= value < 2**width, (op.name, condition)
        for block in getattr(op, "blocks", ()):
            _runs_as_written(block)


def check_prepared(prepared: object, source: QuantumCircuit) -> None:
    assert isinstance(prepared, PreparedCircuit)
    assert prepared.num_qubits == source.num_qubits == prepared.circuit.num_qubits
    assert len(prepared.source_sha256) == 64
    assert not prepared.circuit.parameters  # ready to run: nothing left unbound
    _runs_as_written(prepared.circuit)
    unknown = _names(prepared.circuit) - ALLOWED - CONTROL
    assert all(name.startswith("save_") for name in unknown), unknown


def parse(text: str, tmp_path) -> QuantumCircuit | None:
    qc, error = outcome(load_text, text, include_dir=tmp_path, expect=CircuitError)
    if error is not None:  # it names the text (a parser's own name for it is no name)
        assert str(error).startswith(f"{TEXT_LABEL}:") and error.file in (None, TEXT_LABEL)
        event(f"refused: {type(error).__name__}")
        return None
    check_circuit(qc)
    event("parsed")
    return qc


@fuzz_settings(ci=150)
@given(text=mutated())
@example(text="OPENQASM 2.0;\nqreg q[1];\nrz(" + "(" * 5000 + "pi" + ")" * 5000 + ") q[0];\n")
@example(text='OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[18446744073709551616];\nh q[0];\n')
@example(text='OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nrz(1e309) q[0];\n')
@example(text=circuits.GHZ4.replace("\n", "\r"))
# found: a parser message without a single quote named the text "'<input>" (qasm.py)
@example(text='OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nrz(((pi) q[0];\n')
# found: 50,000 nested parentheses took antlr 35 s to refuse, without a header (oq3.py)
@example(text="rz(" + "-(" * 50_000 + "pi) q[0];\n")
def test_mutated_openqasm_parses_or_is_one_circuit_error(text, tmp_path):
    parse(text, tmp_path)


@fuzz_settings(ci=100)
@given(text=mutated(tuple(k for k, v in BASES.items() if len(v) <= SMALL)))
# found: an OpenQASM 3 input was left unbound, for Aer to refuse after the arena opened
@example(text=circuits.GHZ4.replace("h q[0];", "h q[0];\nrz(1e400) q[1];"))  # an infinite angle
@example(text=circuits.GHZ4.replace("measure q -> c;", "measure q -> c;\nif(c==17) x q[0];"))
@example(text='OPENQASM 3.0;\ninclude "stdgates.inc";\ninput float t;\nqubit q;\nrx(t) q;\n')
def test_mutated_openqasm_prepares_or_is_one_input_error(text, tmp_path):
    qc = parse(text, tmp_path)
    if qc is None:
        return
    if qc.num_clbits > SLOW_CLBITS:  # allowed by the memory budget, ~15 s per million to prepare
        event("prepare skipped: many classical bits")
        return
    source = text if looks_like_qasm(text) else qc
    prepared, error = outcome(prepare, source, expect=InputError)
    if error is None:
        check_prepared(prepared, qc)
        event("prepared")
    else:
        event(f"prepare refused: {type(error).__name__}")


@fuzz_settings(ci=100)
@given(text=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_random_text_parses_or_is_one_circuit_error(text, tmp_path):
    parse(text, tmp_path)


@fuzz_settings(ci=3, full=25)
@given(text=mutated(tuple(k for k, v in BASES.items() if len(v) <= SMALL)))
def test_cli_refuses_a_bad_circuit_file_in_one_line(text, tmp_path_factory):
    """``noisefs run`` on a generated circuit file that does not parse: exit 2 and one
    ``noisefs: error:`` line that names the file."""
    folder = tmp_path_factory.mktemp("bad-circuit")
    _, error = outcome(load_text, text, include_dir=folder, expect=CircuitError)
    assume(error is not None)
    path = folder / "bad.qasm"
    path.write_text(text, encoding="utf-8", errors="surrogatepass", newline="")
    line = one_error_line(run_cli(path))
    assert f"{path}" in line
