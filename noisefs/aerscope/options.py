"""Validation of :func:`noisefs.managed`'s options, in one place.

Kept as one small function so that it can be switched to the project's option table (the one
that drives ``noisefs run``'s argparse and ``noisefs.run(**kwargs)``) without touching the rest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from noisefs.errors import InputError
from noisefs.units import parse_duration, parse_size

DEFAULT_BATCH = 256


@dataclass(frozen=True)
class ManagedOptions:
    """Validated options of one :func:`noisefs.managed` object."""

    quota: int | None
    max_files: int | None
    spill_dir: str | None
    batch: int
    root: str | None
    spill_quota: int | None = None
    put_timeout: float | None = None  # seconds a snapshot waits for arena space (Arena's)


def validate_options(
    quota: str | int | None = None,
    max_files: int | None = None,
    spill_dir: str | os.PathLike | None = None,
    batch: int = DEFAULT_BATCH,
    root: str | os.PathLike | None = None,
    spill_quota: str | int | None = None,
    put_timeout: str | float | None = None,
) -> ManagedOptions:
    """Check and normalise :func:`noisefs.managed`'s options; raise :class:`InputError`."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a whole number of shots >= 1, not {batch!r}")
    if max_files is not None and (
        isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1
    ):
        raise InputError(f"max_files must be a whole number >= 1, not {max_files!r}")
    return ManagedOptions(
        quota=None if quota is None else parse_size(quota),
        max_files=max_files,
        spill_dir=None if spill_dir is None else os.fspath(spill_dir),
        batch=batch,
        root=None if root is None else os.fspath(root),
        spill_quota=None if spill_quota is None else parse_size(spill_quota),
        put_timeout=None if put_timeout is None else parse_duration(put_timeout),
    )
