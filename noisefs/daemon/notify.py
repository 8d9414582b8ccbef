"""systemd's notification protocol (``sd_notify``): one datagram per message, no dependency.

With ``Type=notify`` systemd passes ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the
abstract namespace); the daemon sends ``READY=1`` once it polices its arenas,
``RELOADING=1`` + ``MONOTONIC_USEC`` around a SIGHUP, ``STOPPING=1`` at shutdown,
``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` and ``STATUS=...`` lines. Without the socket
every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    """Sends sd_notify messages when systemd asked for them."""

    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET")
        self._address = None
        if address and address[0] in "/@":
            self._address = "\0" + address[1:] if address[0] == "@" else address
        self.watchdog_interval_s: float | None = None
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if usec and usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_interval_s = int(usec) / 2e6

    @property
    def enabled(self) -> bool:
        """True when a notification socket was given."""
        return self._address is not None

    def send(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False when not sent."""
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), self._address)
            return True
        except OSError:
            return False

    def ready(self, status: str = "") -> None:
        """READY=1 (and a status line)."""
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        """RELOADING=1 with the monotonic timestamp systemd ≥ 253 expects."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        """STOPPING=1."""
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        """WATCHDOG=1 (the service's keep-alive)."""
        self.send("WATCHDOG=1")

    def status(self, text: str) -> None:
        """A free-form STATUS= line (shown by ``systemctl status``)."""
        self.send(f"STATUS={text}")
