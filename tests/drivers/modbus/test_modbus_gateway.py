"""Modbus boards through the whole gateway: config -> build_devices -> card -> decision -> coil on pymodbus's
server, device-offline alarms, the fire-alarm input releasing egress doors (even in lockdown), and the config
checks for boards and fire alarms."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymodbus  # noqa: F401 (scripts/setup installs it; a missing one must fail)
import pytest

from drivers.modbus.controller import ModbusDoorController
from drivers.modbus.profile import BoardProfile, PulseCommand
from drivers.sim.modbus_board import SimulatedModbusBoard
from drivers.sim.reader import SimulatedReader
from edge.config import GatewayConfig
from edge.demo_data import ZHANG_CARD, demo_access_list
from edge.devices import build_devices
from edge.errors import ConfigError
from edge.events import AlarmEvent, AlarmKind
from edge.gateway import Gateway
from edge.model import CredentialKind, DoorMode

ROOT = Path(__file__).resolve().parents[3]
FIRE_INPUT = 12


def config_data(tmp_path: Path, port: int) -> dict[str, Any]:
    data = tomllib.loads((ROOT / "config" / "demo.toml").read_text(encoding="utf-8"))
    data["gateway"]["data_dir"] = str(tmp_path)
    data["controllers"] = [
        {
            "type": "modbus-tcp",
            "id": "board-1",
            "host": "127.0.0.1",
            "port": port,
            "outputs": 4,
            "inputs": 12,
            "poll_seconds": 0.02,
            "timeout_seconds": 0.3,
            "profile": {"pulse_address": 0x0200},
        }
    ]
    for door in data["doors"]:
        door["controller"] = "board-1"
    data["fire_alarms"] = [
        {"controller": "board-1", "input": FIRE_INPUT, "doors": ["main-gate", "side-door"]}
    ]
    return data


async def until(check: Callable[[], Awaitable[bool]] | Callable[[], bool], limit: float = 5.0) -> None:
    async with asyncio.timeout(limit):
        while True:
            result = check()
            if result if isinstance(result, bool) else await result:
                return
            await asyncio.sleep(0.01)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[Gateway, SimulatedModbusBoard, list[AlarmEvent]]]:
    board = SimulatedModbusBoard(outputs=4, inputs=12, profile=BoardProfile(pulse=PulseCommand(0x0200)))
    port = await board.serve_tcp()
    cfg = GatewayConfig.model_validate(config_data(tmp_path, port))
    gw = Gateway(cfg, build_devices(cfg))
    alarms: list[AlarmEvent] = []
    gw.bus.subscribe(AlarmEvent, lambda e: alarms.append(e) if isinstance(e, AlarmEvent) else None)
    await gw.start()
    await gw.replace_access_list(demo_access_list(1, datetime.now(UTC), "side-door", list(gw.site.doors)))
    try:
        yield gw, board, alarms
    finally:
        await gw.stop()
        await board.stop()


async def test_card_read_drives_the_coil_through_the_board_pulse(
    site: tuple[Gateway, SimulatedModbusBoard, list[AlarmEvent]],
) -> None:
    gw, board, _ = site
    await until(lambda: gw.devices.controllers["board-1"].online)
    await until(lambda: board.output(2))  # side door: fail-safe maglock, energised = locked
    reader = gw.devices.readers["main-gate-in"]
    assert isinstance(reader, SimulatedReader)
    reader.present(CredentialKind.CARD, ZHANG_CARD)
    await until(lambda: board.output(1))
    assert reader.feedback_log[-1].granted


async def test_fire_alarm_releases_egress_doors_even_in_lockdown(
    site: tuple[Gateway, SimulatedModbusBoard, list[AlarmEvent]],
) -> None:
    gw, board, alarms = site
    await until(lambda: board.output(2))
    gw.set_mode(DoorMode.LOCKDOWN, by="guard")
    await board.set_input(FIRE_INPUT, True)
    await until(lambda: board.output(1))  # fail-secure strike: energised = released
    await until(lambda: _not(board.output(2)))  # fail-safe maglock: de-energised = released
    assert [(a.kind, a.active) for a in alarms if a.kind is AlarmKind.FIRE_ALARM] == [
        (AlarmKind.FIRE_ALARM, True)
    ]
    assert not await board.output(3)  # lobby-a is not an egress door here

    gw.set_mode(DoorMode.NORMAL, by="guard")  # a relock command while the fire lasts changes nothing
    await asyncio.sleep(0.1)
    assert await board.output(1) and not await board.output(2)

    await board.set_input(FIRE_INPUT, False)
    await until(lambda: _not(board.output(1)))
    await until(lambda: board.output(2))
    assert [a.active for a in alarms if a.kind is AlarmKind.FIRE_ALARM] == [True, False]


async def _not(value: Awaitable[bool]) -> bool:
    return not await value


async def test_dead_board_raises_device_offline_and_recovers(
    site: tuple[Gateway, SimulatedModbusBoard, list[AlarmEvent]],
) -> None:
    gw, board, alarms = site
    await until(lambda: gw.devices.controllers["board-1"].online)
    port = board.port
    await board.stop()
    offline = [(a.device_id, a.active) for a in alarms if a.kind is AlarmKind.DEVICE_OFFLINE]
    await until(lambda: ("board-1", True) in [(a.device_id, a.active) for a in alarms])
    await board.serve_tcp(port=port)  # a board back from a power cut: every coil off
    await until(lambda: [a.active for a in alarms if a.kind is AlarmKind.DEVICE_OFFLINE] == [True, False])
    assert offline == []
    await until(lambda: board.output(2))  # the side door's maglock is locked again (energised), unasked


def test_boards_on_one_serial_port_share_one_bus(tmp_path: Path) -> None:
    data = config_data(tmp_path, 502)
    rtu = {"type": "modbus-rtu", "port": "/dev/ttyUSB0", "outputs": 4, "inputs": 4}
    data["controllers"] += [{**rtu, "id": "rtu-a", "device_id": 2}, {**rtu, "id": "rtu-b", "device_id": 3}]
    devices = build_devices(GatewayConfig.model_validate(data))
    a, b = devices.controllers["rtu-a"], devices.controllers["rtu-b"]
    assert isinstance(a, ModbusDoorController) and isinstance(b, ModbusDoorController)
    assert a.bus is b.bus and a.bus is not devices.controllers["board-1"].bus  # type: ignore[attr-defined]
    assert devices.fire_inputs == {("board-1", FIRE_INPUT): ("main-gate", "side-door")}

    data["controllers"][-1]["baudrate"] = 19200
    with pytest.raises(ConfigError, match="line settings differ"):
        build_devices(GatewayConfig.model_validate(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"doors": ["nowhere"]}, r"fire_alarms\[0\]\.doors\[0\]: unknown door"),
        ({"input": 1}, "already used by doors"),
        ({"input": 13}, "has inputs 1..12"),
        ({"controller": "nope"}, r"fire_alarms\[0\]\.controller: unknown controller"),
    ],
)
def test_fire_alarm_config_is_cross_checked(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    data = config_data(tmp_path, 502)
    data["fire_alarms"][0].update(change)
    with pytest.raises(ValueError, match=message):
        GatewayConfig.model_validate(data)
