"""The [face] section and face-camera readers: cross-checks, and what build_devices and the Gateway make of them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge.config import load_config
from edge.errors import ConfigError

BASE = """
[site]
id = "s"
name = "S"
timezone = "UTC"
[gateway]
id = "gw"
data_dir = "{data}"
[[controllers]]
type = "simulated"
id = "c"
outputs = 2
inputs = 2
[[doors]]
id = "lobby"
name = "Lobby"
controller = "c"
output = 1
[[readers]]
type = "face-camera"
id = "lobby-face"
door = "lobby"
source = "/nowhere"
"""
FACE = '\n[face]\npack_dir = "/models/opencv_yunet_sface"\n'
CARD = '\n[[readers]]\ntype = "simulated"\nid = "lobby-card"\ndoor = "lobby"\n'


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "gw.toml"
    path.write_text(BASE.format(data=tmp_path / "data") + text)
    return load_config(path)


def test_a_face_camera_needs_the_face_section_and_a_non_face_reader_at_its_door(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, CARD)
    assert "readers[0].type: a face-camera reader needs a [face] section" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load(tmp_path, FACE)
    assert "door 'lobby' needs a non-face reader too" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load(tmp_path, CARD + FACE + 'second_factor_doors = ["elsewhere"]\n')
    assert "face.second_factor_doors[0]: door 'elsewhere' has no face-camera reader" in str(err.value)


def test_build_devices_makes_a_supervised_face_reader_and_the_gateway_combines_factors(
    tmp_path: Path,
) -> None:
    import insightface  # noqa: F401 (scripts/setup installs it; a missing one must fail)

    from drivers.face.reader import FaceCameraReader
    from edge.config import GatewayConfig
    from edge.devices import build_devices
    from edge.gateway import Gateway

    extra = 'second_factor_doors = ["lobby"]\nmin_motion = 0.08\nantispoof_dir = "/models/minifasnet"\n'
    config = load(tmp_path, CARD + FACE + extra)
    assert isinstance(config, GatewayConfig)
    devices = build_devices(config)
    reader = devices.readers["lobby-face"]
    assert isinstance(reader, FaceCameraReader)
    assert reader.settings.min_motion == 0.08
    assert reader.settings.antispoof_dir == Path("/models/minifasnet")
    assert reader.settings.pack_dir == Path("/models/opencv_yunet_sface")
    gateway = Gateway(config, devices)
    assert gateway.factors is not None
    assert set(gateway.factors.rules) == {"lobby"}


async def test_unknown_faces_become_alarm_events_without_the_picture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import insightface  # noqa: F401 (scripts/setup installs it; a missing one must fail)

    from drivers.face.loop import Outcome, OutcomeKind
    from edge.config import GatewayConfig
    from edge.devices import build_devices
    from edge.events import AlarmEvent, AlarmKind
    from edge.gateway import Gateway

    monkeypatch.setenv("MENWEI_SECRET_FACE_KEY", "ab" * 32)
    config = load(tmp_path, CARD + FACE)
    assert isinstance(config, GatewayConfig)
    devices = build_devices(config)
    reader = devices.readers["lobby-face"]
    reader.start = _no_start  # type: ignore[method-assign]
    gateway = Gateway(config, devices)
    alarms: list[AlarmEvent] = []
    gateway.bus.subscribe(AlarmEvent, lambda e: alarms.append(e))  # type: ignore[arg-type]
    await gateway.start()
    try:
        outcome = Outcome(OutcomeKind.UNKNOWN, 1, 0.0, reason="best similarity 0.12", snapshot=b"jpeg")
        reader.on_face_event("lobby-face", outcome, "000-unknown-lobby-face.jpg")  # type: ignore[attr-defined]
    finally:
        await gateway.stop()
    [alarm] = [a for a in alarms if a.kind is AlarmKind.FACE_UNKNOWN]
    assert (alarm.door_id, alarm.device_id) == ("lobby", "lobby-face")
    assert "000-unknown-lobby-face.jpg kept on the gateway" in alarm.detail
    assert "jpeg" not in str(alarm.to_record())


async def test_templates_follow_the_access_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from edge.config import GatewayConfig
    from edge.devices import build_devices
    from edge.face.templates import TemplateStore
    from edge.gateway import DB_NAME, Gateway
    from edge.model import AccessList, Person
    from edge.store.access_store import save_access_list
    from edge.store.db import open_db

    monkeypatch.setenv("MENWEI_SECRET_FACE_KEY", "ab" * 32)
    config = load(tmp_path, CARD + FACE)
    assert isinstance(config, GatewayConfig)
    store = TemplateStore.open(tmp_path / "data", bytes.fromhex("ab" * 32))
    for person in ("ann", "bob", "carl"):
        store.add(f"tpl-{person}", person, "p", np.ones(8, np.float32))
    store.close()
    devices = build_devices(config)
    reloaded: list[bool] = []
    devices.readers["lobby-face"].reload = lambda: reloaded.append(True)  # type: ignore[attr-defined]
    devices.readers["lobby-face"].start = _no_start  # type: ignore[method-assign]
    gateway = Gateway(config, devices)
    db = open_db(tmp_path / "data" / DB_NAME)
    save_access_list(
        db,
        AccessList.build(version=1, people=[Person("ann", "Ann", face_consent=True), Person("bob", "Bob")]),
    )
    db.close()
    await gateway.start()
    store = TemplateStore.open(tmp_path / "data", bytes.fromhex("ab" * 32))
    assert [t.person_id for t in store.load("p")] == ["ann"]  # bob never consented, carl is gone
    store.close()
    try:
        await gateway.replace_access_list(AccessList.build(version=2, people=[Person("ann", "Ann")]))
        for _ in range(100):
            if len(reloaded) >= 2:
                break
            await asyncio.sleep(0.02)
    finally:
        await gateway.stop()
    store = TemplateStore.open(tmp_path / "data", bytes.fromhex("ab" * 32))
    assert store.count() == 0
    assert reloaded


async def _no_start() -> None:
    return None
