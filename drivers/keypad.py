"""Keypad keys into a PIN: digits collect, '#' enters, '*' clears, and an unfinished PIN is dropped after a pause
(so the next person does not inherit half of someone else's PIN). Shared by every reader with a keypad."""

from __future__ import annotations

import time
from collections.abc import Callable

ENTER = frozenset({"#", "\r"})  # OSDP keypads send 0x0D for '#'
CLEAR = frozenset({"*", "\x7f"})  # ... and 0x7F for '*'


class PinBuffer:
    def __init__(
        self, timeout: float = 10.0, max_length: int = 12, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.timeout = timeout
        self.max_length = max_length
        self._clock = clock
        self._digits: list[str] = []
        self._last = 0.0

    def key(self, key: str) -> str | None:
        """Feed one key; returns the PIN when it is entered."""
        now = self._clock()
        if self._digits and now - self._last > self.timeout:
            self._digits.clear()
        self._last = now
        if key in CLEAR:
            self._digits.clear()
        elif key in ENTER:
            pin, self._digits = "".join(self._digits), []
            return pin or None
        elif key.isdigit() and len(self._digits) < self.max_length:
            self._digits.append(key)
        return None

    def clear(self) -> None:
        self._digits.clear()
