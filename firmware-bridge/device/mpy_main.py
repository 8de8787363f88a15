"""The reference firmware's entry point on a MicroPython board (ESP32 or RP2040): UART (or RS-485) port, relay
and input pins, Wiegand reader lines, the hardware watchdog, and the protocol core's main loop.

Copy it to the board as main.py (docs/firmware-bridge.md, "Flashing the reference"). It is not imported on the
gateway: `machine` exists only on a board. The pin numbers below are the wiring in the docs; change them for
another board. This file has not been run on every board: treat it as the reference to start from.
"""

import os
import time

import machine  # type: ignore[import-not-found]
from firmware_bridge.device.core import Device, DeviceConfig
from firmware_bridge.device.files import FileStorage
from firmware_bridge.device.hal import Board, Clock, Port, Verifier
from firmware_bridge.protocol import ReaderFormat, ResetCause

VERSION = "1.0.0"
# ESP32 DevKit defaults; an RP2040 uses UART 0 on GPIO 0/1 and GPIO 2-9 for the same roles.
UART_ID, TX_PIN, RX_PIN = 2, 17, 16
DE_PIN = 4  # RS-485 driver enable (DE and /RE tied); -1 for a plain UART
RELAY_PINS = (25, 26)
INPUT_PINS = (32, 33, 34, 35)  # door contact, exit button, tamper, spare; active low with pull-ups
WIEGAND_D0, WIEGAND_D1 = 18, 19
BAUD = 115200
DEBOUNCE_MS = 20


class UartPort(Port):
    def __init__(self, uart: object, de_pin: int) -> None:
        self.uart = uart
        self.de = machine.Pin(de_pin, machine.Pin.OUT, value=0) if de_pin >= 0 else None

    def read(self) -> bytes:
        data = self.uart.read()  # type: ignore[attr-defined]
        return bytes(data) if data else b""

    def write(self, data: bytes) -> None:
        if self.de is None:
            self.uart.write(data)  # type: ignore[attr-defined]
            return
        self.de.value(1)  # half duplex: drive the bus only while sending
        self.uart.write(data)  # type: ignore[attr-defined]
        self.uart.flush()  # type: ignore[attr-defined]  # wait for the last stop bit
        self.de.value(0)


class TicksClock(Clock):
    def ticks_ms(self) -> int:
        return int(time.ticks_ms())  # type: ignore[attr-defined]

    def diff(self, later: int, earlier: int) -> int:
        return int(time.ticks_diff(later, earlier))  # type: ignore[attr-defined]


class Wiegand:
    """Collects D0/D1 pulses in interrupts; a read is complete after 25 ms without a pulse."""

    def __init__(self, d0: int, d1: int) -> None:
        self.bits = 0
        self.count = 0
        self.last = 0
        machine.Pin(d0, machine.Pin.IN, machine.Pin.PULL_UP).irq(
            lambda pin: self._bit(0), machine.Pin.IRQ_FALLING
        )
        machine.Pin(d1, machine.Pin.IN, machine.Pin.PULL_UP).irq(
            lambda pin: self._bit(1), machine.Pin.IRQ_FALLING
        )

    def _bit(self, value: int) -> None:
        self.bits = (self.bits << 1) | value
        self.count += 1
        self.last = int(time.ticks_ms())  # type: ignore[attr-defined]

    def take(self) -> tuple[int, int] | None:
        if not self.count or time.ticks_diff(time.ticks_ms(), self.last) < 25:  # type: ignore[attr-defined]
            return None
        state = machine.disable_irq()
        bits, count = self.bits, self.count
        self.bits = self.count = 0
        machine.enable_irq(state)
        return bits, count


class PinBoard(Board):
    def __init__(self) -> None:
        self.relays = [machine.Pin(n, machine.Pin.OUT, value=0) for n in RELAY_PINS]
        self.pins = [machine.Pin(n, machine.Pin.IN, machine.Pin.PULL_UP) for n in INPUT_PINS]
        self.outputs = len(self.relays)
        self.inputs = len(self.pins)
        self.factory_version = VERSION
        self.stable = [not pin.value() for pin in self.pins]
        self.changed_at = [0] * self.inputs
        self.wiegand = Wiegand(WIEGAND_D0, WIEGAND_D1)

    def set_output(self, number: int, energised: bool) -> None:
        self.relays[number - 1].value(1 if energised else 0)

    def read_inputs(self) -> list[bool]:
        now = int(time.ticks_ms())  # type: ignore[attr-defined]
        for i, pin in enumerate(self.pins):
            raw = not pin.value()
            if raw == self.stable[i]:
                self.changed_at[i] = now
            elif time.ticks_diff(now, self.changed_at[i]) >= DEBOUNCE_MS:  # type: ignore[attr-defined]
                self.stable[i] = raw
        return list(self.stable)

    def take_reads(self) -> list[tuple[int, int, int, bytes]]:
        read = self.wiegand.take()
        if read is None:
            return []
        bits, count = read
        return [(1, ReaderFormat.WIEGAND, count, bits.to_bytes((count + 7) // 8, "big"))]

    def random_u32(self) -> int:
        return int.from_bytes(os.urandom(4), "big")

    def hardware_reset_cause(self) -> int:
        return ResetCause.POWER_ON if machine.reset_cause() == machine.PWRON_RESET else -1


class ModuleVerifier(Verifier):
    """Ed25519 from a module the firmware ships as ed25519_verify.py with verify(public_key, signature, message)
    -> bool (MicroPython has no Ed25519 built in). Without it every update is refused: never accept unverified
    firmware."""

    def ed25519(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        try:
            import ed25519_verify  # type: ignore[import-not-found]
        except ImportError:
            return False
        return bool(ed25519_verify.verify(public_key, signature, message))


def main() -> None:
    uart = machine.UART(UART_ID, baudrate=BAUD, tx=TX_PIN, rx=RX_PIN, rxbuf=1024)
    with open("/release_key.bin", "rb") as f:  # the operator's Ed25519 public key, written when flashing
        release_key = f.read()
    storage = FileStorage("/fw")
    device = Device(
        UartPort(uart, DE_PIN),
        TicksClock(),
        PinBoard(),
        storage,
        ModuleVerifier(),
        release_key,
        DeviceConfig(),
    )
    watchdog = machine.WDT(timeout=2000)
    while True:
        device.poll()
        watchdog.feed()
        if device.reset_requested >= 0:
            time.sleep_ms(20)  # type: ignore[attr-defined]  # let the last answer leave the UART
            machine.reset()
        time.sleep_ms(1)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
