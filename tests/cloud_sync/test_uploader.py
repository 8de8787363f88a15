"""The outbox and CloudSync: marked sent only on PUBACK, re-sent in order after a reconnect, batches that
carry the exact stored bytes, the disk cap, and the whole link against a real mosquitto (presence, telemetry,
access-list state, events)."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloud_sync.uploader as uploader_module
import pytest
from cloud_sync.messages import AclState, EventBatch, GatewayStatus, Telemetry
from cloud_sync.sync import CloudSync
from cloud_sync.topics import Topics
from cloud_sync.uploader import Uploader, encode_batch, enforce_cap, low_water, overflow_detail

from drivers.sim.reader import SimulatedReader
from edge.config import MqttSection
from edge.demo_data import UNKNOWN_CARD, ZHANG_CARD, demo_access_list
from edge.devices import build_devices
from edge.events import AlarmKind
from edge.gateway import Gateway
from edge.model import CredentialKind
from edge.store.audit import verify_chain
from edge.store.codec import canonical_json
from edge.store.event_log import EventLog, chain_hash
from tests.demo_site import demo_config

if TYPE_CHECKING:
    from cloud_sync.broker import LocalBroker

    from tests.cloud_sync.conftest import BrokerFactory, Probe, ProbeFactory

ROOT = Path(__file__).resolve().parents[2]
TOPICS = Topics("lotus-garden", "gw-demo")
DOORS = ("main-gate", "side-door", "lobby-a")


# --- helpers -------------------------------------------------------------------------------------------------


async def eventually(predicate: Callable[[], bool], within: float = 10.0, what: str = "condition") -> None:
    """Poll on the loop (the gateway must keep running while we wait); fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


def records(n: int, start: int = 0) -> list[dict[str, Any]]:
    at = datetime.now(UTC).isoformat()
    return [
        {"type": "decision", "at": at, "door": DOORS[i % 3], "granted": False, "reason": "test", "n": i}
        for i in range(start, start + n)
    ]


@pytest.fixture
def log_db(tmp_path: Path) -> Iterator[EventLog]:
    with EventLog(tmp_path / "events.db", synchronous="normal") as events:
        yield events


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str, bytes]] = []
        self._mid = 0

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry: int | None = None,
        correlation_data: bytes | None = None,
        response_topic: str | None = None,
        content_type: str = "application/json",
    ) -> int:
        self._mid += 1
        self.sent.append((self._mid, topic, payload))
        return self._mid

    def seqs(self, index: int) -> list[int]:
        return [e.seq for e in EventBatch.model_validate_json(self.sent[index][2]).events]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    cfg = demo_config(tmp_path / "gw")
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    await gw.replace_access_list(demo_access_list(1, datetime.now(UTC), "side-door", list(gw.site.doors)))
    yield gw
    await gw.stop()


def mqtt_for(broker: LocalBroker, **changes: Any) -> MqttSection:
    return MqttSection(
        host=broker.host, port=broker.port, keepalive_seconds=5, heartbeat_seconds=1.0, **changes
    )


class Cloud:
    """The cloud's side in a test: a probe subscribed to everything under the gateway, reading batches and
    de-duplicating events by (gateway, seq)."""

    def __init__(self, probe: Probe, broker: LocalBroker) -> None:
        self.probe = probe
        probe.connect(broker.host, broker.port)
        assert probe.wait_connected()
        probe.subscribe(f"{TOPICS.base}/#")
        self._read = 0
        self.events: dict[int, dict[str, Any]] = {}
        self.copies = 0

    def collect(self) -> None:
        with self.probe.cond:
            new = self.probe.messages[self._read :]
            self._read += len(new)
        for msg in new:
            if msg.topic == TOPICS.events:
                for e in EventBatch.model_validate_json(msg.payload).events:
                    self.copies += 1
                    self.events.setdefault(e.seq, e.event)

    def has(self, seqs: range) -> bool:
        self.collect()
        return all(s in self.events for s in seqs)

    def last(self, topic: str) -> bytes | None:
        with self.probe.cond:
            found = [bytes(m.payload) for m in self.probe.messages if m.topic == topic]
        return found[-1] if found else None


