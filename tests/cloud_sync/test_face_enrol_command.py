"""The enrol_face command (#5): the cloud pushes a consenting resident's photo; the gateway enrols it with the real
models and answers with the outcome only (never a template or a photo)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cloud_sync.downlink import Downlink
from cloud_sync.link import Incoming
from cloud_sync.messages import CommandReply
from cloud_sync.topics import Topics

from edge.config import MqttSection, load_config
from edge.devices import build_devices
from edge.gateway import DB_NAME, Gateway
from edge.model import AccessList, Person
from edge.store.access_store import save_access_list
from edge.store.db import open_db

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
TOPICS = Topics("s", "gw")
CONFIG = """
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
type = "simulated"
id = "lobby-card"
door = "lobby"
[[readers]]
type = "face-camera"
id = "lobby-face"
door = "lobby"
source = "/nowhere"
[face]
pack_dir = "{pack}"
"""


class Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, **_: Any) -> int:
        self.sent.append((topic, payload))
        return len(self.sent)


def test_the_kit_builds_the_command() -> None:
    from cloud_sync.kit import enrol_face

    cmd = enrol_face("p1", "tpl-1", photo=b"\xff\xd8jpeg", operator="office")
    assert (cmd.command, cmd.person, cmd.face_id, cmd.photo_b64) == ("enrol_face", "p1", "tpl-1", "/9hqcGVn")
    with pytest.raises(ValueError, match="either photo_b64 or embedding"):
        enrol_face("p1", "tpl-1", operator="office")
    with pytest.raises(ValueError, match="needs the pack"):
        enrol_face("p1", "tpl-1", embedding=[0.1, 0.2], operator="office")


def command(cid: str, **fields: Any) -> bytes:
    now = datetime.now(UTC)
    body = {"command": "enrol_face", "id": cid, "operator": "office", "issued_at": now.isoformat()}
    body["expires_at"] = (now + timedelta(minutes=5)).isoformat()
    return json.dumps({"cmd": body | fields}).encode()


async def no_start() -> None:
    return None


async def test_enrol_face_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import insightface  # noqa: F401 (scripts/setup installs it; a missing one must fail)

    if not (SHARED / "models").is_dir():
        pytest.fail("shared models not found")
    monkeypatch.setenv("MENWEI_SECRET_FACE_KEY", "ef" * 32)
    data = tmp_path / "data"
    path = tmp_path / "gw.toml"
    path.write_text(CONFIG.format(data=data, pack=SHARED / "models" / "opencv_yunet_sface"))
    config = load_config(path)
    data.mkdir()
    db = open_db(data / DB_NAME)
    people = [Person("obama", "Obama", face_consent=True), Person("shy", "Shy")]
    save_access_list(db, AccessList.build(version=1, people=people))
    db.close()
    devices = build_devices(config)
    devices.readers["lobby-face"].start = no_start  # type: ignore[method-assign]
    gateway = Gateway(config, devices)
    await gateway.start()
    publisher = Publisher()
    downlink = Downlink(gateway, TOPICS, MqttSection(), publisher)
    photo = base64.b64encode((SHARED / "data" / "faces" / "obama" / "obama.jpg").read_bytes()).decode()
    try:
        for cid, fields in (
            ("c1", {"person": "obama", "face_id": "tpl-obama", "photo_b64": photo}),
            ("c2", {"person": "shy", "face_id": "tpl-shy", "photo_b64": photo}),
            ("c3", {"person": "obama", "face_id": "tpl-obama", "photo_b64": "!!not base64!!"}),
        ):
            downlink.handle(Incoming(TOPICS.command, command(cid, **fields), 1, False, None, None, ()))
        for _ in range(600):
            replies = [
                CommandReply.model_validate_json(p) for t, p in publisher.sent if t == TOPICS.command_reply
            ]
            if len(replies) == 3:
                break
            await asyncio.sleep(0.05)
    finally:
        await gateway.stop()
    by_id = {r.id: r for r in replies}
    assert by_id["c1"].ok
    assert by_id["c1"].result == {"person": "obama", "face_id": "tpl-obama"}
    assert not by_id["c2"].ok
    assert "not consented" in by_id["c2"].detail
    assert (by_id["c3"].ok, by_id["c3"].error) == (False, "invalid")
    assert all(photo[:100] not in p.decode() for _, p in publisher.sent)
