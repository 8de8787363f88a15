"""The door-controller interface: numbered relay outputs and numbered digital inputs.

A controller knows nothing about doors: the gateway maps a door's lock to an output and its contact, exit button
and tamper switch to inputs (see edge.model.Door). Outputs are written as *energised or not*; the gateway turns
"unlock" into a level according to the lock type (fail-safe maglocks are energised to lock).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InputChange:
    controller_id: str
    input: int
    active: bool


InputCallback = Callable[[InputChange], None]
OnlineCallback = Callable[[str, bool, str], None]  # (controller id, online, detail)


class DoorController(ABC):
    """One board (or microcontroller) with relays and inputs. Implementations call `on_input` on the event loop
    whenever an input changes, and `on_online` when the board stops or starts answering."""

    def __init__(self, controller_id: str) -> None:
        self.id = controller_id
        self.online = False
        self._on_input: InputCallback = lambda change: None
        self._on_online: OnlineCallback = lambda cid, online, detail: None

    def bind(self, on_input: InputCallback, on_online: OnlineCallback) -> None:
        self._on_input = on_input
        self._on_online = on_online

    @abstractmethod
    async def start(self) -> None:
        """Connect and begin reporting inputs. Must not raise when the device is absent: report offline and
        keep retrying in the background."""

    @abstractmethod
    async def set_output(self, output: int, energised: bool, pulse_seconds: float | None = None) -> None:
        """Drive an output. With pulse_seconds, a controller that can time the pulse itself does so, so the
        door relocks even if the gateway dies mid-unlock; the gateway still sends the end of the pulse."""

    @abstractmethod
    async def stop(self) -> None:
        """Disconnect. Outputs keep whatever the hardware does without us (that is what fail-safe/secure means)."""
