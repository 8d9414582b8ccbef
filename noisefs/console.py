"""The ``noisefs`` console script: the CLI, then an exit without the interpreter's teardown.

When a command returns, its files are written and closed, its arena is closed and its
threads are joined. What Python would do next is tear down every module it loaded
(Qiskit's, Aer's, SciPy's): ~0.2 s a command, measured, a twentieth of a 9-qubit GHZ run
of 20,000 trajectories. The atexit handlers (logging's, multiprocessing's, the arena's own)
still run: ours is registered before anything else is imported, so it runs last.
"""

from __future__ import annotations

import atexit
import os
import sys

_exit_code = [1]  # the command's exit code, for the last atexit handler (1: it raised)


def _exit_now() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to say
            pass
    os._exit(_exit_code[0])


def main() -> None:
    """Run the CLI (:func:`noisefs.cli.main`) and exit with its code."""
    atexit.register(_exit_now)
    from noisefs.cli import main as cli_main  # lazy: after the handler, so it runs last

    try:
        _exit_code[0] = cli_main()
    except SystemExit as exc:  # argparse's errors (2) and --help (0)
        _exit_code[0] = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        raise
    sys.exit(_exit_code[0])
