"""The example notebook, executed end to end in a real Jupyter kernel (nbclient): no cell
raises, the result shows its HTML table, the plot cell an image, both progress bars (the run's
and the managed job's) reach their totals as widgets, and nothing stays in /dev/shm."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "noisy_ghz.ipynb"
KERNEL = "noisefs-test-python"


def _kernelspec(base: Path) -> Path:
    """A kernelspec that starts this interpreter (not whatever `python` is on PATH)."""
    spec = base / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    return base


def _outputs(cell) -> list:
    return list(cell.get("outputs", []))


def _cell(nb, text: str):
    """The code cell whose source contains ``text``."""
    return next(c for c in nb.cells if c.cell_type == "code" and text in c.source)


def _shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def _widget_states(nb) -> list[dict]:
    store = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    return [m["state"] for m in store.get("state", {}).values()]


def test_the_example_notebook_runs_in_a_kernel_and_shows_its_result(
    arena_root, tmp_path, monkeypatch
):
    jupyter = _kernelspec(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own inline backend
    monkeypatch.setenv("NOISEFS_EXAMPLE_ARENA", str(arena_root))
    monkeypatch.setenv("NOISEFS_EXAMPLE_SPILL", str(tmp_path / "spill"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    before = _shm()

    client = NotebookClient(
        nb, timeout=120, kernel_name=KERNEL, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError if any cell raised

    after = _shm()
    errors = [o for c in nb.cells for o in _outputs(c) if o.get("output_type") == "error"]
    assert errors == []

    # the result displays itself as its table: one row per snapshot (the barriers; the last
    # stands at the end)
    run_cell = _cell(nb, "noisefs.run(")
    html = [o["data"]["text/html"] for o in _outputs(run_cell) if "text/html" in o.get("data", {})]
    assert len(html) == 1 and 'class="noisefs-result"' in html[0]
    assert html[0].count("<tr>") == 1 + 3  # the header and 3 snapshots
    assert "⟨Z3⟩" in html[0] and "arena peak" in html[0] and "of 64.0 MiB quota" in html[0]
    # print(result) is one line
    printed = [o["text"] for o in _outputs(_cell(nb, "print(result)")) if o.get("name") == "stdout"]
    assert printed[0].count("\n") == 1 and printed[0].startswith("<noisefs.Result: 4 qubits")

    # the plot cell produced a PNG, once (not also as a second figure at the cell's end)
    images = [o["data"]["image/png"] for o in _outputs(_cell(nb, "result.plot()"))
              if "image/png" in o.get("data", {})]  # fmt: skip
    assert len(images) == 1
    assert base64.b64decode(images[0]).startswith(b"\x89PNG\r\n\x1a\n")

    # progress: the run's bar and the managed job's (4 batches of 256) as widgets, at their totals
    bars = {(s["value"], s["max"]) for s in _widget_states(nb) if "bar_style" in s}
    assert {(400.0, 400.0), (4.0, 4.0)} <= bars
    assert all(s["bar_style"] == "success" for s in _widget_states(nb) if "bar_style" in s)
    managed_out = "".join(o.get("text", "") for o in _outputs(_cell(nb, "noisefs.managed(")))
    assert "batched 4 batches of 256 shots" in managed_out

    # nothing left in /dev/shm: the notebook's arena is gone and it made no other entry
    assert not arena_root.exists()
    assert not (tmp_path / "spill").exists()
    others = ("noisefs-test-", "sem.mp-")  # other tests of a suite running beside this one
    assert {name for name in after - before if not name.startswith(others)} == set()
