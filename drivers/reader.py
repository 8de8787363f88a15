"""The reader interface: anything that produces credentials at a door (card reader, keypad, BLE scanner, QR
scanner, face camera) and can show the result (LED, buzzer, screen)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from edge.model import CredentialKind


@dataclass(frozen=True, slots=True)
class CredentialRead:
    reader_id: str
    kind: CredentialKind
    value: str


CredentialCallback = Callable[[CredentialRead], None]


class ReaderCondition(StrEnum):
    OFFLINE = "offline"  # the reader (or its converter or serial line) stopped answering
    TAMPER = "tamper"  # the reader reports its enclosure opened or its wiring cut


class CaptureError(RuntimeError):
    """A reader cannot hand its next read to a caller: another capture is already waiting for it, or the
    reader stopped while one was."""


# (reader id, condition, active, detail)
ConditionCallback = Callable[[str, ReaderCondition, bool, str], None]


class Reader(ABC):
    def __init__(self, reader_id: str) -> None:
        self.id = reader_id
        self.online = False
        self._on_credential: CredentialCallback = lambda read: None
        self._on_condition: ConditionCallback = lambda rid, condition, active, detail: None

    def bind(self, on_credential: CredentialCallback) -> None:
        self._on_credential = on_credential

    def bind_condition(self, on_condition: ConditionCallback) -> None:
        """Where the reader reports faults (offline, tamper), on the event loop; the gateway raises alarms."""
        self._on_condition = on_condition

    @abstractmethod
    async def start(self) -> None:
        """Begin reading. Must not raise when the device is absent: report offline and retry."""

    @abstractmethod
    async def feedback(self, granted: bool, reason: str) -> None:
        """Tell the person at the door: green/red LED, beep, a message on a screen."""

    @abstractmethod
    async def stop(self) -> None: ...
