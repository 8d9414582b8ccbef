"""High-level-synthesis plugins are imported when a pass uses one, not when it is built.

A real plugin distribution is installed for a child process (a ``.dist-info`` with a
``qiskit.synthesis`` entry point on its ``PYTHONPATH``) whose module records its import; the
child then translates circuits as ``noisefs run`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN_MODULE = textwrap.dedent(
    """
    import os

    from qiskit import QuantumCircuit
    from qiskit.transpiler.passes.synthesis.plugin import HighLevelSynthesisPlugin

    with open(os.environ["PROBE_MARKER"], "a") as marker:
        marker.write("imported\\n")


    class ProbeSynthesis(HighLevelSynthesisPlugin):
        def run(self, high_level_object, coupling_map=None, target=None, qubits=None, **options):
            circuit = QuantumCircuit(high_level_object.num_qubits)
            circuit.x(0)
            return circuit
    """
)

CHILD = textwrap.dedent(
    """
    import json, os, sys
    from qiskit import QuantumCircuit, transpile
    from qiskit.circuit.library import QFTGate
    from noisefs.sim.translate import translate
    from noisefs.sim.synthesis_plugins import LazySynthesisPlugins

    def imported():
        path = os.environ["PROBE_MARKER"]
        return os.path.exists(path) and open(path).read().count("imported")

    qc = QuantumCircuit(3)
    qc.append(QFTGate(3), [0, 1, 2])
    qc.h(0)
    ours = translate(qc)
    after_translate = imported()
    qiskits = transpile(qc, basis_gates=["rz", "sx", "x", "cx"], optimization_level=0)
    after_transpile = imported()
    plugin = LazySynthesisPlugins().method("clifford", "noisefs_probe")
    print(json.dumps({
        "after_translate": after_translate,
        "after_transpile": after_transpile,
        "names": LazySynthesisPlugins().method_names("clifford"),
        "plugin": type(plugin).__name__,
        "same_ops": dict(ours.count_ops()) == dict(qiskits.count_ops()),
    }))
    """
)


@pytest.fixture
def probe_plugin(tmp_path: Path) -> dict[str, str]:
    """A plugin distribution on a child's path; returns the child's environment."""
    site = tmp_path / "site"
    dist = site / "noisefs_probe_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: noisefs-probe-plugin\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[qiskit.synthesis]\nclifford.noisefs_probe = noisefs_probe_plugin:ProbeSynthesis\n"
    )
    (site / "noisefs_probe_plugin.py").write_text(PLUGIN_MODULE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env["PROBE_MARKER"] = str(tmp_path / "marker")
    return env


def test_translation_imports_no_synthesis_plugin_that_it_does_not_use(probe_plugin):
    out = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=probe_plugin,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["after_translate"] == 0  # noisefs built and ran its passes without it
    assert seen["after_transpile"] == 1  # Qiskit's own transpile imports every plugin
    assert "noisefs_probe" in seen["names"]  # its name is known without importing it
    assert seen["plugin"] == "ProbeSynthesis"  # and it is there when a pass asks for it
    assert seen["same_ops"]
