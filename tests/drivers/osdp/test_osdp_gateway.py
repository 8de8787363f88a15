"""An OSDP reader through the whole gateway: config (key from a credential) -> build_devices -> card on libosdp's
PeripheralDevice -> decision -> relay, and the reader's LED shows the grant."""

from __future__ import annotations

import asyncio
import os
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.osdp.channel import FdChannel
from drivers.osdp.install import new_key
from drivers.osdp.reader import OsdpReader
from drivers.sim.door_controller import SimulatedDoorController
from drivers.sim.osdp_reader import SimulatedOsdpReader
from edge.config import GatewayConfig
from edge.demo_data import ZHANG_CARD, demo_access_list
from edge.devices import build_devices
from edge.errors import ConfigError
from edge.gateway import Gateway
from edge.secrets import env_var_name

ROOT = Path(__file__).resolve().parents[3]


async def until(check: Callable[[], bool], limit: float = 8.0) -> None:
    async with asyncio.timeout(limit):
        while True:
            if check():
                return
            await asyncio.sleep(0.02)


def config(tmp_path: Path, port: str) -> GatewayConfig:
    data = tomllib.loads((ROOT / "config" / "demo.toml").read_text(encoding="utf-8"))
    data["gateway"]["data_dir"] = str(tmp_path)
    data["readers"] = [r for r in data["readers"] if r["id"] != "main-gate-in"]
    reader = {"type": "osdp", "id": "main-gate-in", "door": "main-gate", "area": "compound", "port": port}
    data["readers"].append({**reader, "address": 3, "key_credential": "osdp-gate", "facility_code": 42})
    return GatewayConfig.model_validate(data)


async def test_card_on_an_osdp_reader_opens_the_door(
    tmp_path: Path, pty_fds: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    master, slave = pty_fds
    key = new_key()
    monkeypatch.setenv(env_var_name("osdp-gate"), key.hex())
    cfg = config(tmp_path, os.ttyname(slave))  # the gateway opens the port by path, through pyserial
    pd = SimulatedOsdpReader(lambda: FdChannel(master), address=3, key=key)
    pd.start()
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    try:
        await gw.replace_access_list(demo_access_list(1, datetime.now(UTC), "side-door", list(gw.site.doors)))
        reader = gw.devices.readers["main-gate-in"]
        relay = gw.devices.controllers["sim-1"]
        assert isinstance(reader, OsdpReader) and isinstance(relay, SimulatedDoorController)
        await until(lambda: reader.online)
        pd.present_card(int(ZHANG_CARD), 42)
        await until(lambda: relay.outputs[1])
        await until(lambda: reader.counters["feedback"] == 2)
    finally:
        await gw.stop()
        await asyncio.to_thread(pd.stop)


def test_missing_key_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(env_var_name("osdp-gate"), raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match="osdp-gate"):
        build_devices(config(tmp_path, "/dev/ttyUSB2"))
