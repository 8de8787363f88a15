"""[[controllers]]: one model per controller kind, told apart by `type`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
)

from edge.config.fields import Section, Slug, Text


class ControllerBase(Section):
    """What every controller kind has: door outputs (relays) and inputs (contacts, exit buttons, tamper)."""

    id: Slug = Field(description="Controller id, a slug; doors refer to it.")
    outputs: int = Field(ge=1, le=64, description="Number of relay outputs, numbered from 1.")
    inputs: int = Field(ge=0, le=256, description="Number of digital inputs, numbered from 1.")


class SimulatedController(ControllerBase):
    """An in-process controller for tests and the demo: no hardware."""

    type: Literal["simulated"] = Field(description="Controller kind.")


class FirmwareBridgeController(ControllerBase):
    """A door-controller microcontroller (ESP32, RP2040) on a UART or RS-485 line, running the firmware-bridge
    protocol (firmware-bridge/, docs/firmware-bridge.md)."""

    type: Literal["firmware-bridge"] = Field(description="Controller kind.")
    port: Text = Field(description="Serial port of the board, e.g. /dev/ttyAMA0 or /dev/ttyUSB0.")
    baudrate: int = Field(default=115200, ge=1200, le=4_000_000, description="Serial speed, bits per second.")
    heartbeat_seconds: float = Field(
        default=0.5, ge=0.05, le=10, allow_inf_nan=False, description="Seconds between heartbeats each way."
    )
    missed_heartbeats: int = Field(
        default=3, ge=2, le=20, description="Heartbeat periods of silence before the board is offline."
    )
    ack_timeout_seconds: float = Field(
        default=0.25,
        ge=0.01,
        le=5,
        allow_inf_nan=False,
        description="Seconds to wait for an answer before resending.",
    )
    retries: int = Field(
        default=4, ge=0, le=20, description="Resends of a command (same sequence number) before it fails."
    )


Address = Annotated[int, Field(ge=0, le=0xFFFF)]


class ModbusProfileConfig(Section):
    """A relay board's register map (drivers/modbus/profile.py): output n at output_address + n - 1, input n
    at input_address + n - 1. The defaults fit boards with relays on coils and inputs on discrete inputs."""

    output_table: Literal["coils", "holding-registers"] = Field(
        default="coils", description="Table the relays are in: 'coils' or 'holding-registers'."
    )
    output_address: Address = Field(default=0, description="Protocol address of output 1 (0-based).")
    output_on_value: int = Field(
        default=1, ge=1, le=0xFFFF, description="Value written to energise a holding-register output."
    )
    input_table: Literal["discrete-inputs", "coils", "input-registers", "holding-registers"] = Field(
        default="discrete-inputs",
        description="Table the inputs are read from; a register is active if non-zero.",
    )
    input_address: Address = Field(default=0, description="Protocol address of input 1 (0-based).")
    pulse_address: Address | None = Field(
        default=None,
        description=(
            "Holding register of output 1's timed pulse, if the board has one (writing N energises the "
            "output for N x pulse_unit_seconds, timed by the board): e.g. 512 (0x0200). Omit if none."
        ),
    )
    pulse_unit_seconds: float = Field(
        default=0.1, gt=0, le=60, allow_inf_nan=False, description="Seconds per unit of the pulse command."
    )
    pulse_command: Literal["write-register", "write-coil-value"] = Field(
        default="write-register",
        description=(
            "How the pulse is sent: 'write-register' (FC06, the time as the register value) or "
            "'write-coil-value' (FC05 with the time as the value: Waveshare's 'flash on')."
        ),
    )


class _ModbusController(ControllerBase):
    device_id: int = Field(default=1, ge=1, le=247, description="Modbus device (slave) id of the board.")
    poll_seconds: float = Field(
        default=0.1, ge=0.01, le=10, allow_inf_nan=False, description="Seconds between input polls."
    )
    timeout_seconds: float = Field(
        default=0.5, ge=0.05, le=10, allow_inf_nan=False, description="Seconds to wait for an answer."
    )
    profile: ModbusProfileConfig = Field(
        default_factory=ModbusProfileConfig, description="The board's register map."
    )


class ModbusTcpController(_ModbusController):
    """A Modbus TCP relay board (drivers/modbus/). Needs pymodbus (the `modbus` extra)."""

    type: Literal["modbus-tcp"] = Field(description="Controller kind.")
    host: Text = Field(description="Host name or address of the board (or its RS-485 gateway).")
    port: int = Field(default=502, ge=1, le=65535, description="TCP port.")


class ModbusRtuController(_ModbusController):
    """A Modbus RTU relay board on RS-485 (drivers/modbus/). Boards on one port share one line and one lock.
    Needs pymodbus (the `modbus` extra)."""

    type: Literal["modbus-rtu"] = Field(description="Controller kind.")
    port: Text = Field(description="Serial port, e.g. /dev/ttyUSB0 (or a pyserial URL).")
    baudrate: int = Field(default=9600, ge=300, le=4_000_000, description="Serial speed, bits per second.")
    parity: Literal["N", "E", "O"] = Field(default="N", description="Parity: 'N', 'E' or 'O'.")


ControllerConfig = Annotated[
    SimulatedController | FirmwareBridgeController | ModbusTcpController | ModbusRtuController,
    Field(discriminator="type"),
]
