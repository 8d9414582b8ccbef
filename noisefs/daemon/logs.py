"""Logging to stderr in the form its reader wants.

Under systemd (``$JOURNAL_STREAM`` names stderr's ``device:inode``) each line carries a
syslog priority prefix ``<N>`` that journald turns into the entry's priority, and no
timestamp (journald adds its own); elsewhere a human line with time, level and pid.
"""

from __future__ import annotations

import logging
import os
import sys

PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def stderr_is_journal() -> bool:
    """True when stderr is the journal stream systemd connected."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def one_event(text: str) -> str:
    """Continuation lines indented, carriage returns shown as ``\\r``: a name holding a
    newline (an inbox entry, a path) can never forge a log line of its own."""
    return text.replace("\r", "\\r").replace("\n", "\n  ")


class JournalFormatter(logging.Formatter):
    """``<priority>message``, one line (continuations indented stay in the entry)."""

    def format(self, record: logging.LogRecord) -> str:
        prio = PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        return f"<{prio}>{one_event(super().format(record))}"


class HumanFormatter(logging.Formatter):
    """Time, pid, level and message; continuation lines indented (see :func:`one_event`)."""

    def format(self, record: logging.LogRecord) -> str:
        return one_event(super().format(record))


def setup_logging(level: str = "info") -> logging.Logger:
    """Configure the ``noisefs`` logger tree for the daemon; return the daemon's logger."""
    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(
            HumanFormatter(
                "%(asctime)s noisefs-daemon[%(process)d] %(levelname)s: %(message)s",
                "%Y-%m-%d %H:%M:%S",
            )
        )
    root = logging.getLogger("noisefs")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.propagate = False
    set_level(level)
    return logging.getLogger("noisefs.daemon")


def set_level(level: str) -> None:
    """Change the level (a reload may)."""
    logging.getLogger("noisefs").setLevel(getattr(logging, level.upper(), logging.INFO))
