"""Board profiles: where on a given relay board each numbered output and input lives.

Boards differ in tables (coils or holding registers for relays; discrete inputs, coils or registers for inputs)
and in their base addresses, and some can time a pulse themselves. That is data, so a new board is a profile in
the config, not new code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Table(StrEnum):
    COILS = "coils"
    DISCRETE_INPUTS = "discrete-inputs"
    HOLDING_REGISTERS = "holding-registers"
    INPUT_REGISTERS = "input-registers"

    @property
    def is_bits(self) -> bool:
        return self in (Table.COILS, Table.DISCRETE_INPUTS)

    @property
    def writable(self) -> bool:
        return self in (Table.COILS, Table.HOLDING_REGISTERS)


class PulseKind(StrEnum):
    REGISTER = "write-register"  # FC06: write `units` to holding register address + output - 1
    COIL_VALUE = "write-coil-value"  # FC05 with `units` as the value (Waveshare "flash on": 0x0200 + channel)


@dataclass(frozen=True, slots=True)
class PulseCommand:
    """The board's own timed pulse: writing `units` at `address + output - 1` energises the output for
    units x unit_seconds, after which the board releases it even if the gateway is gone."""

    address: int
    unit_seconds: float = 0.1
    max_units: int = 0xFFFF
    kind: PulseKind = PulseKind.REGISTER

    def units(self, seconds: float) -> int:
        return max(1, min(self.max_units, math.ceil(seconds / self.unit_seconds - 1e-9)))


@dataclass(frozen=True, slots=True)
class BoardProfile:
    """Output n is at `output_address + n - 1` of `output_table`; input n at `input_address + n - 1` of
    `input_table`. A register counts as energised/active when non-zero; `output_on_value` is what is written to
    energise a register output."""

    output_table: Table = Table.COILS
    output_address: int = 0
    output_on_value: int = 1
    input_table: Table = Table.DISCRETE_INPUTS
    input_address: int = 0
    pulse: PulseCommand | None = None

    def __post_init__(self) -> None:
        if not self.output_table.writable:
            raise ValueError(f"outputs cannot be in {self.output_table.value}: they are read-only")
        if not 0 <= self.output_address <= 0xFFFF or not 0 <= self.input_address <= 0xFFFF:
            raise ValueError("Modbus addresses are 0-65535")

    def output_at(self, output: int) -> int:
        return self.output_address + output - 1

    def pulse_at(self, output: int) -> int | None:
        return None if self.pulse is None else self.pulse.address + output - 1


# Waveshare "Modbus RTU Relay" style boards: relays on coils 0.., opto inputs on discrete inputs 0...
WAVESHARE_RELAY = BoardProfile(pulse=PulseCommand(address=0x0200, kind=PulseKind.COIL_VALUE))
