"""How a Result shows itself: one line as repr, a table in a notebook, a figure from plot()
(the picture of `noisefs inspect --plot`), and one clear error without matplotlib."""

from __future__ import annotations

import io
import sys
from html.parser import HTMLParser

import matplotlib
import numpy as np
import pytest

import noisefs
from noisefs.cli import main as cli_main
from noisefs.errors import InputError, MissingExtra
from noisefs.result import Result


def _result(num_qubits: int = 2, with_rho: bool = True, **extra) -> Result:
    """A hand-made result: 2 snapshots, ⟨Z_q⟩ = 1 - 0.5 s - 0.1 q, stderr 0.01 (q + 1)."""
    steps = np.array([3, 8], dtype=np.int64)
    z = np.array([[1 - 0.5 * s - 0.1 * q for q in range(num_qubits)] for s in range(2)])
    err = np.array([[0.01 * (q + 1) for q in range(num_qubits)] for _ in range(2)])
    dim = 2**num_qubits
    rho = None
    if with_rho:  # pure at step 0, the maximally mixed state at step 1
        pure = np.zeros((dim, dim), complex)
        pure[0, 0] = 1
        rho = np.stack([pure, np.eye(dim) / dim])
    meta = {
        "seed": 11,
        "store": "dense",
        "circuit": "bell.qasm",
        "arena": {"quota_bytes": 64 * 2**20, "peak_bytes": 8 * 2**20, "peak_files": 12,
                  "max_files": 10000, "spilled_bytes": 0},
    }  # fmt: skip
    return Result(
        probabilities=np.full((2, dim), 1 / dim),
        steps=steps,
        trajectories=500,
        z_mean=z,
        z_stderr=err,
        meta=meta,
        rho=rho,
        **extra,
    )


class _Table(HTMLParser):
    """The header cells and the body rows of the first table."""

    def __init__(self) -> None:
        super().__init__()
        self.header: list[str] = []
        self.rows: list[list[str]] = []
        self.caption = ""
        self._where: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        self._where = tag if tag in ("th", "td", "caption") else self._where

    def handle_endtag(self, tag):
        self._where = None

    def handle_data(self, data):
        if self._where == "th":
            self.header.append(data)
        elif self._where == "td":
            self.rows[-1].append(data)
        elif self._where == "caption":
            self.caption += data


def _parse(html: str) -> _Table:
    table = _Table()
    table.feed(html)
    table.rows = [r for r in table.rows if r]
    return table


def test_repr_is_one_line_with_qubits_trajectories_snapshots_seed_and_store():
    result = _result()
    assert repr(result) == (
        "<noisefs.Result: 2 qubits, 500 trajectories, 2 snapshots, seed 11, store dense>"
    )
    assert str(result) == repr(result)


def test_repr_of_a_real_run_is_one_short_line(run_kwargs, tmp_path):
    text = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\nh q[0];\ncx q[0],q[1];\nbarrier q;\n'
    result = noisefs.run(text + "cx q[1],q[2];\n", trajectories=16, seed=5, **run_kwargs)
    line = repr(result)
    assert "\n" not in line and len(line) < 120
    assert (
        line == "<noisefs.Result: 3 qubits, 16 trajectories, 2 snapshots, seed 5, store factored>"
    )
    saved = result.save(tmp_path / "r.npz")
    assert repr(Result.load(saved)).endswith(f", store factored, file {saved}>")


def test_html_table_has_a_row_per_snapshot_with_purity_z_and_the_arena():
    table = _parse(_result()._repr_html_())
    assert table.header == ["step", "purity", "⟨Z0⟩", "⟨Z1⟩"]
    assert table.rows == [
        ["3", "1.0000", "+1.0000 ± 0.0100", "+0.9000 ± 0.0200"],
        ["8", "0.2500", "+0.5000 ± 0.0100", "+0.4000 ± 0.0200"],
    ]
    assert "2 qubits, 500 trajectories" in table.caption
    assert "arena peak 8.0 MiB of 64.0 MiB quota, 12 files of 10000" in _result()._repr_html_()


