"""BLE phone keys over the real broker: the cloud kit pushes a gateway's key list, a simulated phone (the replaying
bleak backend) opens the lobby through the real gateway, a revoked key opens nothing, malformed lists are refused
and change nothing, and a restarted gateway reloads the keys from its sealed store (which holds no key in the
clear). The lobby's `lobby-a-in` reader is a BleReader here instead of the demo's simulated reader."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import bleak  # noqa: F401 (scripts/setup installs it; a missing one must fail)
import pytest
from cloud_sync.ble_keys import STORE_FILE, BleKeySync, SealedKeyStore
from cloud_sync.downlink import Downlink
from cloud_sync.kit import CloudKit
from cloud_sync.link import LinkSettings, MqttLink
from cloud_sync.messages import BleKeyList, ErrorReport, WireBleKey

from drivers.ble.reader import TEST_COMPANY_ID, BleReader
from drivers.sim.ble import Air, Phone, ReplayScanner
from drivers.sim.door_controller import SimulatedDoorController
from edge.config import MqttSection
from edge.devices import build_devices
from edge.events import DecisionEvent, Event
from edge.gateway import Gateway
from edge.model import Credential, CredentialKind
from edge.secrets import env_var_name
from tests.cloud_sync.test_downlink import (
    MAX_PAYLOAD,
    SITE,
    TOPICS,
    acl_version,
    drain,
    eventually,
)
from tests.demo_site import demo_config

if TYPE_CHECKING:
    from cloud_sync.broker import LocalBroker

    from tests.cloud_sync.conftest import Probe, ProbeFactory

ZHANG_KEY = secrets.token_bytes(32)
LI_KEY = secrets.token_bytes(32)
READER = "lobby-a-in"
Status = Literal["active", "revoked"]


class BleRig:
    """A started demo gateway whose lobby reader is a BLE reader on simulated air, with a Downlink on the broker."""

    def __init__(self, gw: Gateway, downlink: Downlink, link: MqttLink, air: Air, loaded: set[str]) -> None:
        self.gw = gw
        self.loaded = loaded  # the reader's key ids once the Downlink was built, before any connection
        self.downlink = downlink
        self.link = link
        self.air = air
        self.decisions: list[DecisionEvent] = []
        gw.bus.subscribe(DecisionEvent, self._decided)

    def _decided(self, event: Event) -> None:
        assert isinstance(event, DecisionEvent)
        self.decisions.append(event)

    @property
    def reader(self) -> BleReader:
        reader = self.gw.devices.readers[READER]
        assert isinstance(reader, BleReader)
        return reader

    @property
    def keys(self) -> BleKeySync:
        return self.downlink.ble_keys

    async def stop(self) -> None:
        await asyncio.to_thread(self.link.stop)
        await self.gw.stop()


async def start_rig(data_dir: Path, broker: LocalBroker) -> BleRig:
    cfg = demo_config(data_dir)
    devices = build_devices(cfg)
    air = Air()
    devices.readers[READER] = BleReader(READER, {}, backend=ReplayScanner, backend_kwargs={"air": air})
    gw = Gateway(cfg, devices)
    await gw.start()
    acl = acl_version(1)
    for key_id, person in (("k-zhang", "p-zhang"), ("k-li", "p-li")):
        acl.credentials[(CredentialKind.BLE, key_id)] = Credential(CredentialKind.BLE, key_id, person)
    acl.validate()
    await gw.replace_access_list(acl)
    mqtt_cfg = MqttSection(host=broker.host, port=broker.port, max_payload_bytes=MAX_PAYLOAD)
    holder: dict[str, Downlink] = {}
    link = MqttLink(
        LinkSettings(broker.host, broker.port, "gw-demo", max_payload=MAX_PAYLOAD),
        on_message=lambda m: holder["dl"].handle(m),
        on_connection=lambda connected, _reason: holder["dl"].on_connection(connected),
        on_published=lambda _mid, _ok: None,
        subscriptions=TOPICS.down(),
    )
    holder["dl"] = Downlink(gw, TOPICS, mqtt_cfg, link)
    reader = devices.readers[READER]
    assert isinstance(reader, BleReader)
    loaded = set(reader.verifier._keys)
    link.start()
    await eventually(lambda: link.connected, what="gateway connected")
    return BleRig(gw, holder["dl"], link, air, loaded)


@pytest.fixture
def store_key(monkeypatch: pytest.MonkeyPatch) -> bytes:
    key = secrets.token_bytes(32)
    monkeypatch.setenv(env_var_name("ble-key-store"), key.hex())
    return key


@pytest.fixture
async def kit(broker: LocalBroker) -> AsyncIterator[CloudKit]:
    k = CloudKit(broker.host, broker.port, "backend-ble", SITE)
    await asyncio.to_thread(k.connect)
    yield k
    await asyncio.to_thread(k.close)


def keys(zhang: Status = "active", li: Status = "active") -> list[WireBleKey]:
    return [
        WireBleKey(id="k-zhang", person="p-zhang", key=ZHANG_KEY.hex(), status=zhang),
        WireBleKey(id="k-li", person="p-li", key=LI_KEY.hex(), status=li),
    ]


async def open_with(rig: BleRig, key: bytes) -> None:
    """A phone at the lobby advertises its current token (the detection callback runs on the loop)."""
    Phone(key, TEST_COMPANY_ID).advertise(rig.air, rssi=-50)
    await asyncio.sleep(0)


def errors(cloud: Probe) -> list[ErrorReport]:
    with cloud.cond:
        return [
            ErrorReport.model_validate_json(m.payload) for m in cloud.messages if m.topic == TOPICS.errors
        ]


async def test_pushed_keys_open_the_door_revoked_ones_do_not_and_a_restart_reloads_them(
    tmp_path: Path, broker: LocalBroker, kit: CloudKit, store_key: bytes
) -> None:
    rig = await start_rig(tmp_path / "gw", broker)
    try:
        controller = rig.gw.devices.controllers["sim-1"]
        assert isinstance(controller, SimulatedDoorController)
        await asyncio.to_thread(kit.push_ble_keys, "gw-demo", keys(), 1)
        await eventually(lambda: rig.keys.version == 1, what="key list version 1")

        await open_with(rig, ZHANG_KEY)
        await eventually(lambda: len(rig.decisions) == 1, what="a decision on the phone key")
        d = rig.decisions[0].decision
        assert (d.granted, d.kind, d.credential, d.person_id) == (
            True,
            CredentialKind.BLE,
            "k-zhang",
            "p-zhang",
        )
        await eventually(lambda: controller.outputs[3], what="lobby relay released (output 3, fail-secure)")

        # Zhang's phone revoked: the next list takes the key away at once.
        await asyncio.to_thread(kit.push_ble_keys, "gw-demo", keys(zhang="revoked"), 2)
        await eventually(lambda: rig.keys.version == 2, what="key list version 2")
        unknown = rig.reader.verifier.counters["unknown"]
        await open_with(rig, ZHANG_KEY)
        assert rig.reader.verifier.counters["unknown"] == unknown + 1
        assert len(rig.decisions) == 1  # no credential read, so no decision

        # An older list (a late re-delivery) never brings the key back.
        await asyncio.to_thread(kit.push_ble_keys, "gw-demo", keys(), 1)
        await asyncio.to_thread(kit.push_ble_keys, "gw-demo", keys(zhang="revoked"), 2)
        await drain(rig.gw)
        assert rig.keys.version == 2 and set(rig.reader.verifier._keys) == {"k-li"}

        stored = (rig.gw.config.gateway.data_dir / STORE_FILE).read_bytes()
        for secret in (ZHANG_KEY, LI_KEY):
            assert secret not in stored and secret.hex().encode() not in stored
        assert b"k-li" not in stored  # the whole list is sealed, ids included
    finally:
        await rig.stop()

    # Restart: a new gateway on the same data directory has Li's key (and not Zhang's) before any message.
    rig = await start_rig(tmp_path / "gw", broker)
    try:
        assert rig.loaded == {"k-li"}
        assert rig.keys.version == 2
        await open_with(rig, LI_KEY)
        await eventually(lambda: len(rig.decisions) == 1, what="a decision after the restart")
        d = rig.decisions[0].decision
        assert (d.granted, d.credential, d.person_id) == (True, "k-li", "p-li")
    finally:
        await rig.stop()


def raw_list(**override: object) -> bytes:
    body: dict[str, object] = {
        "site": SITE,
        "gateway": "gw-demo",
        "version": 5,
        "keys": [{"id": "k-li", "person": "p-li", "key": LI_KEY.hex()}],
    }
    body.update(override)
    return json.dumps(body).encode()


BAD = [
    ("schema", raw_list(keys=[{"id": "k-li", "person": "p-li", "key": LI_KEY.hex()[:-2]}])),  # 31 bytes
    ("schema", raw_list(keys=[{"id": "k-li", "person": "p-li", "key": LI_KEY.hex() + "00"}])),  # 33 bytes
    ("schema", raw_list(keys=[{"id": "k-li", "person": "p-li", "key": LI_KEY.hex().upper()}])),
    ("schema", raw_list(keys=[{"id": "k-li", "person": "p-li", "key": LI_KEY.hex()}] * 2)),  # id twice
    ("schema", raw_list(extra="field")),
    ("schema", raw_list(version=0)),
    ("not_json", b"{not json"),
    (
        "too_large",
        raw_list(keys=[{"id": f"k-{i}", "person": "p-li", "key": LI_KEY.hex()} for i in range(100)]),
    ),
    ("wrong_site", raw_list(site="other-site")),
    ("rejected", raw_list(gateway="gw-other")),
]


async def test_malformed_key_lists_are_refused_and_change_nothing(
    tmp_path: Path, broker: LocalBroker, kit: CloudKit, make_probe: ProbeFactory, store_key: bytes
) -> None:
    cloud = make_probe("cloud-ble")
    cloud.connect(broker.host, broker.port)
    assert cloud.wait_connected()
    cloud.subscribe(TOPICS.errors)
    rig = await start_rig(tmp_path / "gw", broker)
    try:
        await asyncio.to_thread(kit.push_ble_keys, "gw-demo", keys(), 1)
        await eventually(lambda: rig.keys.version == 1, what="key list version 1")
        store = rig.gw.config.gateway.data_dir / STORE_FILE
        before = (store.read_bytes(), dict(rig.reader.verifier._keys))
        for error, payload in BAD:
            seen = len(errors(cloud))
            info = cloud.client.publish(TOPICS.ble_keys, payload, qos=1)
            info.wait_for_publish(10)
            await eventually(lambda: len(errors(cloud)) > seen, what=f"ErrorReport {error}")  # noqa: B023
            report = errors(cloud)[seen]
            assert (report.error, report.topic) == (error, TOPICS.ble_keys), report
            assert LI_KEY.hex() not in report.detail
            await drain(rig.gw)
            assert rig.keys.version == 1
            assert (store.read_bytes(), dict(rig.reader.verifier._keys)) == before, error
        assert rig.downlink.refused == len(BAD)
    finally:
        await rig.stop()


async def test_without_a_store_key_a_list_is_refused_and_nothing_is_written(
    tmp_path: Path, broker: LocalBroker, kit: CloudKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(env_var_name("ble-key-store"), raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    rig = await start_rig(tmp_path / "gw", broker)
    try:
        await asyncio.to_thread(kit.push_ble_keys, "gw-demo", keys(), 1)
        await eventually(lambda: rig.downlink.refused == 1, what="the refusal")
        assert rig.keys.version == 0 and rig.reader.verifier._keys == {}
        assert not (rig.gw.config.gateway.data_dir / STORE_FILE).exists()
    finally:
        await rig.stop()


async def test_an_expired_key_is_not_handed_out(
    tmp_path: Path, broker: LocalBroker, kit: CloudKit, store_key: bytes
) -> None:
    rig = await start_rig(tmp_path / "gw", broker)
    try:
        now = datetime.now(UTC)
        listed = [
            WireBleKey(
                id="k-zhang", person="p-zhang", key=ZHANG_KEY.hex(), valid_until=now - timedelta(minutes=1)
            ),
            WireBleKey(id="k-li", person="p-li", key=LI_KEY.hex(), valid_until=now + timedelta(days=1)),
        ]
        await asyncio.to_thread(kit.push_ble_keys, "gw-demo", listed, 1)
        await eventually(lambda: rig.keys.version == 1, what="key list version 1")
        assert set(rig.reader.verifier._keys) == {"k-li"}
    finally:
        await rig.stop()


def test_the_sealed_store_opens_only_with_its_key_and_for_its_gateway(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    listed = BleKeyList(site=SITE, gateway="gw-demo", version=3, keys=keys())
    SealedKeyStore(tmp_path / STORE_FILE, key, SITE, "gw-demo").save(listed)
    assert SealedKeyStore(tmp_path / STORE_FILE, key, SITE, "gw-demo").load() == listed
    assert SealedKeyStore(tmp_path / STORE_FILE, key, SITE, "gw-other").load() is None  # copied elsewhere
    assert SealedKeyStore(tmp_path / STORE_FILE, secrets.token_bytes(32), SITE, "gw-demo").load() is None
    data = bytearray((tmp_path / STORE_FILE).read_bytes())
    data[-1] ^= 1
    (tmp_path / STORE_FILE).write_bytes(bytes(data))
    assert SealedKeyStore(tmp_path / STORE_FILE, key, SITE, "gw-demo").load() is None  # tampered
    assert (tmp_path / STORE_FILE).stat().st_mode & 0o077 == 0
