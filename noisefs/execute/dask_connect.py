"""Reaching a Dask scheduler within a deadline, and waiting for its workers.

Dask's handshake has no timeout against a port that accepts TCP but never answers as a
scheduler, so the client is built in a helper thread that the caller stops waiting for
after :data:`CONNECT_DEADLINE_S`. Every failure is one :class:`SchedulerError` line
(exit 3).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from noisefs.errors import InputError, SchedulerError

log = logging.getLogger("noisefs")

CONNECT_TIMEOUT_S = 3.0  # Dask's own retry window against a refused or silent address
CONNECT_DEADLINE_S = 5.0  # beyond this the handshake is abandoned
WAIT_FOR_WORKERS_S = 60.0  # a scheduler without workers: wait this long for one to join


def address_from_file(path: str | os.PathLike, deadline_s: float = CONNECT_DEADLINE_S) -> str:
    """The scheduler address that Dask's ``--scheduler-file`` records (waiting up to
    ``deadline_s`` for the file to appear, as on a batch system starting jobs)."""
    path = Path(path)
    give_up = time.monotonic() + deadline_s
    while not path.exists() and time.monotonic() < give_up:
        time.sleep(0.2)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SchedulerError(
            f"--scheduler-file {path}: no such file (start the scheduler with "
            f"`dask scheduler --scheduler-file {path}`)",
            address=None,
        ) from None
    except OSError as exc:
        raise SchedulerError(f"--scheduler-file {path}: {exc.strerror or exc}") from None
    try:
        address = json.loads(text)["address"]
    except (ValueError, KeyError, TypeError):
        raise InputError(
            f"--scheduler-file {path} is not a Dask scheduler file (no JSON 'address')"
        ) from None
    if not isinstance(address, str) or not address:
        raise InputError(f"--scheduler-file {path}: 'address' is not an address: {address!r}")
    return address


def connect(address: str, deadline_s: float = CONNECT_DEADLINE_S):
    """A :class:`distributed.Client` of the scheduler at ``address``, or SchedulerError
    within ``deadline_s``."""
    try:  # lazy: distributed, an optional extra, only for a Dask run
        from distributed import Client
    except ImportError:
        raise InputError(
            "running on a Dask cluster needs the dask extra: pip install 'noisefs[dask]'"
        ) from None
    _check_address(address)
    box: dict = {}

    def build() -> None:
        try:
            client = Client(
                address,
                timeout=min(CONNECT_TIMEOUT_S, deadline_s),
                set_as_default=False,
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            box["error"] = exc
            return
        if box.setdefault("client", client) is not client or box.get("abandoned"):
            client.close()

    helper = threading.Thread(target=build, name="noisefs-dask-connect", daemon=True)
    helper.start()
    helper.join(deadline_s)
    if "client" in box:
        return box["client"]
    box["abandoned"] = True
    if "error" in box:
        error = box["error"]
        detail = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, ValueError):  # a malformed address Dask found
            raise InputError(f"--scheduler {address}: {detail}") from None
        raise SchedulerError(
            f"cannot reach a Dask scheduler at {address}: {detail}", address=address
        ) from None
    raise SchedulerError(
        f"{address} accepted a connection but did not answer as a Dask scheduler within "
        f"{deadline_s:.0f} s (is it the scheduler's port, not the dashboard's?)",
        address=address,
    )


def _check_address(address: str) -> None:
    """Refuse a malformed address before Dask does (a half-built ``Client`` would print a
    traceback when Python exits)."""
    # lazy: distributed, an optional extra, only for a Dask run
    from distributed.comm.addressing import get_address_host_port, parse_address
    from distributed.comm.registry import get_backend

    try:
        scheme, _ = parse_address(address)
        get_backend(scheme)
        if scheme in ("tcp", "tls"):
            get_address_host_port(address)
    except ValueError as exc:
        detail = " ".join(str(exc).split())
        raise InputError(
            f"--scheduler {address}: {detail} (expected e.g. tcp://HOST:8786)"
        ) from None


def cluster_threads(client) -> int:
    """Task threads of the workers connected now."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return sum(int(info.get("nthreads", 1)) for info in workers.values())


def wait_for_workers(client, address: str, timeout_s: float | None = None) -> int:
    """Wait (with a message) until the scheduler has a worker; the cluster's threads."""
    timeout_s = WAIT_FOR_WORKERS_S if timeout_s is None else timeout_s
    threads = cluster_threads(client)
    if threads:
        return threads
    log.warning(
        "the Dask scheduler at %s has no workers yet; waiting up to %.0f s for one "
        "(start one with `dask worker %s`)",
        address,
        timeout_s,
        address,
    )
    try:
        client.wait_for_workers(1, timeout=timeout_s)
    except TimeoutError:
        raise SchedulerError(
            f"no Dask worker joined the scheduler at {address} within {timeout_s:.0f} s; "
            f"start workers with `dask worker {address}`",
            address=address,
        ) from None
    return max(1, cluster_threads(client))


class QuietDaskLogs:
    """Dask's own chatter (comms closed, reconnecting, with tracebacks at INFO) kept off
    the CLI's stderr while noisefs holds a client it opened: :meth:`quiet` raises Dask's
    loggers to WARNING, :meth:`silence` mutes them (while closing a client whose
    scheduler is gone), :meth:`restore` puts everything back."""

    def __init__(self) -> None:
        self._saved: dict[str, tuple[int, bool]] = {}

    @staticmethod
    def _loggers() -> list[logging.Logger]:
        names = [n for n in list(logging.Logger.manager.loggerDict) if n.startswith("distributed.")]
        return [logging.getLogger(name) for name in ["distributed", *names]]

    def _save(self, logger: logging.Logger) -> None:
        self._saved.setdefault(logger.name, (logger.level, logger.disabled))

    def quiet(self) -> None:
        for logger in self._loggers():
            if logger.name == "distributed" or logging.NOTSET < logger.level < logging.WARNING:
                self._save(logger)
                logger.setLevel(logging.WARNING)

    def silence(self) -> None:
        for logger in self._loggers():
            self._save(logger)
            logger.disabled = True

    def restore(self) -> None:
        for name, (level, disabled) in self._saved.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.disabled = disabled
        self._saved.clear()