def test_html_table_shows_observables_and_leaves_out_purity_without_rho():
    result = _result(
        with_rho=False,
        observables=np.array([[0.75], [0.25]]),
        observables_stderr=np.array([[0.05], [0.04]]),
        observable_names=np.array(["zz"]),
    )
    table = _parse(result._repr_html_())
    assert table.header == ["step", "⟨Z0⟩", "⟨Z1⟩", "⟨zz⟩"]
    assert [row[-1] for row in table.rows] == ["+0.7500 ± 0.0500", "+0.2500 ± 0.0400"]
    assert result.expectation("zz") == (0.25, 0.04)
    assert result.expectation("zz", step=0) == (0.75, 0.05)
    with pytest.raises(KeyError, match="no observable 'xx'.*observables: zz"):
        result.expectation("xx")


def test_html_table_of_a_wide_result_names_the_qubits_left_out():
    html = _result(num_qubits=10, with_rho=False)._repr_html_()
    assert _parse(html).header[-1] == "⟨Z7⟩"
    assert "2 more qubits in result.z_mean" in html


def test_observables_survive_save_and_load(tmp_path):
    result = _result(
        observables=np.array([[0.75], [0.25]]),
        observables_stderr=np.array([[0.05], [0.04]]),
        observable_names=np.array(["zz"]),
    )
    loaded = Result.load(result.save(tmp_path / "obs.npz"))
    assert loaded.observable_names.tolist() == ["zz"]
    np.testing.assert_array_equal(loaded.observables, result.observables)
    with np.load(tmp_path / "obs.npz", allow_pickle=False) as data:  # no pickle needed
        assert data["observable_names"].dtype.kind == "U"


def test_plot_draws_z_with_error_bars_and_purity():
    import matplotlib.pyplot as plt

    result = _result()
    fig = result.plot()
    try:
        z_axes, purity_axes = fig.axes
        lines = z_axes.get_lines()
        np.testing.assert_allclose(lines[0].get_ydata(), result.z_mean[:, 0])
        np.testing.assert_allclose(lines[0].get_xdata(), result.steps)
        assert [t.get_text() for t in z_axes.get_legend().get_texts()] == ["Z0", "Z1"]
        assert len(z_axes.containers) == 2  # one errorbar per qubit
        np.testing.assert_allclose(purity_axes.get_lines()[0].get_ydata(), [1.0, 0.25])
        assert plt.fignum_exists(fig.number)  # not inline: left open for plt.show()
    finally:
        plt.close(fig)
    no_rho = _result(with_rho=False).plot()
    assert len(no_rho.axes) == 1
    plt.close(no_rho)


def test_plot_under_an_inline_backend_is_shown_once_by_its_return_value(monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setattr(
        matplotlib, "get_backend", lambda: "module://matplotlib_inline.backend_inline"
    )
    fig = _result().plot()
    assert not plt.fignum_exists(fig.number)  # off pyplot's list: no second copy at cell end
    assert fig.axes  # still a whole figure to display


def test_plot_is_the_picture_of_inspect_plot(tmp_path, capsys):
    result = _result()
    path = result.save(tmp_path / "r.npz")
    assert cli_main(["inspect", str(path), "--plot", str(tmp_path / "r.png")]) == 0
    capsys.readouterr()
    buffer = io.BytesIO()
    fig = Result.load(path).plot()
    fig.savefig(buffer, format="png", dpi=100)
    matplotlib.pyplot.close(fig)
    assert buffer.getvalue() == (tmp_path / "r.png").read_bytes()


def test_plot_without_matplotlib_is_one_line_with_the_pip_hint(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    with pytest.raises(ImportError) as caught:
        _result().plot()
    assert isinstance(caught.value, MissingExtra) and isinstance(caught.value, InputError)
    assert str(caught.value) == "plotting a result needs matplotlib: pip install 'noisefs[plot]'"
    assert caught.value.extra == "plot"
    path = _result().save(tmp_path / "r.npz")
    assert cli_main(["inspect", str(path), "--plot", str(tmp_path / "r.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--plot needs matplotlib: pip install 'noisefs[plot]'")
    assert "\n" not in err and not (tmp_path / "r.png").exists()
