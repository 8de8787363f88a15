"""ModbusDoorController against pymodbus's own server: inputs, outputs, the board's timed pulse, a holding-
register board, offline and recovery, Modbus exceptions and garbled replies survived, RTU over a pty pair."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pymodbus  # noqa: F401 (scripts/setup installs it; a missing one must fail)
import pytest
from pymodbus.constants import ExcCodes

from drivers.door_controller import InputChange
from drivers.errors import DriverError, DriverErrorReason
from drivers.modbus.bus import ModbusBus, SerialLine, TcpLine
from drivers.modbus.controller import Backoff, ModbusDoorController
from drivers.modbus.profile import WAVESHARE_RELAY, BoardProfile, PulseCommand, Table
from drivers.sim.modbus_board import SimulatedModbusBoard

FAST = Backoff(initial=0.02, maximum=0.1)


@dataclass
class Seen:
    inputs: list[InputChange] = field(default_factory=list)
    online: list[bool] = field(default_factory=list)


async def until(check: Callable[[], bool] | Callable[[], Awaitable[bool]], limit: float = 5.0) -> None:
    async with asyncio.timeout(limit):
        while True:
            result = check()
            if result if isinstance(result, bool) else await result:
                return
            await asyncio.sleep(0.01)


def controller(bus: ModbusBus, profile: BoardProfile | None = None) -> tuple[ModbusDoorController, Seen]:
    c = ModbusDoorController(
        "board-1", bus, outputs=4, inputs=8, profile=profile, poll_seconds=0.02, backoff=FAST
    )
    seen = Seen()
    c.bind(seen.inputs.append, lambda cid, online, detail: seen.online.append(online))
    return c, seen


@pytest.fixture
async def board() -> AsyncIterator[tuple[SimulatedModbusBoard, int]]:
    b = SimulatedModbusBoard(outputs=4, inputs=8, profile=BoardProfile(pulse=PulseCommand(0x0200)))
    port = await b.serve_tcp()
    yield b, port
    await b.stop()


async def test_inputs_outputs_and_board_timed_pulse(board: tuple[SimulatedModbusBoard, int]) -> None:
    b, port = board
    c, seen = controller(ModbusBus(TcpLine("127.0.0.1", port), timeout=0.5), b.profile)
    await c.start()
    try:
        await until(lambda: seen.online == [True])
        await b.set_input(3, True)
        await until(lambda: InputChange("board-1", 3, True) in seen.inputs)
        await b.set_input(3, False)
        await until(lambda: InputChange("board-1", 3, False) in seen.inputs)

        await c.set_output(2, True)
        assert await b.output(2)
        await c.set_output(2, False)
        assert not await b.output(2)

        # A grant with a pulse goes to the board's own timer: the relay drops without a second write from us.
        await c.set_output(1, True, pulse_seconds=0.2)
        assert await b.output(1)
        await until(lambda: _not(b.output(1)))
        with pytest.raises(DriverError) as err:
            await c.set_output(9, True)
        assert err.value.reason is DriverErrorReason.BAD_ARGUMENT
        await c.set_output(4, True)
    finally:
        await c.stop()
    assert not await b.output(4)  # de-energised on stop: each lock falls to its own fail-safe/secure state


async def _not(value: Awaitable[bool]) -> bool:
    return not await value


async def test_holding_register_board_is_a_profile() -> None:
    profile = BoardProfile(
        output_table=Table.HOLDING_REGISTERS,
        output_address=100,
        output_on_value=0x0100,
        input_table=Table.INPUT_REGISTERS,
        input_address=10,
    )
    b = SimulatedModbusBoard(outputs=4, inputs=8, profile=profile)
    port = await b.serve_tcp()
    c, seen = controller(ModbusBus(TcpLine("127.0.0.1", port)), profile)
    await c.start()
    try:
        await b.set_input(8, True)
        await until(lambda: InputChange("board-1", 8, True) in seen.inputs)
        await c.set_output(3, True, pulse_seconds=1.0)  # no pulse command in this profile: a plain write
        assert await b.output(3)
        assert b.writes[-1].output == 3 and b.writes[-1].energised
    finally:
        await c.stop()
        await b.stop()


async def test_offline_alarm_backoff_and_recovery(board: tuple[SimulatedModbusBoard, int]) -> None:
    b, port = board
    c, seen = controller(ModbusBus(TcpLine("127.0.0.1", port), timeout=0.3), b.profile)
    await c.start()
    try:
        await until(lambda: seen.online == [True])
        await b.stop()
        await until(lambda: seen.online == [True, False])
        await until(lambda: c.counters["faults"] >= 3)  # retrying, and reported only once
        assert seen.online == [True, False]
        with pytest.raises(DriverError):
            await c.set_output(1, True)
        await b.serve_tcp(port=port)
        await until(lambda: seen.online == [True, False, True])
        assert c.counters["recoveries"] == 1
        await c.set_output(1, True)
        assert await b.output(1)
    finally:
        await c.stop()


async def test_absent_board_at_start_is_reported_offline() -> None:
    c, seen = controller(ModbusBus(TcpLine("127.0.0.1", 9), timeout=0.2))
    await c.start()  # must not raise
    try:
        await until(lambda: seen.online == [False])
    finally:
        await c.stop()


async def test_modbus_exceptions_are_counted_and_survived(board: tuple[SimulatedModbusBoard, int]) -> None:
    b, port = board
    c, seen = controller(ModbusBus(TcpLine("127.0.0.1", port)), b.profile)
    await c.start()
    try:
        await until(lambda: seen.online == [True])
        b.fail_with = ExcCodes.DEVICE_BUSY
        await until(lambda: c.counters["exceptions"] >= 3)
        with pytest.raises(DriverError) as err:
            await c.set_output(1, True)
        assert err.value.reason is DriverErrorReason.PROTOCOL
        assert seen.online == [True]  # it answers, so it is not offline
        b.fail_with = None
        await b.set_input(1, True)
        await until(lambda: InputChange("board-1", 1, True) in seen.inputs)
    finally:
        await c.stop()


async def test_garbled_replies_are_survived(board: tuple[SimulatedModbusBoard, int]) -> None:
    b, port = board
    c, seen = controller(ModbusBus(TcpLine("127.0.0.1", port), timeout=0.2), b.profile)
    await c.start()
    try:
        await until(lambda: seen.online == [True])
        b.garble = 3
        await until(lambda: b.garble == 0)
        await b.set_input(2, True)
        await until(lambda: InputChange("board-1", 2, True) in seen.inputs)
        await c.set_output(1, True)
        assert await b.output(1)
        assert seen.online[-1] is True
    finally:
        await c.stop()


async def test_rtu_over_a_pty_pair_with_two_controllers_sharing_the_line(pty_pair: tuple[str, str]) -> None:
    gw_port, board_port = pty_pair
    b = SimulatedModbusBoard(outputs=4, inputs=8, device_id=7)
    await b.serve_serial(board_port, baudrate=115200)
    bus = ModbusBus(SerialLine(gw_port, baudrate=115200), timeout=0.5)
    c, seen = controller(bus)
    c.device_id = 7
    # A second controller on the same line (here the same board's relays, no inputs): both poll through one
    # lock, so their frames never collide on the half-duplex line.
    other = ModbusDoorController(
        "other", bus, device_id=7, outputs=4, inputs=0, poll_seconds=0.01, backoff=FAST
    )
    other_online: list[bool] = []
    other.bind(lambda change: None, lambda cid, online, detail: other_online.append(online))
    await c.start()
    await other.start()
    try:
        await until(lambda: seen.online == [True])
        await b.set_input(5, True)
        await until(lambda: InputChange("board-1", 5, True) in seen.inputs)
        await c.set_output(2, True)
        assert await b.output(2)
        await other.set_output(3, True)
        assert await b.output(3)
        await until(lambda: c.counters["polls"] > 20)
        assert seen.online == [True] and other_online == [True]
        assert c.counters["faults"] == other.counters["faults"] == 0
    finally:
        await other.stop()
        await c.stop()
        await b.stop()


async def test_garbled_rtu_frames_and_exceptions_are_survived(pty_pair: tuple[str, str]) -> None:
    gw_port, board_port = pty_pair
    b = SimulatedModbusBoard(outputs=4, inputs=8, device_id=7)
    await b.serve_serial(board_port, baudrate=115200)
    c, seen = controller(ModbusBus(SerialLine(gw_port, baudrate=115200), timeout=0.2))
    c.device_id = 7
    await c.start()
    try:
        await until(lambda: seen.online == [True])
        b.garble = 3  # bad CRCs on the line
        await until(lambda: b.garble == 0)
        b.fail_with = ExcCodes.ILLEGAL_ADDRESS
        await until(lambda: c.counters["exceptions"] >= 2)
        b.fail_with = None
        await b.set_input(4, True)
        await until(lambda: InputChange("board-1", 4, True) in seen.inputs)
        await c.set_output(1, True)
        assert await b.output(1)
        assert seen.online[-1] is True
    finally:
        await c.stop()
        await b.stop()


@pytest.mark.parametrize("line", ["tcp", "rtu"])
async def test_waveshare_flash_on_is_fc05_with_the_time_as_value(
    line: str, pty_pair: tuple[str, str]
) -> None:
    # Waveshare's "flash on": FC05 to 0x0200 + channel with the time in 100 ms units as the value.
    b = SimulatedModbusBoard(outputs=4, inputs=8, profile=WAVESHARE_RELAY)
    if line == "tcp":
        bus = ModbusBus(TcpLine("127.0.0.1", await b.serve_tcp()))
    else:
        await b.serve_serial(pty_pair[1], baudrate=115200)
        bus = ModbusBus(SerialLine(pty_pair[0], baudrate=115200))
    c, seen = controller(bus, WAVESHARE_RELAY)
    await c.start()
    try:
        await until(lambda: seen.online == [True])
        await c.set_output(3, True, pulse_seconds=0.3)
        assert await b.output(3)
        await until(lambda: _not(b.output(3)))  # the board ended it
        assert [(w.output, w.energised) for w in b.writes] == [(3, True), (3, False)]
        assert b.pulses == [(3, 3)]  # 0.3 s = 3 x 100 ms, carried in the FC05 value
    finally:
        await c.stop()
        await b.stop()
