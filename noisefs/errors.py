"""One exception hierarchy; each class maps to one CLI exit code (docs/contract.md "Exit codes")."""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_INPUT = 2
EXIT_STORAGE = 3
EXIT_INTERRUPTED = 130


def _rebuild(cls: type, args: tuple, facts: dict) -> NoiseFSError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(facts)
    return error


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space: the
    form of every message noisefs prints."""
    return " ".join(str(text).split())


class NoiseFSError(Exception):
    """Base of every error noisefs raises on purpose.

    Besides its one-line message an error carries the facts it names as attributes
    (``CircuitError.file``/``.line``, ``ArenaFull.needed_bytes``, ...), so callers need not
    parse the text; they survive pickling (errors cross worker-process boundaries).
    """

    exit_code: int = 1

    def __str__(self) -> str:  # one line, whatever user text (a file name) the message quotes
        return one_line(super().__str__())

    def __reduce__(self):
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class InputError(NoiseFSError, ValueError):
    """Bad usage or bad input: a bad option, circuit, unit or noise parameter (exit 2)."""

    exit_code = EXIT_INPUT


class CircuitError(InputError):
    """A circuit file that cannot be read, parsed or simulated.

    ``file`` and ``line`` name where, when known (``None`` otherwise)."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None):
        super().__init__(message)
        self.file = file
        self.line = line


class NoiseParameterError(InputError):
    """Physically impossible or malformed noise parameters."""


class TooLargeError(InputError):
    """A job that cannot fit this machine; the message says what to change."""


class CircuitTooLarge(CircuitError, TooLargeError):
    """A circuit that declares more qubits or bits than this machine can simulate, refused
    before it is built (``file`` and ``line`` name the declaration, when known)."""


class ArenaError(NoiseFSError, OSError):
    """Arena or storage failure (exit 3).

    Derives from ``OSError`` so callers can catch it as one; ``errno`` is set when known.
    Keyword arguments are facts kept as attributes (e.g. ``root``).
    """

    exit_code = EXIT_STORAGE

    def __init__(self, message: str, code: int | None = None, **facts) -> None:
        if code is None:
            OSError.__init__(self, message)
        else:
            OSError.__init__(self, code, message)
        self.message = message
        self.__dict__.update(facts)

    def __str__(self) -> str:
        return one_line(self.message)

    def __reduce__(self):  # survive pickling across process boundaries
        facts = {k: v for k, v in self.__dict__.items() if k != "message"}
        return (_rebuild_arena, (type(self), self.message, self.errno, facts))


def _rebuild_arena(cls: type, message: str, code: int | None, facts: dict) -> ArenaError:
    return cls(message, code, **facts)


class ArenaFull(ArenaError):
    """No room in the tmpfs tier nor in the spill tier within the timeout (ENOSPC).

    ``needed_bytes`` is the allocation that did not fit, when known."""

    def __init__(
        self,
        message: str,
        code: int | None = errno.ENOSPC,
        needed_bytes: int | None = None,
        **facts,
    ) -> None:
        super().__init__(message, code, needed_bytes=needed_bytes, **facts)


class UnsafePathError(ArenaError):
    """An arena root or spill directory that is a symlink, foreign-owned or too open."""

    def __init__(self, message: str, code: int | None = errno.EPERM, **facts) -> None:
        super().__init__(message, code, **facts)


class CorruptSnapshot(ArenaError):
    """A stored snapshot whose checksum or header does not verify."""

    def __init__(self, message: str, code: int | None = errno.EIO, **facts) -> None:
        super().__init__(message, code, **facts)


class ArenaBusy(ArenaError):
    """The arena is held exclusively by another process (a second daemon); ``holder_pid``."""

    def __init__(
        self, message: str, code: int | None = errno.EBUSY, holder_pid: int | None = None, **facts
    ) -> None:
        super().__init__(message, code, holder_pid=holder_pid, **facts)


class OutputError(NoiseFSError, OSError):
    """A result, checkpoint or plot file that could not be written (exit 3)."""

    exit_code = EXIT_STORAGE


class SimulationError(InputError):
    """Aer refused or failed to simulate a batch (exit 2: it is the circuit, its size or the
    options that Aer cannot run; the message says what Aer said)."""


class WorkerDied(NoiseFSError):
    """A worker process died mid-run, typically killed for memory (exit 3: a resource failure)."""

    exit_code = EXIT_STORAGE


class SchedulerError(NoiseFSError):
    """A Dask scheduler that cannot be reached, is no scheduler, has no workers, or lost
    the run's tasks (exit 3: a resource failure; ``address`` names it)."""

    exit_code = EXIT_STORAGE

    def __init__(self, message: str, *, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address


class MissingExtra(InputError, ImportError):
    """An optional dependency that this feature needs is not installed (exit 2); the message
    gives the ``pip install`` that brings it (``extra`` names noisefs's extra)."""

    def __init__(self, message: str, *, extra: str | None = None) -> None:
        super().__init__(message)
        self.extra = extra


def exit_code_for(exc: BaseException) -> int:
    """The CLI exit code for an exception (docs/contract.md "Exit codes"): 2 input, 3 storage,
    130 interrupt."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, NoiseFSError):
        return exc.exit_code
    if isinstance(exc, OSError):  # full, read-only, denied, I/O error: storage failures
        return EXIT_STORAGE
    return 1
