"""Errors of :mod:`noisefs.managed`."""

from __future__ import annotations

from noisefs.errors import InputError, NoiseFSError


class ManagedError(NoiseFSError):
    """A managed (batched) Aer job that failed for a reason of noisefs's own."""


class UnbatchableJob(InputError):
    """A job option that cannot be batched exactly nor passed through; the message says which
    option and what to change."""
