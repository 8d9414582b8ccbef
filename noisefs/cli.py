"""The ``noisefs`` command line: one parser, one place that maps errors to exit codes.

Each subcommand lives in ``noisefs/commands/<name>.py`` and provides
``add_parser(subparsers)`` and ``main(args) -> int``; heavy imports happen inside ``main``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from noisefs import __version__, faults
from noisefs.errors import EXIT_INPUT, EXIT_INTERRUPTED, NoiseFSError, exit_code_for, one_line

COMMANDS = ("run", "status", "gc", "daemon", "inspect")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        # one line, whatever the arguments it quotes hold (unrecognized ones are quoted raw)
        self.exit(EXIT_INPUT, f"noisefs: error: {one_line(message)} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="noisefs",
        description="Noisy Qiskit Aer trajectories through a bounded /dev/shm arena.",
    )
    parser.add_argument("--version", action="version", version=f"noisefs {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"noisefs.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"noisefs.commands.{name}":
                continue  # not built yet
            raise
        sub = module.add_parser(subparsers)
        sub.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
        )
        sub.set_defaults(handler=module.main)
    return parser


def _warnings_or_ours(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.name.split(".")[0] == "noisefs"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    try:
        faults.hold_at("run.started")
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C as noisefs starts: one line as later, no traceback
        print("noisefs: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    debug = getattr(args, "debug", False)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="noisefs: %(levelname)s: %(message)s",
    )
    if not debug:  # libraries that set their own loggers' levels (Dask: INFO) stay quiet
        for handler in logging.getLogger().handlers:
            handler.addFilter(_warnings_or_ours)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt as exc:
        detail = f": {exc}" if str(exc) else ""
        print(f"noisefs: interrupted{detail}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the one place errors become exit codes
        code = exit_code_for(exc)
        if debug or not isinstance(exc, NoiseFSError | OSError):
            traceback.print_exc()  # a bug: the traceback is what a report needs
        message = one_line(exc) or type(exc).__name__
        print(f"noisefs: error: {message}", file=sys.stderr)
        return code
