"""How noisefs.aerscope is put together: its imports go one way (no import inside a function
to dodge a cycle), and a batched job reads the arena's figures through the pipeline's sampler,
not once per batch."""

from __future__ import annotations

import ast
import inspect
import time
from pathlib import Path

from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

import noisefs.aerscope
from noisefs.aerscope import job, managed
from noisefs.arena import Arena
from noisefs.pipeline.metadata import ArenaSampler
from tests.test_managed import noise_model

PACKAGE = Path(noisefs.aerscope.__file__).parent
PREFIX = "noisefs.aerscope."


def imports(path: Path) -> tuple[set[str], list[tuple[str, int]]]:
    """(aerscope modules imported at top level, (module, line) of each import of an aerscope
    module inside a function or method)."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    nested: list[tuple[str, int]] = []

    def names(node) -> list[str]:
        if isinstance(node, ast.ImportFrom) and node.module:
            return [node.module]
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        return []

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            for name in names(child):
                if name.startswith(PREFIX):
                    if in_function:
                        nested.append((name.removeprefix(PREFIX), child.lineno))
                    elif not _under_type_checking(tree, child):
                        top.add(name.removeprefix(PREFIX))
            visit(child, inside)

    visit(tree, False)
    return top, nested


def _under_type_checking(tree: ast.Module, node: ast.AST) -> bool:
    for block in tree.body:
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING":
            if any(node is n for b in block.body for n in ast.walk(b)):
                return True
    return False


def graph() -> dict[str, set[str]]:
    return {p.stem: imports(p)[0] for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_top_level_imports_have_no_cycle():
    edges = graph()
    for module in edges:
        assert module not in reachable(edges, module), module
    # the scopes' state has a module of its own, imported at top level by both sides
    assert "registry" in edges["intercept"] and "registry" in edges["scope"]
    assert not {"scope", "intercept", "job"} & reachable(edges, "registry")


def test_no_import_inside_a_function_dodges_a_cycle():
    """An aerscope import inside a function is only a lazy one (its comment says so), of a
    module that does not import the importer back."""
    edges = graph()
    for path in PACKAGE.glob("*.py"):
        lines = path.read_text().splitlines()
        for module, line in imports(path)[1]:
            assert path.stem not in reachable(edges, module) | {module}, (path.name, module)
            above = "\n".join(lines[max(0, line - 5) : line])
            assert "lazy" in above, (path.name, line)


def test_the_job_runner_is_typed_with_the_scope():
    hints = inspect.signature(job.run_managed).parameters
    assert hints["scope"].annotation == "Scope"


def test_arena_figures_are_sampled_not_taken_per_batch(arena_root, tmp_path, monkeypatch):
    calls = []
    stats = Arena.stats

    def counted(self):
        calls.append(time.monotonic())
        return stats(self)

    monkeypatch.setattr(Arena, "stats", counted)
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.measure(0, 0)
    qc.save_statevector(label="sv", pershot=True)
    qc.measure(1, 1)
    sim = AerSimulator(noise_model=noise_model(), method="statevector")
    with managed(batch=2, quiet=True, root=arena_root, spill_dir=tmp_path / "s", quota="8MiB"):
        started = time.monotonic()
        got = sim.run(qc, shots=120, seed_simulator=3).result()
        elapsed = time.monotonic() - started
    note = got.metadata["noisefs"]
    assert note["batches"] == 60
    # one at the job's start, at most one per interval, one at its end
    assert len(calls) <= 2 + elapsed / ArenaSampler.MIN_INTERVAL_S + 1 and len(calls) < 60
    figures = note["arena"]
    assert figures["snapshots"] == 60 and figures["peak_bytes"] > 0 and figures["peak_files"] > 0
    assert figures["spilled_bytes"] == 0 and figures["quota_bytes"] == 8 * 2**20