# --- the uploader against a fake publisher -------------------------------------------------------------------


async def test_events_are_marked_sent_only_when_the_broker_acknowledges(
    log_db: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uploader_module, "REFUSED_BACKOFF", 0.1)
    log_db.append_many(records(25))
    log_db.flush()
    pub = FakePublisher()
    up = Uploader(log_db, pub, TOPICS, batch=10, window=2, poll_interval=0.05)
    up.start()
    try:
        up.on_connection(True)
        await eventually(lambda: len(pub.sent) == 2, what="two batches")
        await asyncio.sleep(0.2)
        assert len(pub.sent) == 2, "the window holds two batches"
        assert pub.seqs(0) == list(range(1, 11)) and pub.seqs(1) == list(range(11, 21))
        assert {topic for _, topic, _ in pub.sent} == {TOPICS.events}
        assert log_db.depth() == 25, "published is not sent"

        assert up.on_published(1, True)
        await eventually(lambda: log_db.depth() == 15, what="first batch marked")
        await eventually(lambda: len(pub.sent) == 3, what="window refilled")
        assert pub.seqs(2) == list(range(21, 26))

        assert up.on_published(2, False)  # the broker refused it: not marked, sent again in order
        await eventually(lambda: len(pub.sent) == 5, what="re-send after a refusal")
        assert pub.seqs(3) == list(range(11, 21)) and pub.seqs(4) == list(range(21, 26))
        assert log_db.depth() == 15
        assert up.stats.refused == 1

        for mid in (3, 4, 5):
            up.on_published(mid, True)
        await eventually(lambda: log_db.depth() == 0, what="all marked")
        assert not up.on_published(99, True), "not ours"
        assert up.last_upload_at is not None
    finally:
        await up.stop()
    assert verify_chain(log_db.path).ok


async def test_a_reconnect_resends_everything_unacknowledged_from_the_oldest(log_db: EventLog) -> None:
    log_db.append_many(records(30))
    log_db.flush()
    pub = FakePublisher()
    up = Uploader(log_db, pub, TOPICS, batch=10, window=3, poll_interval=0.05)
    up.start()
    try:
        up.on_connection(True)
        await eventually(lambda: len(pub.sent) == 3, what="three batches")
        up.on_published(1, True)
        await eventually(lambda: log_db.depth() == 20, what="first batch marked")
        await asyncio.sleep(0.1)
        up.on_connection(False)  # batches 2 and 3 were in flight: not marked, not forgotten
        await asyncio.sleep(0.2)
        assert log_db.depth() == 20
        sent_before = len(pub.sent)
        up.on_connection(True)
        await eventually(lambda: len(pub.sent) >= sent_before + 2, what="re-send")
        resent = [pub.seqs(i) for i in range(sent_before, len(pub.sent))]
        assert resent[0] == list(range(11, 21)), "the new connection starts at the oldest unsent event"
        flat = [s for batch in resent for s in batch]
        assert flat == sorted(flat) and flat == list(range(11, 11 + len(flat)))
        up.on_published(2, True)  # a late PUBACK of the old connection's copy still counts
        await eventually(lambda: log_db.depth() == 10, what="late ack marked")
        for mid, _, _ in pub.sent[sent_before:]:
            up.on_published(mid, True)
        await eventually(lambda: log_db.depth() == 0, what="all marked")
    finally:
        await up.stop()


