"""Validation of :func:`noisefs.managed`'s options, in one place.

The values go through the project's option table (``noisefs.options``: the parsers and units
of ``noisefs run`` and ``noisefs.run(**kwargs)``); each bad value is one
:class:`~noisefs.errors.InputError` that names the keyword as ``managed`` spells it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from noisefs.errors import InputError
from noisefs.option_values import check_quotable
from noisefs.options import BY_KEYWORD

DEFAULT_BATCH = 256
_PREFIX = "noisefs.managed: "


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


def _parsed(keyword: str, value: object) -> object:
    """``value`` through the table's parser of ``keyword`` (``None``: unset); its error
    names ``keyword``."""
    if value is None:
        return None
    try:
        check_quotable(keyword, value)
        return BY_KEYWORD[keyword].parse(keyword, value)
    except InputError as exc:
        text = str(exc)
        if not text.startswith(keyword):
            text = f"{keyword}: {text}"
        raise InputError(_PREFIX + text) from None


def validate_options(
    *,
    quota: object = None,
    max_files: object = None,
    spill_dir: object = None,
    batch: object = DEFAULT_BATCH,
    root: object = None,
    spill_quota: object = None,
    put_timeout: object = None,
    quiet: object = False,
) -> ManagedOptions:
    """Check and normalise :func:`noisefs.managed`'s keyword arguments by the option table
    (``spill_dir`` and ``root`` are the table's aliases of ``spill`` and ``arena``). ``None``
    leaves an arena option to the arena's default; ``batch`` and ``quiet`` have defaults of
    their own, so ``None`` is refused for them like any other value that is not one."""
    if batch is None:
        raise InputError(
            f"{_PREFIX}batch must be an integer of at least 1, not None "
            f"(leave it out for {DEFAULT_BATCH})"
        )
    if not isinstance(quiet, bool):
        try:
            check_quotable("quiet", quiet)  # repr() below would raise for some values
        except InputError as exc:
            raise InputError(f"{_PREFIX}{exc}") from None
        raise InputError(f"{_PREFIX}quiet must be True or False, not {quiet!r}")
    spill, arena = _parsed("spill_dir", spill_dir), _parsed("root", root)
    return ManagedOptions(
        quota=_parsed("quota", quota),
        max_files=_parsed("max_files", max_files),
        spill_dir=None if spill is None else os.fspath(spill),
        batch=_parsed("batch", batch),
        root=None if arena is None else os.fspath(arena),
        spill_quota=_parsed("spill_quota", spill_quota),
        put_timeout=_parsed("put_timeout", put_timeout),
        quiet=quiet,
    )
