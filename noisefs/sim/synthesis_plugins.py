"""Qiskit's high-level-synthesis plugins, imported when a pass first uses one.

Constructing a ``HighLevelSynthesis`` pass makes Qiskit's ``HighLevelSynthesisPluginManager``
import and instantiate every installed ``qiskit.synthesis`` plugin (stevedore,
``invoke_on_load``). With qiskit-experiments installed that imports matplotlib, lmfit and
scipy.stats: seconds of start-up for plugins a translation to ``rz, sx, x, cx`` never calls.
:class:`LazySynthesisPlugins` answers the same questions from the entry points' metadata
alone (no import) and imports a plugin the first time a pass asks for it, so a pass built
with it synthesises exactly what one built with Qiskit's manager does.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points

from qiskit.transpiler.passes.synthesis import high_level_synthesis
from qiskit.transpiler.passes.synthesis.plugin import HighLevelSynthesisPluginManager

__all__ = ["LazySynthesisPlugins", "lazy_synthesis_plugins"]

GROUP = "qiskit.synthesis"

_SWAP_LOCK = threading.Lock()


class LazySynthesisPlugins(HighLevelSynthesisPluginManager):
    """A ``HighLevelSynthesisPluginManager`` that imports a plugin only when it is used.

    Names are ``<operation>.<method>``, as Qiskit requires; where two distributions register
    the same name, the first one found wins, as in stevedore's manager."""

    def __init__(self) -> None:  # Qiskit's __init__ is exactly the import this avoids
        self._entry_points: dict[str, EntryPoint] = {}
        for entry in entry_points(group=GROUP):
            self._entry_points.setdefault(entry.name, entry)
        self._instances: dict[str, object] = {}
        self._lock = threading.Lock()
        self.plugins_by_op: dict[str, list[str]] = {}
        for name in self._entry_points:
            op_name, method_name = name.split(".")
            self.plugins_by_op.setdefault(op_name, []).append(method_name)

    def method(self, op_name: str, method_name: str):
        """The plugin for ``op_name`` and ``method_name``, imported and built on first use."""
        name = f"{op_name}.{method_name}"
        with self._lock:
            if name not in self._instances:
                self._instances[name] = self._entry_points[name].load()()
            return self._instances[name]


@contextlib.contextmanager
def lazy_synthesis_plugins() -> Iterator[None]:
    """Within this block, ``HighLevelSynthesis`` passes constructed (directly or by Qiskit's
    pass-manager builders) get a :class:`LazySynthesisPlugins`. Qiskit's own name is restored
    on exit; passes built inside keep their lazy manager."""
    with _SWAP_LOCK:
        original = high_level_synthesis.HighLevelSynthesisPluginManager
        high_level_synthesis.HighLevelSynthesisPluginManager = LazySynthesisPlugins
        try:
            yield
        finally:
            high_level_synthesis.HighLevelSynthesisPluginManager = original
