"""Errors of :mod:`noisefs.managed`."""

from __future__ import annotations

from noisefs.errors import InputError, NoiseFSError


class ManagedError(NoiseFSError):
    """A managed (batched) Aer job that failed for a reason of noisefs's own."""


class UnbatchableJob(InputError):
    """Kept for code that catches it: no job is refused any more. A job that cannot be batched
    exactly is passed through to Aer whole (the reason in ``result.metadata["noisefs"]``)."""
