"""After the boot check restored the database, the gateway asks the cloud for a fresh snapshot (reason
"restored") through the real CloudSync and a real mosquitto, on every connect until one has applied; the store
alarm goes up as an event; the cloud's snapshot applies even at the version the backup already held."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cloud_sync.broker import LocalBroker
from cloud_sync.messages import AccessListDocument, EventBatch, SnapshotRequest
from cloud_sync.snapshot_codec import encode_snapshot
from cloud_sync.sync import CloudSync
from cloud_sync.topics import Topics

from drivers.reader import CredentialRead
from edge.config import MqttSection
from edge.demo_data import ZHANG_CARD, demo_access_list
from edge.devices import build_devices
from edge.gateway import Gateway
from edge.model import CredentialKind
from tests.demo_site import demo_config

if TYPE_CHECKING:
    from tests.cloud_sync.conftest import ProbeFactory

ROOT = Path(__file__).resolve().parents[2]
TOPICS = Topics("lotus-garden", "gw-demo")


async def eventually(predicate: Callable[[], bool], within: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_restored_gateway_asks_for_a_snapshot_and_reports_the_alarm(
    tmp_path: Path, broker: LocalBroker, make_probe: ProbeFactory
) -> None:
    data_dir = tmp_path / "gw"
    cfg = demo_config(data_dir)
    acl = demo_access_list(5, datetime.now(UTC), "side-door", [d.id for d in cfg.doors])
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    await gw.replace_access_list(acl)
    gw.present(CredentialRead("main-gate-in", CredentialKind.CARD, ZHANG_CARD))
    assert gw.upkeep is not None
    await gw.stop()
    gw.upkeep.backup_once()
    db = data_dir / "menwei.db"
    with db.open("r+b") as f:  # garbage over pages 2..7
        f.seek(2 * 4096)
        f.write(bytes((i * 71 + 3) % 256 for i in range(6 * 4096)))

    cloud = make_probe("cloud")
    cloud.connect(broker.host, broker.port)
    assert cloud.wait_connected()
    cloud.subscribe(f"{TOPICS.base}/#")

    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    mqtt_cfg = MqttSection(host=broker.host, port=broker.port)
    sync = CloudSync(gw, mqtt_cfg, software_version="test", reconnect_delay=(1.0, 2.0))
    await sync.start()
    try:
        assert gw.recovery is not None and gw.recovery.restored_from is not None

        def requests() -> list[SnapshotRequest]:
            return [
                SnapshotRequest.model_validate_json(m.payload)
                for m in list(cloud.messages)
                if m.topic == TOPICS.acl_request
            ]

        def alarms() -> list[dict[str, object]]:
            found = []
            for m in list(cloud.messages):
                if m.topic == TOPICS.events:
                    for e in EventBatch.model_validate_json(m.payload).events:
                        if e.event.get("alarm") == "store_restored":
                            found.append(e.event)
            return found

        await eventually(lambda: len(requests()) == 1, what="a snapshot request")
        request = requests()[0]
        assert request.reason == "restored" and request.have_version == 5
        assert "restored backup" in request.detail
        await eventually(lambda: len(alarms()) == 1, what="the store_restored alarm uploaded")

        # The cloud answers with its list, at the very version the backup held: it applies all the same.
        again = demo_access_list(5, datetime.now(UTC), "main-gate", [d.id for d in cfg.doors])
        for chunk in encode_snapshot(AccessListDocument.of(again, "lotus-garden"), chunk_bytes=4000):
            cloud.publish(TOPICS.snapshot, chunk.model_dump_json().encode())
        await eventually(lambda: gw.snapshot_wanted is None, what="the snapshot applied")
        engine = gw.engine
        assert engine is not None and engine.acl.version == 5
    finally:
        await sync.stop()
        await gw.stop()
