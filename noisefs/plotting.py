"""The picture of a result: ⟨Z_q⟩ ± stderr and purity over the snapshot steps.

One function draws it for both ``result.plot()`` (a figure that shows inline in a notebook)
and ``noisefs inspect --plot`` (written to an image file). matplotlib is the optional
``plot`` extra: without it, one :class:`~noisefs.errors.MissingExtra` line says what to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from noisefs.errors import MissingExtra

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from noisefs.result import Result

#: the backends that show a notebook cell's figures by themselves when the cell ends
INLINE_BACKENDS = frozenset(
    {
        "module://matplotlib_inline.backend_inline",
        "module://ipykernel.pylab.backend_inline",
        "inline",
        "nbagg",
    }
)


def require_matplotlib(feature: str) -> None:
    """Raise :class:`MissingExtra` (an ``ImportError``) naming ``feature`` when matplotlib
    cannot be imported."""
    try:  # lazy: matplotlib, an optional extra, only to plot
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtra(
            f"{feature} needs matplotlib: pip install 'noisefs[plot]'", extra="plot"
        ) from None


def result_figure(result: Result) -> Figure:
    """A new pyplot figure of ``result``: ⟨Z_q⟩ with Monte Carlo error bars per qubit at each
    snapshot step, below it the purity Tr ρ² when the result keeps ρ, and the requested
    observables with their error bars when there are any."""
    require_matplotlib("plotting a result")
    import matplotlib.pyplot as plt  # lazy: matplotlib, an optional extra

    steps = result.steps
    purity = result.purity()
    names = [] if result.observable_names is None else [str(n) for n in result.observable_names]
    panels = 1 + (purity is not None) + bool(names)
    fig, axes = plt.subplots(panels, 1, figsize=(7, 3 * panels), sharex=True, squeeze=False)
    ax = axes[0, 0]
    labels = [f"Z{q}" for q in range(result.num_qubits)]
    _error_bars(ax, steps, result.z_mean, result.z_stderr, labels, marker="o")
    ax.set_ylabel("<Z_q> ± stderr")
    ax.set_ylim(-1.05, 1.05)
    ax.legend(ncol=min(result.num_qubits, 6), fontsize="small")
    ax.set_title(f"{result.meta.get('circuit', '')}: {result.trajectories} trajectories")
    if purity is not None:
        axes[1, 0].plot(steps, purity, marker="s", color="black")
        axes[1, 0].set_ylabel("purity Tr ρ²")
        axes[1, 0].set_ylim(0, 1.05)
    if names:
        ax = axes[-1, 0]
        _error_bars(ax, steps, result.observables, result.observables_stderr, names, marker="d")
        ax.set_ylabel("observables ± stderr")
        ax.legend(ncol=min(len(names), 4), fontsize="small")
    axes[-1, 0].set_xlabel("snapshot step (instructions executed)")
    fig.tight_layout()
    return fig


def _error_bars(ax, steps, means, errors, labels: list[str], marker: str) -> None:
    """One line with Monte Carlo error bars per column of ``means`` (S, X)."""
    for column, label in enumerate(labels):
        ax.errorbar(
            steps, means[:, column], yerr=errors[:, column], marker=marker, capsize=3, label=label
        )


def close_if_inline(fig: Figure) -> None:
    """Take ``fig`` off pyplot's list when the backend draws a cell's figures inline by itself:
    the figure returned as the cell's value is then shown once, not twice (Qiskit's drawers
    do the same). Elsewhere the figure stays open, for ``plt.show()``."""
    # lazy: matplotlib, an optional extra
    import matplotlib
    import matplotlib.pyplot as plt

    if matplotlib.get_backend().lower() in INLINE_BACKENDS:
        plt.close(fig)
