"""systemd's notify protocol: READY=1, WATCHDOG=1 and STOPPING=1 over the $NOTIFY_SOCKET datagram socket.

Why our own ~40 lines and not the `sdnotify` package: the protocol is one datagram per message to a unix
socket path (or an abstract name written with a leading '@'); the package is unmaintained since 2017, has no
type hints and does not read WATCHDOG_USEC, which we need anyway. Outside systemd (no NOTIFY_SOCKET) every
call is a no-op, so tests and `menwei demo` need nothing.

The watchdog is pinged from a task on the gateway's event loop, never from a thread: if the loop stalls
(a blocking call, a runaway decision) the pings stop and systemd restarts the service after WatchdogSec=.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends notify messages to systemd; does nothing when not started by systemd with Type=notify."""

    def __init__(self, address: str | None, watchdog_seconds: float | None = None) -> None:
        self.address = address
        self.watchdog_seconds = watchdog_seconds
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        watchdog: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process systemd expects the pings from; another process must not send them.
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(usec) / 1_000_000
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, message: str) -> None:
        if self.address is None:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # never wait on systemd from the event loop
            self._sock.sendto(message.encode(), target)
        except OSError as err:
            if not self._failed:  # once: a broken socket would otherwise log every watchdog interval
                log.error("cannot notify systemd at %s: %s", self.address, err)
                self._failed = True
        else:
            if self._failed:
                log.info("systemd notification recovered")
                self._failed = False

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    async def keep_alive(self, stop: asyncio.Event) -> None:
        """Ping the watchdog at half its timeout until `stop` is set (no-op without a watchdog)."""
        if self.address is None or self.watchdog_seconds is None:
            return
        interval = self.watchdog_seconds / 2
        while not stop.is_set():
            self.watchdog()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
