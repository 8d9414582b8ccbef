"""Validation of :func:`noisefs.managed`'s options, in one place.

The values go through the project's option table (``noisefs.options``), like those of
``noisefs run`` and ``noisefs.run(**kwargs)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from noisefs.options import BY_KEYWORD, split_options

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
    quiet: bool = False  # no progress bar (presentation: not an option of the table)


def validate_options(**given: object) -> ManagedOptions:
    """Check and normalise :func:`noisefs.managed`'s keyword arguments by the option table
    (the one behind ``noisefs run`` and ``noisefs.run``: same parsers, units and messages;
    ``spill_dir`` and ``root`` are the table's aliases of ``spill`` and ``arena``; ``quiet``
    is presentation, like the CLI's ``--quiet``, and no option of the table)."""
    quiet = bool(given.pop("quiet", False))
    assert all(BY_KEYWORD[name].managed for name in given)  # the table marks each one
    given.setdefault("batch", DEFAULT_BATCH)
    fields, _ = split_options(**given)
    spill, arena = fields.get("spill_dir"), fields.get("arena_root")
    return ManagedOptions(
        quota=fields.get("quota_bytes"),
        max_files=fields.get("max_files"),
        spill_dir=None if spill is None else os.fspath(spill),
        batch=fields["batch"],
        root=None if arena is None else os.fspath(arena),
        spill_quota=fields.get("spill_quota_bytes"),
        put_timeout=fields.get("put_timeout_s"),
        quiet=quiet,
    )
