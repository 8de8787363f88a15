"""The device reference running as a simulator on CPython: a board you can watch and poke, its flash in memory,
and the protocol core in its own thread on one end of a pseudo-terminal, as if a microcontroller were wired to
the other end. Used by the tests, the benchmark and demos. CPython only (threads, os, cryptography).

A reset (asked by the core, or `reset()` from outside) throws the core away and boots a new one on the same
board and flash, exactly as a chip reset would: relays drop, RAM (reply cache, queued events) is lost, the
slots and their record survive.
"""

from __future__ import annotations

import os
import select
import threading
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from firmware_bridge.device.core import Device, DeviceConfig
from firmware_bridge.device.hal import Board, Clock, Port, Storage, Verifier
from firmware_bridge.protocol import ResetCause


class FdPort(Port):
    """A serial line on a file descriptor (one end of a pty), read without blocking."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    def read(self) -> bytes:
        try:
            return os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return b""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                select.select([], [self.fd], [], 0.05)


class MonotonicClock(Clock):
    def ticks_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class OutputChange:
    output: int
    energised: bool
    mono: float


class SimBoard(Board):
    """Relays with a history, inputs and readers that tests set from any thread."""

    def __init__(self, outputs: int = 4, inputs: int = 8, version: str = "1.0.0") -> None:
        self.outputs = outputs
        self.inputs = inputs
        self.factory_version = version
        self.healthy = True  # what self_test answers: False simulates an image that never confirms
        self.history: list[OutputChange] = []
        self.leds: list[tuple[int, int, int]] = []
        self.buzzes: list[tuple[int, int]] = []
        self.host_changes: list[bool] = []  # what host_link was told, in order
        self._levels = [False] * (outputs + 1)
        self._inputs = [False] * inputs
        self._reads: list[tuple[int, int, int, bytes]] = []
        self._lock = threading.Lock()
        self.power_on = True  # the next boot is after a power cut

    def set_output(self, number: int, energised: bool) -> None:
        with self._lock:
            self._levels[number] = energised
            self.history.append(OutputChange(number, energised, time.monotonic()))

    def level(self, number: int) -> bool:
        with self._lock:
            return self._levels[number]

    def energisations(self, number: int) -> int:
        """How many times the output went from off to on: an unlock count for a fail-secure strike."""
        with self._lock:
            count, level = 0, False
            for change in self.history:
                if change.output == number:
                    count += change.energised and not level
                    level = change.energised
            return count

    def drop_relays(self) -> None:
        with self._lock:
            for n in range(1, len(self._levels)):
                if self._levels[n]:
                    self._levels[n] = False
                    self.history.append(OutputChange(n, False, time.monotonic()))

    def set_input(self, number: int, active: bool) -> None:
        with self._lock:
            self._inputs[number - 1] = active

    def read_inputs(self) -> list[bool]:
        with self._lock:
            return list(self._inputs)

    def present(self, reader: int, fmt: int, bits: int, data: bytes) -> None:
        with self._lock:
            self._reads.append((reader, fmt, bits, data))

    def take_reads(self) -> list[tuple[int, int, int, bytes]]:
        with self._lock:
            reads, self._reads = self._reads, []
            return reads

    def led(self, led: int, colour: int, ms: int) -> None:
        self.leds.append((led, colour, ms))

    def buzzer(self, ms: int, count: int) -> None:
        self.buzzes.append((ms, count))

    def host_link(self, up: bool) -> None:
        self.host_changes.append(up)

    def self_test(self) -> bool:
        return self.healthy

    def random_u32(self) -> int:
        return int.from_bytes(os.urandom(4), "big")

    def hardware_reset_cause(self) -> int:
        if self.power_on:
            self.power_on = False
            return ResetCause.POWER_ON
        return -1


class MemoryStorage(Storage):
    """Two slots and the metadata record in RAM; they outlive simulated resets like flash does."""

    def __init__(self, slot_size: int = 256 * 1024) -> None:
        self.slot_size = slot_size
        self.slots = [bytearray(b"\xff" * slot_size), bytearray(b"\xff" * slot_size)]
        self.meta = b""
        self.writes = 0

    def erase(self, slot: int) -> None:
        self.slots[slot][:] = b"\xff" * self.slot_size

    def write(self, slot: int, offset: int, data: bytes) -> None:
        self.slots[slot][offset : offset + len(data)] = data
        self.writes += 1

    def read(self, slot: int, offset: int, length: int) -> bytes:
        return bytes(self.slots[slot][offset : offset + length])

    def load_meta(self) -> bytes:
        return self.meta

    def save_meta(self, data: bytes) -> None:
        self.meta = data


class CryptographyVerifier(Verifier):
    def ed25519(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class SimulatedDevice:
    """The reference firmware in a thread on `fd`. `device` is the core of the current boot."""

    def __init__(
        self,
        fd: int,
        release_key: bytes,
        *,
        board: SimBoard | None = None,
        storage: Storage | None = None,
        config: DeviceConfig | None = None,
    ) -> None:
        self.port = FdPort(fd)
        self.board = board or SimBoard()
        self.storage = storage or MemoryStorage()
        self.release_key = release_key
        self.config = config
        self.clock = MonotonicClock()
        self.boots = 0
        self._lock = threading.Lock()
        self._reset_cause = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.device = self._boot()

    def _boot(self) -> Device:
        self.board.drop_relays()
        self.boots += 1
        return Device(
            self.port,
            self.clock,
            self.board,
            self.storage,
            CryptographyVerifier(),
            self.release_key,
            self.config,
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sim-device", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reset(self, power_cut: bool = False) -> None:
        """Reset the chip from outside (a watchdog, a brown-out, someone pressing the reset button)."""
        with self._lock:
            self._reset_cause = ResetCause.POWER_ON if power_cut else ResetCause.WATCHDOG

    def _run(self) -> None:
        while not self._stop.is_set():
            select.select([self.port.fd], [], [], 0.002)
            with self._lock:
                outside, self._reset_cause = self._reset_cause, -1
            if outside >= 0:
                self.board.power_on = outside == ResetCause.POWER_ON
                self.device = self._boot()
            self.device.poll()
            if self.device.reset_requested >= 0:
                self.device = self._boot()