def test_a_batch_carries_the_stored_bytes_and_the_chain(log_db: EventLog) -> None:
    log_db.append_many(records(5))
    log_db.flush()
    rows = log_db.pending(10)
    batch = EventBatch.model_validate_json(encode_batch("lotus-garden", "gw-demo", rows).payload)
    assert (batch.site, batch.gateway) == ("lotus-garden", "gw-demo")
    prev = "0" * 64
    for e, row in zip(batch.events, rows, strict=True):
        assert canonical_json(e.event) == row.payload
        assert e.prev_hash == prev and chain_hash(prev, e.id, e.seq, canonical_json(e.event)) == e.hash
        prev = e.hash
    small = encode_batch("lotus-garden", "gw-demo", rows, max_bytes=600)
    assert 1 <= len(small.seqs) < 5 and len(small.payload) <= 600
    assert encode_batch("s", "g", rows, max_bytes=10).seqs == (1,), "one event always goes"
    assert [e.seq for e in log_db.pending(10, after=3)] == [4, 5]


def test_the_cap_prunes_sent_events_first_and_drops_unsent_ones_last(log_db: EventLog) -> None:
    cap = 1000
    log_db.append_many(records(1200))
    log_db.flush()
    log_db.mark_sent(range(1, 301))
    result = enforce_cap(log_db, cap)
    assert result.pruned == 250 and result.dropped is None  # down to the low-water mark, sent events only
    assert log_db.seq_range() == (251, 1200) and low_water(cap) == 950
    assert enforce_cap(log_db, cap).pruned == 0, "under the cap: nothing to do"

    log_db.append_many(records(200, start=1200))
    log_db.flush()
    result = enforce_cap(log_db, cap)  # 1150 rows, only 50 of them sent
    assert result.pruned == 50
    dropped = result.dropped
    assert dropped is not None and (dropped.unsent, dropped.first_unsent, dropped.last_unsent) == (
        150,
        301,
        450,
    )
    assert overflow_detail(dropped, cap).startswith("dropped 150 unsent events seq 301..450")
    assert log_db.seq_range() == (451, 1400) and log_db.depth() == 950
    assert verify_chain(log_db.path).ok
    assert log_db.append(records(1)[0]).result(5).seq == 1401, "numbering carries on past the drop"
    assert verify_chain(log_db.path).ok


# --- CloudSync against a real broker -------------------------------------------------------------------------


async def test_cloud_sync_uploads_and_publishes_presence_telemetry_and_acl_state(
    gateway: Gateway, broker: LocalBroker, make_probe: ProbeFactory
) -> None:
    cloud = Cloud(make_probe("cloud"), broker)
    sync = CloudSync(gateway, mqtt_for(broker), software_version="1.2.3-test", downlink=None)
    await sync.start()
    try:
        await eventually(lambda: sync.connected, what="connected")
        reader = gateway.devices.readers["main-gate-in"]
        assert isinstance(reader, SimulatedReader)
        reader.present(CredentialKind.CARD, ZHANG_CARD)
        reader.present(CredentialKind.CARD, UNKNOWN_CARD)
        await eventually(lambda: cloud.has(range(1, 3)), what="decisions in the cloud")
        decisions = [cloud.events[s] for s in sorted(cloud.events) if cloud.events[s]["type"] == "decision"]
        assert [d["granted"] for d in decisions[:2]] == [True, False]
        await eventually(lambda: gateway.events is not None and gateway.events.depth() == 0, what="marked")

        status = cloud.last(TOPICS.status)
        assert status is not None and GatewayStatus.model_validate_json(status).online
        acl = cloud.last(TOPICS.acl_state)
        assert acl is not None and AclState.model_validate_json(acl).version == 1
        await eventually(lambda: sync.heartbeat.published >= 2, what="two heartbeats")
        await eventually(lambda: cloud.last(TOPICS.telemetry) is not None, what="telemetry")
        raw = cloud.last(TOPICS.telemetry)
        assert raw is not None
        telemetry = Telemetry.model_validate_json(raw)
        assert telemetry.software == "1.2.3-test" and telemetry.acl_version == 1
        assert telemetry.devices["controller/sim-1"].online and "reader/main-gate-in" in telemetry.devices
        assert telemetry.last_upload_at is not None
    finally:
        await sync.stop()

    await eventually(lambda: not GatewayStatus.model_validate_json(cloud.last(TOPICS.status) or b"").online)
    late = make_probe("late-reader")  # retained: a newcomer sees the state at once
    late.connect(broker.host, broker.port)
    assert late.wait_connected()
    late.subscribe(f"{TOPICS.base}/#")
    assert late.wait_until(lambda: {m.topic for m in late.messages} >= {TOPICS.status, TOPICS.telemetry})
    retained = {m.topic: m.payload for m in late.messages}
    assert not GatewayStatus.model_validate_json(retained[TOPICS.status]).online
    assert json.loads(retained[TOPICS.telemetry])["software"] == "1.2.3-test"


