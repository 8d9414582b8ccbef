"""One exception hierarchy; each class maps to one CLI exit code (see SPEC.md)."""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_INPUT = 2
EXIT_STORAGE = 3
EXIT_INTERRUPTED = 130


class NoiseFSError(Exception):
    """Base of every error noisefs raises on purpose."""

    exit_code: int = 1


class InputError(NoiseFSError, ValueError):
    """Bad usage or bad input: a bad option, circuit, unit or noise parameter (exit 2)."""

    exit_code = EXIT_INPUT


class CircuitError(InputError):
    """A circuit file that cannot be read, parsed or simulated."""


class NoiseParameterError(InputError):
    """Physically impossible or malformed noise parameters."""


class TooLargeError(InputError):
    """A job that cannot fit this machine; the message says what to change."""


class ArenaError(NoiseFSError, OSError):
    """Arena or storage failure (exit 3).

    Derives from ``OSError`` so callers can catch it as one; ``errno`` is set when known.
    """

    exit_code = EXIT_STORAGE

    def __init__(self, message: str, code: int | None = None) -> None:
        if code is None:
            OSError.__init__(self, message)
        else:
            OSError.__init__(self, code, message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # survive pickling across process boundaries
        return (type(self), (self.message, self.errno))


class ArenaFull(ArenaError):
    """No room in the tmpfs tier nor in the spill tier within the timeout (ENOSPC)."""

    def __init__(self, message: str, code: int | None = errno.ENOSPC) -> None:
        super().__init__(message, code)


class UnsafePathError(ArenaError):
    """An arena root or spill directory that is a symlink, foreign-owned or too open."""

    def __init__(self, message: str, code: int | None = errno.EPERM) -> None:
        super().__init__(message, code)


class CorruptSnapshot(ArenaError):
    """A stored snapshot whose checksum or header does not verify."""

    def __init__(self, message: str, code: int | None = errno.EIO) -> None:
        super().__init__(message, code)


class ArenaBusy(ArenaError):
    """The arena is held exclusively by another process (e.g. a second daemon)."""

    def __init__(self, message: str, code: int | None = errno.EBUSY) -> None:
        super().__init__(message, code)


class OutputError(NoiseFSError, OSError):
    """A result, checkpoint or plot file that could not be written (exit 3)."""

    exit_code = EXIT_STORAGE


class WorkerDied(NoiseFSError):
    """A worker process died mid-run, typically killed for memory (exit 3: a resource failure)."""

    exit_code = EXIT_STORAGE


def exit_code_for(exc: BaseException) -> int:
    """The CLI exit code for an exception (SPEC.md): 2 input, 3 storage, 130 interrupt."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, NoiseFSError):
        return exc.exit_code
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return EXIT_STORAGE
    return 1
