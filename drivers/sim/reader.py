"""A simulated reader: present a card, a PIN or a pass as if someone held it to the reader."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.reader import CredentialRead, Reader
from edge.model import CredentialKind


@dataclass(frozen=True, slots=True)
class Feedback:
    granted: bool
    reason: str


class SimulatedReader(Reader):
    def __init__(self, reader_id: str) -> None:
        super().__init__(reader_id)
        self.feedback_log: list[Feedback] = []

    async def start(self) -> None:
        self.online = True

    async def stop(self) -> None:
        self.online = False

    async def feedback(self, granted: bool, reason: str) -> None:
        self.feedback_log.append(Feedback(granted, reason))
        del self.feedback_log[:-100]

    def present(self, kind: CredentialKind, value: str) -> None:
        self._on_credential(CredentialRead(self.id, kind, value))
