"""LED and buzzer commands for an OSDP reader, checked against what a reader accepts before they are sent.

A reader answers a command it does not like with a NAK, and libosdp then takes it offline for 300 seconds: a
bad feedback command would cost the door its reader for five minutes. So the rules a PD enforces are checked
here (verified with libosdp 3.2.9's PeripheralDevice): an LED flash needs a non-zero on or off time, a buzzer
needs a non-zero on time unless the command only stops it, and every count fits its field.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class Color(IntEnum):  # OSDP LED colours
    BLACK = 0
    RED = 1
    GREEN = 2
    AMBER = 3
    BLUE = 4


def _byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{name} must be 0-255, not {value}")


@dataclass(frozen=True, slots=True)
class Led:
    """A temporary LED pattern (control code 2) for timer x 100 ms, then the LED's permanent state."""

    on_color: Color
    off_color: Color = Color.BLACK
    on_count: int = 5  # x 100 ms
    off_count: int = 0
    timer: int = 20  # x 100 ms
    reader: int = 0
    led: int = 0

    def __post_init__(self) -> None:
        for name in ("on_count", "off_count", "reader", "led"):
            _byte(name, getattr(self, name))
        if self.on_count == 0 and self.off_count == 0:
            raise ValueError("an LED pattern needs on_count or off_count above zero (the PD NAKs 0/0)")
        if not 0 < self.timer <= 0xFFFF:
            raise ValueError(f"timer must be 1-65535, not {self.timer}")

    def command(self) -> dict[str, Any]:
        from osdp import Command

        return {
            "command": Command.LED,
            "reader": self.reader,
            "led_number": self.led,
            "control_code": 2,
            "on_count": self.on_count,
            "off_count": self.off_count,
            "on_color": int(self.on_color),
            "off_color": int(self.off_color),
            "timer_count": self.timer,
            "temporary": True,
        }


@dataclass(frozen=True, slots=True)
class Buzzer:
    """Beep `repeat` times (on/off in x 100 ms); stop=True silences it instead."""

    on_count: int = 2
    off_count: int = 1
    repeat: int = 1
    stop: bool = False
    reader: int = 0

    def __post_init__(self) -> None:
        for name in ("on_count", "off_count", "repeat", "reader"):
            _byte(name, getattr(self, name))
        if not self.stop and self.on_count == 0:
            raise ValueError("a beep needs on_count above zero (the PD NAKs it otherwise)")

    def command(self) -> dict[str, Any]:
        from osdp import Command

        return {
            "command": Command.Buzzer,
            "reader": self.reader,
            "control_code": 1 if self.stop else 2,
            "on_count": self.on_count,
            "off_count": self.off_count,
            "rep_count": self.repeat,
        }


GRANTED = (Led(Color.GREEN, on_count=30, timer=30), Buzzer(on_count=2, repeat=1))
DENIED = (Led(Color.RED, on_count=3, off_count=2, timer=20), Buzzer(on_count=1, off_count=1, repeat=3))
