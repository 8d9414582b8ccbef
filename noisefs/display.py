"""How a :class:`~noisefs.result.Result` shows itself: one line as text, a table in a notebook.

The table has one row per snapshot: its step, the purity Tr ρ² (when ρ is kept), ⟨Z_q⟩ ±
its Monte Carlo standard error per qubit (the first :data:`MAX_QUBITS_SHOWN`), each requested
observable ± its standard error; below it the arena's peak against its quota.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from noisefs.units import format_bytes

if TYPE_CHECKING:
    from noisefs.result import Result

#: qubits with a ⟨Z⟩ column in the table (as ``noisefs inspect`` prints)
MAX_QUBITS_SHOWN = 8


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def summary_line(result: Result) -> str:
    """``<noisefs.Result: 3 qubits, 1000 trajectories, 4 snapshots, seed 7, store factored>``
    (and the file it was saved to or loaded from)."""
    meta = result.meta
    parts = [
        _plural(result.num_qubits, "qubit"),
        _plural(int(result.trajectories), "trajectory", "trajectories"),
        _plural(len(result.steps), "snapshot"),
        f"seed {meta.get('seed')}",
        f"store {meta.get('store', '?')}",
    ]
    if result.path is not None:
        parts.append(f"file {result.path}")
    return f"<noisefs.Result: {', '.join(parts)}>"


def _value(mean: float, stderr: float) -> str:
    return f"{mean:+.4f} ± {stderr:.4f}"


def _arena_line(meta: dict) -> str | None:
    arena = meta.get("arena")
    if not isinstance(arena, dict) or "peak_bytes" not in arena:
        return None
    quota = int(arena.get("quota_bytes") or 0)
    text = f"arena peak {format_bytes(int(arena['peak_bytes']))}"
    text += f" of {format_bytes(quota)} quota" if quota else ""
    if "peak_files" in arena:
        files = f"{int(arena['peak_files'])} files"
        limit = int(arena.get("max_files") or 0)
        text += f", {files} of {limit}" if limit else f", {files}"
    if arena.get("spilled_bytes"):
        text += f"; spilled {format_bytes(int(arena['spilled_bytes']))}"
    return text


def result_html(result: Result) -> str:
    """The notebook table of ``result`` (an HTML fragment)."""
    purity = result.purity()
    shown = min(result.num_qubits, MAX_QUBITS_SHOWN)
    names = [] if result.observable_names is None else [str(n) for n in result.observable_names]
    head = ["step"] + (["purity"] if purity is not None else [])
    head += [f"⟨Z{q}⟩" for q in range(shown)] + [f"⟨{name}⟩" for name in names]
    rows = []
    for i, step in enumerate(result.steps):
        cells = [str(int(step))]
        if purity is not None:
            cells.append(f"{purity[i]:.4f}")
        cells += [_value(result.z_mean[i, q], result.z_stderr[i, q]) for q in range(shown)]
        for m in range(len(names)):
            cells.append(_value(result.observables[i, m], result.observables_stderr[i, m]))
        rows.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    notes = []
    if result.num_qubits > shown:
        notes.append(f"{result.num_qubits - shown} more qubits in result.z_mean")
    if result.meta.get("density") == "reduced":
        notes.append("purity of the reduced state of the kept qubits")
    arena = _arena_line(result.meta)
    if arena:
        notes.append(arena)
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    caption = escape(summary_line(result))
    footer = "".join(f"<div><small>{escape(n)}</small></div>" for n in notes)
    return (
        '<div class="noisefs-result">'
        f"<table><caption>{caption}</caption>"
        f"<thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"{footer}</div>"
    )
