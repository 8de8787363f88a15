"""A firmware-bridge board through the whole gateway: config -> build_devices -> a card on the board's own
Wiegand reader -> decision -> the board times the unlock; the door contact on the board raises a forced-door
alarm; a pulled cable raises device_offline and clears when it is back."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from firmware_bridge import protocol as p
from firmware_bridge.device.sim import SimBoard
from firmware_bridge.testbench import FAST_DEVICE, Bench, eventually

from drivers.wiegand.decoder import WiegandFormat, encode
from edge.config import GatewayConfig
from edge.demo_data import ZHANG_CARD, demo_access_list
from edge.devices import build_devices
from edge.events import AlarmEvent, AlarmKind
from edge.gateway import Gateway

ROOT = Path(__file__).resolve().parents[2]


def config_data(tmp_path: Path, port: str) -> dict[str, Any]:
    data = tomllib.loads((ROOT / "config" / "demo.toml").read_text(encoding="utf-8"))
    data["gateway"]["data_dir"] = str(tmp_path)
    data["controllers"] = [
        {
            "type": "firmware-bridge",
            "id": "mcu-1",
            "port": port,
            "outputs": 4,
            "inputs": 12,
            "heartbeat_seconds": 0.05,
            "missed_heartbeats": 4,
            "ack_timeout_seconds": 0.06,
            "retries": 6,
        }
    ]
    for door in data["doors"]:
        door["controller"] = "mcu-1"
    data["readers"].append(
        {
            "type": "firmware-bridge",
            "id": "gate-card",
            "door": "main-gate",
            "controller": "mcu-1",
            "card_format": "h10302",
        }
    )
    return data


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Bench, list[AlarmEvent]]]:
    with Bench(board=SimBoard(outputs=4, inputs=12), config=FAST_DEVICE) as bench:
        cfg = GatewayConfig.model_validate(config_data(tmp_path, bench.port))
        gw = Gateway(cfg, build_devices(cfg))
        alarms: list[AlarmEvent] = []
        gw.bus.subscribe(AlarmEvent, lambda e: alarms.append(e) if isinstance(e, AlarmEvent) else None)
        await gw.start()
        await gw.replace_access_list(demo_access_list(1, datetime.now(UTC), "side-door", list(gw.site.doors)))
        try:
            await eventually(lambda: gw.devices.controllers["mcu-1"].online)
            yield gw, bench, alarms
        finally:
            await gw.stop()


def _wire(bits: list[int]) -> bytes:
    return int("".join(map(str, bits)), 2).to_bytes((len(bits) + 7) // 8, "big")


async def test_card_on_the_boards_reader_unlocks_through_the_board(
    site: tuple[Gateway, Bench, list[AlarmEvent]],
) -> None:
    _, bench, _ = site
    await eventually(lambda: bench.board.level(2))  # side door: fail-safe maglock, energised = locked
    assert not bench.board.level(1)
    card = encode(WiegandFormat.H10302, int(ZHANG_CARD))
    bench.board.present(1, p.ReaderFormat.WIEGAND, len(card), _wire(card))
    await eventually(lambda: bench.board.level(1))  # fail-secure strike energised: unlocked
    assert bench.board.energisations(1) == 1
    assert bench.board.leds and bench.board.leds[-1][1] == p.Colour.GREEN


async def test_door_contact_on_the_board_raises_door_forced(
    site: tuple[Gateway, Bench, list[AlarmEvent]],
) -> None:
    _, bench, alarms = site
    bench.board.set_input(1, True)  # main gate's contact opens without a grant
    await eventually(lambda: any(a.kind is AlarmKind.DOOR_FORCED and a.active for a in alarms))


async def test_pulled_cable_raises_device_offline_and_clears(
    site: tuple[Gateway, Bench, list[AlarmEvent]],
) -> None:
    _, bench, alarms = site

    def offline() -> list[bool]:
        return [a.active for a in alarms if a.kind is AlarmKind.DEVICE_OFFLINE and a.device_id == "mcu-1"]

    bench.relay.unplug()
    await eventually(lambda: offline() == [True])
    bench.relay.replug()
    await eventually(lambda: offline() == [True, False])


async def test_a_board_reset_does_not_leave_the_maglock_released(
    site: tuple[Gateway, Bench, list[AlarmEvent]],
) -> None:
    _, bench, _ = site
    await eventually(lambda: bench.board.level(2))  # side door maglock held
    bench.device.reset()  # the reset drops every relay...
    await eventually(lambda: bench.device.boots == 2)
    await eventually(lambda: bench.board.level(2))  # ...and the controller puts the maglock back


def test_a_bridge_reader_must_name_a_firmware_bridge_controller(tmp_path: Path) -> None:
    data = config_data(tmp_path, "/dev/ttyAMA0")
    data["controllers"].append({"type": "simulated", "id": "sim-9", "outputs": 1, "inputs": 0})
    data["readers"][-1]["controller"] = "sim-9"
    with pytest.raises(ValueError, match=r"'sim-9' is not a firmware-bridge controller"):
        GatewayConfig.model_validate(data)
