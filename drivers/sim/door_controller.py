"""A simulated door controller: relays you can watch and inputs you can flip, like a board on a test bench."""

from __future__ import annotations

import time
from dataclasses import dataclass

from drivers.door_controller import DoorController, InputChange
from drivers.errors import DriverError, DriverErrorReason


@dataclass(frozen=True, slots=True)
class OutputWrite:
    output: int
    energised: bool
    pulse_seconds: float | None
    mono: float  # time.monotonic() when the write reached the "board"


class SimulatedDoorController(DoorController):
    def __init__(self, controller_id: str, outputs: int = 4, inputs: int = 8) -> None:
        super().__init__(controller_id)
        self.outputs = [False] * (outputs + 1)  # 1-based, index 0 unused
        self.inputs = [False] * (inputs + 1)
        self.writes: list[OutputWrite] = []
        self.max_history = 10_000

    async def start(self) -> None:
        self.online = True
        self._on_online(self.id, True, "simulated")

    async def stop(self) -> None:
        self.online = False

    async def set_output(self, output: int, energised: bool, pulse_seconds: float | None = None) -> None:
        if not self.online:
            raise DriverError(self.id, DriverErrorReason.OFFLINE)
        if not 1 <= output < len(self.outputs):
            raise DriverError(self.id, DriverErrorReason.BAD_ARGUMENT, f"no output {output}")
        self.outputs[output] = energised
        self.writes.append(OutputWrite(output, energised, pulse_seconds, time.monotonic()))
        if len(self.writes) > self.max_history:
            del self.writes[: len(self.writes) // 2]

    # --- the physical world ---------------------------------------------------------------------------------

    def set_input(self, number: int, active: bool) -> None:
        """Flip an input (door contact opened, exit button pressed, tamper switch) as the wiring would."""
        if not 1 <= number < len(self.inputs):
            raise DriverError(self.id, DriverErrorReason.BAD_ARGUMENT, f"no input {number}")
        if self.inputs[number] != active:
            self.inputs[number] = active
            self._on_input(InputChange(self.id, number, active))

    def go_offline(self, detail: str = "simulated fault") -> None:
        self.online = False
        self._on_online(self.id, False, detail)

    def come_back(self) -> None:
        self.online = True
        self._on_online(self.id, True, "recovered")
