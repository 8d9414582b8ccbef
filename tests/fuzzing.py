"""Shared by the fuzz modules (tests/test_fuzz_*.py): how many examples, the per-example
timeout and the rule every generated input is held to.

The rule: a call on generated input either returns something sane (each test checks what
that means for its surface) or raises the project's own error, a
:class:`~noisefs.errors.NoiseFSError` (for inputs: an :class:`~noisefs.errors.InputError`)
whose message is one non-empty line. Any other exception, a hang past the timeout or a
crash fails the test, and hypothesis keeps the failing input in its example database
(``.hypothesis/``); once fixed, an input is pinned with ``@example``.

CI runs a bounded sample (each test's ``ci`` count). The full set, at least 1,000 inputs
per surface, runs on demand::

    NOISEFS_FUZZ_EXAMPLES=1000 python -m pytest tests/test_fuzz_*.py -q

(the variable is read when the modules are collected; any count works; the CLI checks,
one process per input, stop at 25). ``NOISEFS_FUZZ_TIMEOUT`` sets the per-example timeout
(30 s). The last full run: 1,000 inputs for each test (25 for each CLI check), 0 failures,
about 3 minutes on 2 cores.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from hypothesis import HealthCheck, settings

from noisefs.errors import InputError, NoiseFSError

FULL = int(os.environ.get("NOISEFS_FUZZ_EXAMPLES", "0") or 0)
TIMEOUT_S = float(os.environ.get("NOISEFS_FUZZ_TIMEOUT", "30"))  # per example, loaded machine


def fuzz_settings(ci: int, full: int | None = None, **kw) -> settings:
    """``ci`` examples in CI, ``NOISEFS_FUZZ_EXAMPLES`` when set (at most ``full``: for
    tests that start a process per example); no hypothesis deadline (a busy machine would
    make it flaky): :func:`within` bounds each example instead."""
    return settings(
        max_examples=(min(FULL, full or FULL) if FULL else ci),
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
            HealthCheck.large_base_example,
        ],
        print_blob=True,
        **kw,
    )


class Hang(AssertionError):
    """An example that ran past its timeout (raised after the call, whatever it did with
    the first one: product code that catches every ``Exception`` must not hide a hang)."""


@contextlib.contextmanager
def within(seconds: float = TIMEOUT_S):
    """Fail with :class:`Hang` when the block runs past ``seconds``: a signal interrupts
    Python code then, and :class:`Hang` is raised on leaving the block should the code
    have swallowed it; should native code hang (no signal handler runs there), every
    stack is dumped and the process ends a while later."""
    if sys.platform == "win32":  # pragma: no cover
        yield
        return
    fired = []

    def expire(signum, frame):
        fired.append(True)
        raise Hang(f"no answer within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(3 * seconds + 30, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, old)
        if fired:
            raise Hang(f"no answer within {seconds:g} s")


def one_line(exc: BaseException) -> str:
    """The message of a project error, checked to be one non-empty line (no line break of
    any kind ``str.splitlines`` knows: a message quotes user text by its ``repr``)."""
    text = str(exc)
    assert text.strip(), f"{type(exc).__name__} with an empty message"
    assert len(text.splitlines()) == 1, f"{type(exc).__name__}: {text!r}"
    return text


def outcome(call, *args, expect: type[NoiseFSError] = InputError, **kwargs):
    """``(value, None)`` or ``(None, error)`` for ``call(*args, **kwargs)`` under the rule:
    only ``expect`` (and its subclasses) may be raised, with a one-line message."""
    try:
        with within():
            return call(*args, **kwargs), None
    except expect as exc:
        one_line(exc)
        return None, exc


def one_error_line(proc) -> str:
    """A CLI run that ended as the contract says an input error ends: exit 2 and exactly
    one stderr line, ``noisefs: error: ...``."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("noisefs: error: "), proc.stderr
    return lines[0]


def run_cli(circuit: Path, *args) -> subprocess.CompletedProcess:
    """``noisefs run CIRCUIT`` on a private arena (removed after), ``args`` last so that
    the generated ones win; the spill directory lies beside the circuit."""
    root = Path("/dev/shm") / f"noisefs-fuzz-{uuid.uuid4().hex[:10]}"
    spill = circuit.parent / "spill"
    try:
        return subprocess.run(
            [sys.executable, "-m", "noisefs", "run", str(circuit), "-k", "2", "-q",
             "--arena", str(root), "--spill", str(spill), *map(str, args)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
