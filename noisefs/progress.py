"""Progress bars: a notebook widget under a Jupyter kernel, tqdm's bar on a terminal.

The choice follows ``tqdm.auto``: under a Jupyter kernel (notebook, JupyterLab, VS Code) with
ipywidgets installed, a widget; in a kernel without ipywidgets, the plain text bar in the
cell's output; on a terminal, the terminal bar (trajectories/s, ETA, arena and spill use);
nothing otherwise (a pipe, a log file, a test) or when switched off (``quiet``). ipywidgets
stays optional: nothing here imports it unless a kernel is running.
"""

from __future__ import annotations

import enum
import importlib.util
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from noisefs.units import format_bytes

T = TypeVar("T")

#: a managed job shows its bar from this many batches on (one batch has no progress to show)
MANAGED_MIN_BATCHES = 2


class Mode(enum.Enum):
    """How progress is shown."""

    OFF = "off"
    TERMINAL = "terminal"  # tqdm's bar on a terminal's stderr, sized to the terminal
    TEXT = "text"  # tqdm's text bar in a kernel's stderr stream (no ipywidgets)
    WIDGET = "widget"  # tqdm.notebook's widget


def choose_mode(enabled: bool | None, *, kernel: bool, widgets: bool, terminal: bool) -> Mode:
    """The mode for these circumstances: ``enabled`` False is off, True forces a bar (on
    stderr outside a kernel, even when it is no terminal), None decides by the environment.

    ``kernel``: running under a Jupyter kernel; ``widgets``: ipywidgets importable;
    ``terminal``: stderr is a terminal."""
    if enabled is False:
        return Mode.OFF
    if kernel:
        return Mode.WIDGET if widgets else Mode.TEXT
    if terminal or enabled:
        return Mode.TERMINAL
    return Mode.OFF


def in_kernel() -> bool:
    """Whether this process is a Jupyter kernel whose front end renders rich output (as
    ``tqdm.autonotebook`` decides: not the Qt console or Spyder, which show text)."""
    if "ipykernel.zmqshell" not in sys.modules:
        return False
    if any(name == "QT_API" or name.startswith("SPYDER") for name in os.environ):
        return False
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    if shell is None:
        return False
    name = type(shell).__name__.lower()
    return "qt" not in name and "spyder" not in name


def widgets_available() -> bool:
    """Whether ipywidgets can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("ipywidgets") is not None
    except (ImportError, ValueError):
        return False


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def detect_mode(enabled: bool | None = None) -> Mode:
    """The mode :func:`choose_mode` picks in this process now."""
    if enabled is False:
        return Mode.OFF
    kernel = in_kernel()
    return choose_mode(
        enabled,
        kernel=kernel,
        widgets=kernel and widgets_available(),
        terminal=_stderr_is_terminal(),
    )


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


def _make_bar(mode: Mode, total: int, initial: int, unit: str, desc: str | None):
    """tqdm's bar for ``mode`` and the mode it got: a widget that cannot be built (an
    ipywidgets too old or broken for tqdm) falls back to the text bar."""
    common = {"total": total, "initial": initial, "unit": unit, "desc": desc}
    if mode is Mode.WIDGET:
        try:  # lazy: tqdm's notebook widget, only in a notebook
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm(**common, leave=True), mode
        except ImportError:
            mode = Mode.TEXT
    return _text_bar(mode, common), mode


def _text_bar(mode: Mode, common: dict):
    from tqdm import tqdm  # lazy: only when a bar shows

    if mode is Mode.TEXT:  # a cell's output: no terminal size, the final state stays
        return tqdm(**common, ncols=100, file=sys.stderr, leave=True)
    # a terminal that reports no width (e.g. under `script`) would get an empty bar
    sized = _columns() > 0
    return tqdm(
        **common,
        dynamic_ncols=sized,
        ncols=None if sized else 100,
        nrows=None if sized else 24,
        file=sys.stderr,
        leave=False,
    )


class Progress:
    """A progress bar in the mode :func:`detect_mode` picks (``enabled`` as there), or in
    ``mode`` when given; a no-op when the mode is off. Usable as a context manager."""

    def __init__(
        self,
        total: int,
        initial: int = 0,
        enabled: bool | None = None,
        *,
        unit: str = "traj",
        desc: str | None = None,
        mode: Mode | None = None,
    ) -> None:
        self.mode = detect_mode(enabled) if mode is None else mode
        self._bar = None
        if self.mode is not Mode.OFF:
            self._bar, self.mode = _make_bar(self.mode, total, initial, unit, desc)

    @property
    def count(self) -> int:
        """How many units the bar shows done (0 when off)."""
        return 0 if self._bar is None else int(self._bar.n)

    def advance(self, amount: int, stats: dict | None = None) -> None:
        """Count ``amount`` more units done; ``stats`` (an arena's) shows its use and spill."""
        if self._bar is None:
            return
        if stats:
            self._bar.set_postfix_str(
                f"arena {format_bytes(stats.get('bytes_used', 0))}/{format_bytes(stats.get('quota_bytes', 0))}"
                f" spill {format_bytes(stats.get('spilled_bytes', 0))}",
                refresh=False,
            )
        self._bar.update(amount)

    def close(self) -> None:
        """Finish the bar (a widget left short of its total turns red, as tqdm's do)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track_batches(plan: Iterable[T], total: int, quiet: bool = False) -> Iterator[T]:
    """Yield ``plan``'s batches while a bar counts those done of ``total`` — for a managed
    job of at least :data:`MANAGED_MIN_BATCHES` batches, unless ``quiet``.

    The bar appears once the first batch has run: only then is it known that the job stays
    batched (a job Aer measurement-samples is passed through after it, and must not leave a
    failed bar behind). It closes when the loop ends, returns or raises (the generator is
    closed); short of its total, a widget turns red."""
    enabled = False if quiet or total < MANAGED_MIN_BATCHES else None
    bar: Progress | None = None
    try:
        for done, item in enumerate(plan):  # asked for batch ``done``: ``done`` have run
            if done == 1:
                bar = Progress(total, 1, enabled, unit="batch", desc="noisefs.managed")
            elif bar is not None:
                bar.advance(1)
            yield item
        if bar is not None:
            bar.advance(1)
    finally:
        if bar is not None:
            bar.close()
