// Mid-circuit measurement, reset and a classical condition (OpenQASM 3).
// Qubit 1 is prepared in |+>, measured into m[0] and reset; qubit 0 is flipped when m[0] was 1,
// so qubit 0 ends as a classical copy of a fair coin. The final measurements are stripped.
OPENQASM 3.0;
include "stdgates.inc";
qubit[3] q;
bit[1] m;
bit[3] c;
h q[1];
m[0] = measure q[1];
reset q[1];
barrier q;
if (m[0]) {
  x q[0];
}
h q[2];
cx q[2], q[1];
barrier q;
c[0] = measure q[0];
c[1] = measure q[1];
c[2] = measure q[2];
