"""A fault-injecting cable: a byte relay between two pseudo-terminals that can lose, garble, corrupt, split,
pace and cut what passes.

Shipped in the library (not hidden in the tests) so the tests, the benchmark and a bench demo all use the same
faults. The relay works frame by frame (it cuts each direction at the zero delimiters) so a fault can target
"the next ACK" rather than a byte offset; bytes it cannot read as a frame pass through untouched.

`baud` paces each direction like a UART: a byte takes 10 bit times (8N1) on the line, so a frame is delivered
no earlier than its last byte would have arrived at that speed.
"""

from __future__ import annotations

import os
import pty
import random
import select
import threading
import time
import tty
from dataclasses import dataclass, field

from firmware_bridge.frame import FrameError, FrameType, cobs_decode, cobs_encode, decode_frame


@dataclass(slots=True)
class Faults:
    """What to do to the next frames in one direction. Counters count down as frames pass."""

    drop_types: dict[int, int] = field(default_factory=dict)  # FrameType -> how many of the next to drop
    garble: int = 0  # flip a byte in the next N frames (COBS or CRC breaks)
    corrupt_crc: int = 0  # next N frames arrive well stuffed but with a wrong CRC
    split: bool = False  # deliver every frame in 1-3 byte pieces with a pause between
    dropped: int = 0  # frames dropped so far (for tests to see that a fault happened)


def open_pty() -> tuple[int, int, str]:
    """A raw pseudo-terminal pair: (master fd, slave fd, slave path)."""
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


class FaultRelay:
    """Copies bytes from `a` to `b` and back (two file descriptors, e.g. pty masters), one thread each way."""

    def __init__(self, a: int, b: int, *, baud: int | None = None, seed: int = 7) -> None:
        self.a = a
        self.b = b
        self.baud = baud
        self.plugged = True
        self.a_to_b = Faults()
        self.b_to_a = Faults()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._pump, args=(a, b, self.a_to_b), name="relay-a-b", daemon=True),
            threading.Thread(target=self._pump, args=(b, a, self.b_to_a), name="relay-b-a", daemon=True),
        ]
        for fd in (a, b):
            os.set_blocking(fd, False)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def unplug(self) -> None:
        """Pull the cable: from now on nothing passes either way (bytes on the way are lost)."""
        self.plugged = False

    def replug(self) -> None:
        self.plugged = True

    def _pump(self, src: int, dst: int, faults: Faults) -> None:
        pending = b""
        line_free = 0.0  # when the paced line has sent everything so far
        while not self._stop.is_set():
            ready, _, _ = select.select([src], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(src, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return
            if not self.plugged:
                pending = b""
                continue
            pending += data
            while True:
                end = pending.find(b"\x00")
                if end < 0:
                    break
                unit, pending = pending[: end + 1], pending[end + 1 :]
                unit = self._apply(unit, faults)
                if not unit:
                    continue
                if self.baud:
                    line_free = max(line_free, time.monotonic()) + len(unit) * 10 / self.baud
                    delay = line_free - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                self._deliver(dst, unit, faults.split)

    def _apply(self, unit: bytes, faults: Faults) -> bytes:
        body = unit[:-1]
        if not body:
            return unit
        try:
            frame_type = decode_frame(body).type
        except FrameError:
            return unit
        with self._lock:
            if faults.drop_types.get(frame_type, 0) > 0:
                faults.drop_types[frame_type] -= 1
                faults.dropped += 1
                return b""
            if faults.garble > 0:
                faults.garble -= 1
                garbled = bytearray(body)
                garbled[self._random.randrange(len(garbled))] ^= 1 << self._random.randrange(8)
                return bytes(garbled).replace(b"\x00", b"\x01") + b"\x00"
            if faults.corrupt_crc > 0:
                faults.corrupt_crc -= 1

                raw = bytearray(cobs_decode(body))
                raw[-1] ^= 0xFF
                return cobs_encode(bytes(raw)) + b"\x00"
        return unit

    def _deliver(self, dst: int, unit: bytes, split: bool) -> None:
        if not split:
            self._write(dst, unit)
            return
        i = 0
        while i < len(unit):
            n = self._random.randint(1, 3)
            self._write(dst, unit[i : i + n])
            i += n
            time.sleep(0.0005)

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                select.select([], [fd], [], 0.05)


__all__ = ["FaultRelay", "Faults", "FrameType", "open_pty"]
