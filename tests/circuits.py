"""Small circuits for end-to-end tests, as OpenQASM text."""

from __future__ import annotations

from pathlib import Path

GHZ4 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[4];
creg c[4];
h q[0];
cx q[0],q[1];
barrier q;
cx q[1],q[2];
cx q[2],q[3];
barrier q;
measure q -> c;
"""

QFT4 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[4];
x q[0];
x q[2];
barrier q;
h q[3];
cp(pi/2) q[2],q[3];
cp(pi/4) q[1],q[3];
cp(pi/8) q[0],q[3];
h q[2];
cp(pi/2) q[1],q[2];
cp(pi/4) q[0],q[2];
h q[1];
cp(pi/2) q[0],q[1];
h q[0];
swap q[0],q[3];
swap q[1],q[2];
"""

# mid-circuit measurement, reset and a classical condition (OpenQASM 2 style)
MIDCIRCUIT2 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[3];
creg m[1];
creg out[3];
h q[0];
cx q[0],q[1];
measure q[1] -> m[0];
reset q[1];
barrier q;
if(m==1) x q[2];
sx q[1];
cx q[2],q[0];
measure q -> out;
"""

QASM3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[3] q;
bit[3] c;
h q[0];
cx q[0], q[1];
c[0] = measure q[0];
reset q[0];
if (c[0]) {
  x q[2];
}
barrier q;
ry(0.3) q[1];
cx q[1], q[2];
c = measure q;
"""

# 3-qubit repetition code: encode |1>, inject an X error on data qubit 1, measure the
# syndrome with two ancillas and correct by classical condition.
REPETITION = """OPENQASM 2.0;
include "qelib1.inc";
qreg d[3];
qreg a[2];
creg syn[2];
x d[0];
cx d[0],d[1];
cx d[0],d[2];
barrier d,a;
x d[1];
barrier d,a;
cx d[0],a[0];
cx d[1],a[0];
cx d[1],a[1];
cx d[2],a[1];
measure a[0] -> syn[0];
measure a[1] -> syn[1];
if(syn==1) x d[0];
if(syn==3) x d[1];
if(syn==2) x d[2];
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path
