"""Named fault points: the places where a test makes noisefs fail on purpose.

Nothing happens at a point unless a test switched it on, either in this process with
:func:`armed`, or for the processes it starts (a CLI run, its worker processes, the daemon)
with the one variable ``NOISEFS_FAULTS``: comma-separated ``point``, ``point@n`` (the point
fires the n-th time a process reaches it, default the first; once per process) or
``point=VALUE`` (a point that needs a value: the path of a marker or trace file, which
cannot hold a comma). The variable is read when a point is reached, never at import.

Three ways to use a point: :func:`fires` (an event, once), :func:`setting` (its value,
every time it is reached: a hook that lasts), and the helpers :func:`kill_at`,
:func:`signal_at`, :func:`pause_at` and :func:`hold_at` built on them.

The hold points (``HOLD_POINTS``, one per phase of a run's life, switched on as
``point@n=PATH``) are where the crash matrix (tests/test_crash_matrix.py) signals a run:
the first process of the run to reach the point for the n-th time writes its pid to PATH
and waits until the test removes PATH; the test sends its signal meanwhile, then removes
PATH to let a survivor go on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ENV = "NOISEFS_FAULTS"

POINTS = {
    "worker.batch-done": "a worker process finished a batch and has not yet published it",
    "worker.snapshots-lost": "a worker's published batch loses its snapshots before the "
    "parent folds it (the parent must recompute it)",
    "arena.publish-interrupted": "a put interrupted (KeyboardInterrupt) after its file is "
    "written, before it is published",
    "arena.put-paused": "=PATH: a put writes '<pid> <key> <tier> <slot>' to PATH once its "
    "data file is written, before it is published, then hangs (for the test to SIGKILL it)",
    "run.last-window": "a run after its last batch: 1st, before its parts close; 2nd, before "
    "the result file is written (SIGTERM arrives there)",
    "daemon.claimed": "the daemon claimed an inbox file and has not yet folded it (SIGKILL)",
    "daemon.folded": "the daemon folded a file that no checkpoint counts yet (SIGKILL)",
    "daemon.checkpointed": "the daemon wrote a checkpoint and has not yet unlinked the "
    "claimed files it counts (SIGKILL)",
    "daemon.claim-paused": "=PATH: between a file's probe and its claim the daemon creates "
    "PATH and waits (at most 10 s) until the test removes it; every file",
    "daemon.inotify-fails": "the daemon's inotify observer fails to start as when the watch "
    "limit is reached (ENOSPC): the daemon works in scan-only mode",
    "daemon.observer-dies": "=PATH: 'kill' in PATH makes the daemon's liveness check stop "
    "the observer's emitters (and write 'dead'); it sees nothing while PATH exists",
    "daemon.trace": "=PATH: the daemon appends '<file name> <time.time()>' to PATH for each "
    "file it folds (the ingest latency benchmark)",
    "run.snapshot-damaged": "[=flip|truncate]: before a run folds a batch, a byte in the "
    "middle of its first snapshot's data is flipped (default) or the file is cut to half "
    "(a bad disk, another program); the run must detect it and simulate the batch again",
}

# the phases of a run's life, in order, where hold_at stops it for a signal (=PATH)
HOLD_POINTS = {
    "run.started": "the interpreter started `noisefs`; nothing parsed or opened yet",
    "run.arena-opened": "the run's arena is open; no executor yet",
    "worker.starting": "a worker process started (Qiskit imported); its initializer not run",
    "batch.reserved": "a put reserved room for a snapshot; nothing written",
    "batch.written": "a put wrote a snapshot's file; not published",
    "batch.published": "a batch's snapshots are put (a worker's rows not yet published)",
    "batch.folding": "a batch is folded into its first snapshot step only",
    "batch.folded": "a batch is folded into every step; its snapshots not released",
    "batch.released": "a folded batch's snapshots are released",
    "checkpoint.writing": "a checkpoint's temporary file is written; not renamed",
    "checkpoint.written": "a checkpoint is in place",
    "run.shutting-down": "the last batch is folded; the executor not shut down",
    "result.writing": "the result's temporary file is written; not renamed",
    "result.written": "the result file is in place; the checkpoint not removed",
}
POINTS.update({name: f"=PATH: hold (hold_at) where {what}" for name, what in HOLD_POINTS.items()})

_armed: dict[str, tuple[int, str | None]] = {}
_reached: Counter[str] = Counter()
_parsed: tuple[str, dict[str, tuple[int, str | None]]] = ("", {})


def _parse(item: str) -> tuple[str, int, str | None]:
    """``point[@n][=VALUE]`` as (point, n, value)."""
    head, equals, value = item.partition("=")
    point, _, at = head.partition("@")
    return point, int(at or 1), value if equals else None


def _from_environment() -> dict[str, tuple[int, str | None]]:
    global _parsed
    text = os.environ.get(ENV, "")
    if text != _parsed[0]:
        spec: dict[str, tuple[int, str | None]] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            point, at, value = _parse(item)
            spec[point] = (at, value)
        _parsed = (text, spec)
    return _parsed[1]


def _switched_on(point: str) -> tuple[int, str | None] | None:
    if point not in POINTS:
        raise ValueError(f"unknown fault point {point!r}")
    return _armed.get(point) or _from_environment().get(point)


def fires(point: str) -> bool:
    """Whether the switched-on ``point`` fires now (its n-th time in this process)."""
    found = _switched_on(point)
    if found is None:
        return False
    _reached[point] += 1
    return _reached[point] == found[0]


def setting(point: str) -> str | None:
    """The value ``point`` was switched on with (``point=VALUE``), every time it is
    reached; None while it is off or was switched on without a value."""
    found = _switched_on(point)
    return None if found is None else found[1]


def kill_at(point: str) -> None:
    """SIGKILL this process when ``point`` fires (as the OOM killer would)."""
    if fires(point):
        os.kill(os.getpid(), signal.SIGKILL)


def signal_at(point: str, signum: int = signal.SIGTERM) -> None:
    """Send this process ``signum`` when ``point`` fires (as a user's Ctrl-C or kill would)."""
    if fires(point):
        os.kill(os.getpid(), signum)


def pause_at(point: str, limit_s: float = 10.0) -> None:
    """When ``point`` is switched on with a marker path: create that file and wait until
    the test removes it (at most ``limit_s``), every time the point is reached."""
    marker = setting(point)
    if not marker:
        return
    path = Path(marker)
    path.touch()
    deadline = time.monotonic() + limit_s
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def hold_at(point: str, limit_s: float = 120.0) -> None:
    """When ``point@n=PATH`` fires in this process (its n-th time here) and no other
    process of the run held at it before (``PATH.claimed`` is created once): write this
    process's pid to PATH and wait until the test removes PATH (at most ``limit_s``).
    Several processes (a run's workers) may reach a point; one of them holds."""
    if not fires(point):
        return
    marker = setting(point)
    if not marker:
        return
    try:
        os.close(os.open(f"{marker}.claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return
    temp = f"{marker}.{os.getpid()}.tmp"
    with open(temp, "w") as handle:
        handle.write(f"{os.getpid()}\n")
    os.replace(temp, marker)  # the test sees the whole pid or nothing
    deadline = time.monotonic() + limit_s
    while os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.005)


def damage_at(point: str, arena, key: str) -> None:
    """When ``point`` fires: damage the data file of snapshot ``key`` of ``arena`` in
    place, as ``point=flip`` (the default: one byte in the middle of its data inverted)
    or ``point=truncate`` (the file cut to half its size) says."""
    if not fires(point):
        return
    info = arena.info(key)
    directory = arena.root / "data" if info["tier"] == "tmpfs" else arena.spill_dir
    fd = os.open(directory / info["slot"], os.O_RDWR | os.O_NOFOLLOW)
    try:
        if setting(point) == "truncate":
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
        else:
            at = 4096 + int(info["nbytes"]) // 2  # past the one-page header (snapfile.py)
            os.pwrite(fd, bytes([os.pread(fd, 1, at)[0] ^ 0xFF]), at)
    finally:
        os.close(fd)


def environment(*points: str) -> dict[str, str]:
    """``os.environ`` plus ``NOISEFS_FAULTS`` switching ``points`` on (``point``,
    ``point@n`` or ``point=VALUE``), for a child process."""
    for item in points:
        point, _, value = _parse(item)
        if point not in POINTS:
            raise ValueError(f"unknown fault point {point!r}")
        if value is not None and "," in value:
            raise ValueError(f"the value of fault point {point!r} cannot hold a comma")
    return {**os.environ, ENV: ",".join(points)}


@contextlib.contextmanager
def armed(point: str, at: int = 1, value: str | None = None) -> Iterator[None]:
    """Switch ``point`` on in this process for the ``with`` block (``value``: what
    :func:`setting` returns)."""
    if point not in POINTS:
        raise ValueError(f"unknown fault point {point!r}")
    _armed[point] = (at, value)
    _reached[point] = 0
    try:
        yield
    finally:
        _armed.pop(point, None)
        _reached.pop(point, None)
