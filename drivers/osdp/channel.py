"""Byte pipes for libosdp: it polls `read`, `write` and `flush` from its own thread and must never block."""

from __future__ import annotations

import os
from typing import Any

import osdp


class FdChannel(osdp.Channel):  # type: ignore[misc]
    """A raw file descriptor (a pseudo-terminal end in tests, or a tty opened by the caller)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        os.set_blocking(fd, False)

    def read(self, max_bytes: int) -> bytes:
        try:
            return os.read(self.fd, max_bytes)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:  # the other end went away: silence, and libosdp reports the reader offline
            return b""

    def write(self, buf: bytes) -> int:
        try:
            return os.write(self.fd, buf)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            return 0

    def flush(self) -> None:
        return None


class SerialChannel(osdp.Channel):  # type: ignore[misc]
    """An RS-485 port through pyserial (or any pyserial URL), opened non-blocking."""

    def __init__(self, port: str, baudrate: int = 9600) -> None:
        import serial

        super().__init__()
        self.serial: Any = serial.serial_for_url(port, baudrate=baudrate, timeout=0, write_timeout=0)

    def read(self, max_bytes: int) -> bytes:
        try:
            return bytes(self.serial.read(max_bytes))
        except OSError:
            return b""

    def write(self, buf: bytes) -> int:
        try:
            return int(self.serial.write(buf) or 0)
        except OSError:
            return 0

    def flush(self) -> None:
        try:
            self.serial.reset_input_buffer()
        except OSError:
            return

    def close(self) -> None:
        self.serial.close()