async def test_a_full_outbox_drops_the_oldest_unsent_events_with_an_alarm_that_is_sent_too(
    gateway: Gateway, make_broker: BrokerFactory, make_probe: ProbeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    broker = make_broker(start=False)  # the cloud is away while the outbox fills
    events = gateway.events
    assert events is not None
    before = events.last_seq()
    events.append_many(records(1100))
    events.flush()
    mqtt = mqtt_for(broker).model_copy(update={"outbox_max_events": 1000})  # below the config's minimum
    sync = CloudSync(gateway, mqtt, software_version="t", downlink=None, reconnect_delay=(1, 1))
    with caplog.at_level(logging.WARNING):
        await sync.start()
        try:
            await eventually(lambda: events.seq_range() is not None and events.depth() <= 1000, what="cap")
            await eventually(lambda: bool(_alarms(gateway.db_path)), what="overflow alarm stored")
            alarm = _alarms(gateway.db_path)[0]
            first, last = before + 1, before + 1100 - 950  # down to the low-water mark
            assert alarm["detail"].startswith(f"dropped {last - first + 1} unsent events seq {first}..{last}")
            assert verify_chain(gateway.db_path).ok
            assert any("cloud broker" in r.getMessage() for r in caplog.records), "the outage is logged"

            broker.start()
            await eventually(lambda: sync.connected, within=15, what="connected")
            await eventually(lambda: events.depth() == 0, what="backlog and alarm uploaded")
        finally:
            await sync.stop()


def _alarms(db_path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE type = 'alarm' ORDER BY seq").fetchall()
    found = [json.loads(p) for (p,) in rows]
    return [a for a in found if a["alarm"] == AlarmKind.OUTBOX_OVERFLOW.value]


async def test_stop_before_connecting_is_clean(gateway: Gateway, make_broker: BrokerFactory) -> None:
    broker = make_broker(start=False)
    sync = CloudSync(gateway, mqtt_for(broker), software_version="t", downlink=None)
    await sync.start()
    await asyncio.sleep(0.2)
    await asyncio.wait_for(sync.stop(), 10)
    assert not sync.connected
    await sync.stop()  # twice is fine


def test_cloud_sync_needs_a_started_gateway(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    with pytest.raises(RuntimeError, match="start the gateway"):
        CloudSync(Gateway(cfg, build_devices(cfg)), MqttSection(), software_version="t")


async def test_cloud_sync_routes_down_messages_to_the_downlink(
    gateway: Gateway, broker: LocalBroker, make_probe: ProbeFactory
) -> None:
    cloud = Cloud(make_probe("cloud"), broker)
    sync = CloudSync(gateway, mqtt_for(broker), software_version="t")  # the real downlink
    assert sync.downlink is not None
    await sync.start()
    try:
        await eventually(lambda: sync.connected, what="connected")
        await eventually(lambda: cloud.last(TOPICS.acl_state) is not None, what="acl state from the downlink")
        acl = cloud.last(TOPICS.acl_state)
        assert acl is not None and AclState.model_validate_json(acl).version == 1
        await asyncio.sleep(0.3)  # the subscription is made right after CONNACK
        cloud.probe.publish(TOPICS.command, b"not json")
        await eventually(lambda: cloud.last(TOPICS.errors) is not None, what="the downlink's error report")
        report = cloud.last(TOPICS.errors)
        assert report is not None and json.loads(report)["error"] == "not_json"
    finally:
        await sync.stop()
