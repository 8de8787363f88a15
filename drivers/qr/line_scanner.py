"""Hand-held QR scanners that deliver one line per scan: keyboard-wedge (USB HID "keyboard" scanners typing
into a terminal or a text stream) and serial scanners (RS-232 or USB-CDC, through pyserial).

Why one line assembler for both: either way the scanner sends the code's characters and a terminator (CR, LF
or CR LF, as the scanner is configured). The assembler accepts any of them, drops empty lines, and discards an
over-long line whole rather than passing on a fragment of it (a fragment of a pass is a malformed pass, but a
fragment of garbage could look like a card number to another reader kind).

Keyboard-wedge caveat: the scanner types the characters with the host's keyboard layout in mind; a layout
mismatch turns '$', '%', '*' or ':' of a pass into other characters, and the pass is refused as malformed.
Prefer serial (or USB-CDC) mode where the scanner has it.

Blocking reads run in a thread and hand lines to the loop with call_soon_threadsafe. The thread polls with a
short timeout, so `stop()` returns promptly.
"""

from __future__ import annotations

import logging
import os
import selectors
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from drivers.qr.threaded import ThreadedPassReader

log = logging.getLogger(__name__)

MAX_LINE = 2048  # a pass is about 250 characters
POLL_SECONDS = 0.2


class LineAssembler:
    """Bytes in, complete lines out (CR, LF or CR LF ends a line)."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._overflow = False
        self.discarded = 0  # over-long lines dropped

    def feed(self, data: bytes) -> list[str]:
        lines: list[str] = []
        for byte in data:
            if byte in (0x0A, 0x0D):
                if self._overflow:
                    self.discarded += 1
                elif self._buffer:
                    lines.append(self._buffer.decode("utf-8", "replace"))
                self._buffer.clear()
                self._overflow = False
            elif not self._overflow:
                self._buffer.append(byte)
                if len(self._buffer) > self.max_line:
                    self._buffer.clear()
                    self._overflow = True
        return lines


class _LineReader(ThreadedPassReader):
    """What both scanner kinds share beyond the threaded reader: nothing but the name in the logs."""

    def __init__(self, reader_id: str) -> None:
        super().__init__(reader_id, device="scanner")


class LineScannerReader(_LineReader):
    """A keyboard-wedge scanner: lines from a text stream (e.g. a terminal's stdin) or a tty path."""

    def __init__(
        self, reader_id: str, *, stream: TextIO | None = None, path: str | Path | None = None
    ) -> None:
        if (stream is None) == (path is None):
            raise ValueError("give exactly one of stream or path")
        super().__init__(reader_id)
        self._stream = stream
        self._path = Path(path) if path is not None else None
        self.assembler = LineAssembler()

    def _run(self) -> None:
        if self._stream is not None:
            self._read_stream(self._stream)
            return
        assert self._path is not None
        delay = 1.0
        while not self._stop.is_set():
            try:
                fd = os.open(self._path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
            except OSError as err:
                self._fault(f"{self._path}: {err.strerror}")
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 1.0
            try:
                self._recovered()
                if self._read_fd(fd):
                    return
            finally:
                os.close(fd)
        self.online = False

    def _read_stream(self, stream: TextIO) -> None:
        try:
            fd = stream.fileno()
        except (OSError, ValueError, AttributeError):
            fd = -1
        self._recovered()
        if fd >= 0:
            self._read_fd(fd)
        else:  # an in-memory stream: nothing to wait for
            for line in stream:
                if self._stop.is_set():
                    break
                for whole in self.assembler.feed(line.encode("utf-8")):
                    self._hand_over(whole)
        self.online = False

    def _read_fd(self, fd: int) -> bool:
        """Read lines until stopped (False) or end of input (True)."""
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not selector.select(POLL_SECONDS):
                    continue
                try:
                    data = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                except OSError as err:
                    self._fault(str(err))
                    return False
                if not data:
                    for whole in self.assembler.feed(b"\n"):  # a last line without its terminator
                        self._hand_over(whole)
                    return True
                for line in self.assembler.feed(data):
                    self._hand_over(line)
        return False


SerialFactory = Callable[[], Any]


class SerialScannerReader(_LineReader):
    """A serial scanner through pyserial: a port (/dev/ttyACM0) or any pyserial URL (loop://, socket://...)."""

    def __init__(
        self,
        reader_id: str,
        port: str,
        *,
        baudrate: int = 9600,
        open_port: SerialFactory | None = None,
    ) -> None:
        super().__init__(reader_id)
        self.port = port
        self.baudrate = baudrate
        self._open_port = open_port or self._default_open
        self.assembler = LineAssembler()
        self.serial: Any = None  # the open port, for tests that write into a loop:// port

    def _default_open(self) -> Any:
        import serial

        return serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=POLL_SECONDS)

    def _run(self) -> None:
        import serial

        delay = 1.0
        while not self._stop.is_set():
            try:
                port = self._open_port()
            except (serial.SerialException, OSError, ValueError) as err:
                self._fault(f"{self.port}: {err}")
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 1.0
            self.serial = port
            self._recovered()
            try:
                while not self._stop.is_set():
                    data = port.read(max(1, port.in_waiting))
                    for line in self.assembler.feed(data):
                        self._hand_over(line)
            except (serial.SerialException, OSError) as err:
                self._fault(f"{self.port}: {err}")
            finally:
                self.serial = None
                port.close()
        self.online = False
