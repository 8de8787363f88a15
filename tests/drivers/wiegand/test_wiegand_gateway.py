"""A Wiegand converter reader through the whole gateway: config -> build_devices -> card frame on the serial
line -> decision -> relay; a frame with bad parity opens nothing; an absent converter raises an alarm."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from drivers.sim.door_controller import SimulatedDoorController
from drivers.wiegand.converter import WiegandConverterReader
from drivers.wiegand.decoder import WiegandFormat, encode
from edge.config import GatewayConfig
from edge.demo_data import ZHANG_CARD, demo_access_list
from edge.devices import build_devices
from edge.events import AlarmEvent, AlarmKind, DecisionEvent, Event
from edge.gateway import Gateway

ROOT = Path(__file__).resolve().parents[3]


async def until(check: Callable[[], bool], limit: float = 5.0) -> None:
    async with asyncio.timeout(limit):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)


def config(tmp_path: Path, port: str) -> GatewayConfig:
    data = tomllib.loads((ROOT / "config" / "demo.toml").read_text(encoding="utf-8"))
    data["gateway"]["data_dir"] = str(tmp_path)
    data["readers"] = [r for r in data["readers"] if r["id"] != "main-gate-in"]
    data["readers"].append(
        {
            "type": "wiegand-serial",
            "id": "main-gate-in",
            "door": "main-gate",
            "direction": "in",
            "area": "compound",
            "port": port,
            "card_format": "h10301",
            "facility_code": 42,
        }
    )
    return GatewayConfig.model_validate(data)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Gateway, list[Event]]]:
    cfg = config(tmp_path, "loop://")
    gw = Gateway(cfg, build_devices(cfg))
    seen: list[Event] = []
    gw.bus.subscribe(Event, seen.append)
    await gw.start()
    await gw.replace_access_list(demo_access_list(1, datetime.now(UTC), "side-door", list(gw.site.doors)))
    try:
        yield gw, seen
    finally:
        await gw.stop()


async def test_card_frame_opens_the_door(gateway: tuple[Gateway, list[Event]]) -> None:
    gw, seen = gateway
    reader = gw.devices.readers["main-gate-in"]
    assert isinstance(reader, WiegandConverterReader)
    relay = gw.devices.controllers["sim-1"]
    assert isinstance(relay, SimulatedDoorController)
    await until(lambda: reader.serial is not None)
    port: Any = reader.serial
    frame = "".join(map(str, encode(WiegandFormat.H10301, int(ZHANG_CARD), 42)))
    port.write(f"{frame[:-1]}{1 - int(frame[-1])}\r\n".encode())  # parity error: nothing happens
    port.write(f"{frame}\r\n".encode())
    await until(lambda: any(isinstance(e, DecisionEvent) for e in seen))
    decisions = [e for e in seen if isinstance(e, DecisionEvent)]
    assert len(decisions) == 1 and decisions[0].decision.granted
    await until(lambda: relay.outputs[1])
    assert reader.counters["parity"] == 1
    assert reader.feedback_log[-1].granted


async def test_absent_converter_raises_an_alarm(tmp_path: Path) -> None:
    cfg = config(tmp_path, str(tmp_path / "no-such-tty"))
    gw = Gateway(cfg, build_devices(cfg))
    alarms: list[AlarmEvent] = []
    gw.bus.subscribe(AlarmEvent, lambda e: alarms.append(e) if isinstance(e, AlarmEvent) else None)
    await gw.start()
    try:
        await until(lambda: any(a.device_id == "main-gate-in" for a in alarms))
    finally:
        await gw.stop()
    [alarm] = [a for a in alarms if a.device_id == "main-gate-in"]
    assert alarm.kind is AlarmKind.DEVICE_OFFLINE and alarm.active


def test_a_bad_line_format_is_a_config_error(tmp_path: Path) -> None:
    data = config(tmp_path, "loop://").model_dump(mode="json")
    data["readers"][-1]["line_format"] = r"(?P<card>\d+"
    with pytest.raises(ValueError, match="line_format"):
        GatewayConfig.model_validate(data)
