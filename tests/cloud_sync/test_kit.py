"""The cloud kit against a real mosquitto: what a backend relies on.

The gateway's side is played here by small paho clients, so these tests pin the kit to the contract (topics,
MQTT 5 properties, payloads) rather than to the gateway's implementation. EventConsumer tests publish
EventBatches as a gateway would and check that each event reaches the handler exactly once, that gaps and
broken hash chains are reported, and that nothing is acknowledged before it was handled.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import pytest
import uuid6
from cloud_sync.broker import LocalBroker
from cloud_sync.dedupe import GENESIS_HASH, DedupeStore, IssueKind, ReceivedEvent, event_hash
from cloud_sync.kit import (
    AnyCommand,
    CloudKit,
    CommandTimeoutError,
    ConnectError,
    EventConsumer,
    PublishError,
    mosquitto_acl,
)
from cloud_sync.messages import (
    AccessListDocument,
    AclState,
    CommandEnvelope,
    CommandReply,
    Delta,
    ErrorReport,
    EventBatch,
    GatewayStatus,
    RevokeCredential,
    SnapshotChunk,
    SnapshotRequest,
    Telemetry,
    UploadedEvent,
    UpsertPass,
    WireCredential,
    WireGroup,
    WirePass,
    WirePerson,
    WireRule,
)
from cloud_sync.snapshot_codec import chunk_bytes_of, decode_snapshot
from cloud_sync.topics import Topics
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.model import CredentialKind, DoorMode

if TYPE_CHECKING:
    from tests.cloud_sync.conftest import ProbeFactory

WAIT = 10.0
SITE = "s1"
GW = "gw-1"


@pytest.fixture
def kit(broker: LocalBroker) -> Iterator[CloudKit]:
    with CloudKit(broker.host, broker.port, "backend-1", SITE) as k:
        yield k


def wait_until(predicate: Any, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def sample_doc(people: int = 3, version: int = 7) -> AccessListDocument:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    return AccessListDocument(
        version=version,
        site=SITE,
        groups=[WireGroup(id="residents", name="Residents")],
        people=[WirePerson(id=f"p{i}", name=f"Person {i}", groups=["residents"]) for i in range(people)],
        rules=[WireRule(id="r1", group="residents", doors=["front"])],
        credentials=[
            WireCredential(kind=CredentialKind.CARD, value=str(100000 + i), person=f"p{i}")
            for i in range(people)
        ],
        passes=[WirePass(id="v1", doors=["front"], valid_from=now, valid_until=now + timedelta(hours=2))],
    )


# --- snapshots and deltas -------------------------------------------------------------------------------------


def reassemble(chunks: list[SnapshotChunk]) -> AccessListDocument:
    ordered = sorted(chunks, key=lambda c: c.index)
    assert [c.index for c in ordered] == list(range(ordered[0].count))
    assert len({c.snapshot_id for c in ordered}) == 1
    return decode_snapshot([chunk_bytes_of(c) for c in ordered], ordered[0].total_sha256)


def test_push_snapshot_arrives_in_checked_chunks(kit: CloudKit, make_probe: ProbeFactory) -> None:
    gw = make_probe(GW)
    gw.connect(kit.connection.host, kit.connection.port)
    assert gw.wait_connected()
    gw.subscribe(Topics(SITE, GW).snapshot)
    doc = sample_doc(people=300)

    snapshot_id = kit.push_snapshot(GW, doc, chunk_bytes=1024)

    def chunks_seen() -> list[SnapshotChunk]:
        return [SnapshotChunk.model_validate_json(m.payload) for m in gw.messages]

    assert gw.wait_until(lambda: len(gw.messages) > 0 and len(gw.messages) == chunks_seen()[0].count)
    chunks = chunks_seen()
    assert len(chunks) > 1
    assert {c.snapshot_id for c in chunks} == {snapshot_id}
    assert all(c.version == 7 and c.server_time is not None for c in chunks)
    assert all(m.qos == 1 and not m.retain for m in gw.messages)
    assert reassemble(chunks) == doc


def test_push_snapshot_of_a_domain_access_list(kit: CloudKit, make_probe: ProbeFactory) -> None:
    gw = make_probe(GW)
    gw.connect(kit.connection.host, kit.connection.port)
    assert gw.wait_connected()
    gw.subscribe(Topics(SITE, GW).snapshot)
    acl = sample_doc().to_domain()

    kit.push_snapshot(GW, acl)

    assert gw.wait_messages(1)
    chunk = SnapshotChunk.model_validate_json(gw.messages[0].payload)
    assert chunk.count == 1
    assert reassemble([chunk]).to_domain() == acl


def test_push_snapshot_of_another_site_is_refused(kit: CloudKit) -> None:
    doc = sample_doc().model_copy(update={"site": "other"})
    with pytest.raises(ValueError, match="site"):
        kit.push_snapshot(GW, doc)


def test_push_delta_round_trips_and_is_stamped(kit: CloudKit, make_probe: ProbeFactory) -> None:
    gw = make_probe(GW)
    gw.connect(kit.connection.host, kit.connection.port)
    assert gw.wait_connected()
    gw.subscribe(Topics(SITE, GW).delta)
    now = datetime.now(UTC)
    delta = Delta(
        from_version=7,
        to_version=8,
        ops=[
            RevokeCredential(op="revoke_credential", kind=CredentialKind.CARD, value="100001"),
            UpsertPass.model_validate(
                {
                    "op": "upsert_pass",
                    "pass": WirePass(
                        id="v2", doors=["front"], valid_from=now, valid_until=now + timedelta(hours=1)
                    ),
                },
            ),
        ],
    )

    kit.push_delta(GW, delta)

    assert gw.wait_messages(1)
    raw = json.loads(gw.messages[0].payload)
    assert raw["ops"][1]["pass"]["id"] == "v2"  # the wire name, not the Python attribute
    received = Delta.model_validate(raw)
    assert received.server_time is not None
    assert received.model_copy(update={"server_time": None}) == delta


def test_snapshot_waits_at_the_broker_for_an_offline_gateway(kit: CloudKit, make_probe: ProbeFactory) -> None:
    host, port = kit.connection.host, kit.connection.port
    gw = make_probe(GW, clean_start=False, session_expiry=300)
    gw.connect(host, port)
    assert gw.wait_connected()
    gw.subscribe(Topics(SITE, GW).snapshot)
    gw.close()

    kit.push_snapshot(GW, sample_doc())

    again = make_probe(GW, clean_start=False, session_expiry=300)
    again.connect(host, port)
    assert again.wait_messages(1)
    assert reassemble([SnapshotChunk.model_validate_json(again.messages[0].payload)]) == sample_doc()


# --- commands -------------------------------------------------------------------------------------------------


class Responder:
    """Plays the gateway's command handling: reply on the request's response topic with its correlation data."""

    def __init__(
        self, broker: LocalBroker, gateway: str = GW, *, reply: bool = True, error: str | None = None
    ):
        self.topics = Topics(SITE, gateway)
        self.reply = reply
        self.error = error
        self.received: list[tuple[CommandEnvelope, Any]] = []  # (command, MQTT 5 properties)
        self.cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gateway, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe(self.topics.command, qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(WAIT)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        envelope = CommandEnvelope.model_validate_json(msg.payload)
        props: Any = msg.properties
        with self.cond:
            self.received.append((envelope, props))
            self.cond.notify_all()
        if not self.reply:
            return
        reply = CommandReply(
            id=envelope.cmd.id,
            ok=self.error is None,
            error=self.error,  # type: ignore[arg-type]
            result={"command": envelope.cmd.command},
        )
        out = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        out.CorrelationData = props.CorrelationData
        client.publish(props.ResponseTopic, reply.model_dump_json(), qos=1, properties=out)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def responder(broker: LocalBroker) -> Iterator[Responder]:
    r = Responder(broker)
    yield r
    r.close()


def test_command_round_trip_uses_mqtt5_request_response(kit: CloudKit, responder: Responder) -> None:
    cmd = kit.open_door("front", operator="alice", reason="delivery", ttl=30)

    reply = kit.send_command(GW, cmd, timeout=WAIT)

    assert reply.ok
    assert reply.id == cmd.id
    assert reply.result == {"command": "open_door"}
    envelope, props = responder.received[0]
    assert envelope.cmd == cmd
    assert props.ResponseTopic == f"menwei/v1/{SITE}/{GW}/cmd/reply/backend-1" == kit.reply_topic(GW)
    assert len(props.CorrelationData) == 16
    assert 1 <= props.MessageExpiryInterval <= 30
    assert props.ContentType == "application/json"


def test_concurrent_commands_get_their_own_replies(kit: CloudKit, responder: Responder) -> None:
    commands: list[AnyCommand] = [
        kit.ping(),
        kit.set_mode(DoorMode.LOCKED, door="front", operator="bob"),
        kit.resync(operator="c"),
    ]
    replies: dict[str, CommandReply] = {}

    def send(i: int) -> None:
        replies[commands[i].id] = kit.send_command(GW, commands[i], timeout=WAIT)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(commands))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert {c.id: c.command for c in commands} == {i: r.result["command"] for i, r in replies.items()}


def test_refusal_reply_is_returned(kit: CloudKit, broker: LocalBroker) -> None:
    r = Responder(broker, error="replayed")
    try:
        reply = kit.send_command(GW, kit.ping(), timeout=WAIT)
    finally:
        r.close()
    assert not reply.ok
    assert reply.error == "replayed"


def test_no_reply_times_out(kit: CloudKit, broker: LocalBroker) -> None:
    r = Responder(broker, reply=False)
    try:
        with pytest.raises(CommandTimeoutError):
            kit.send_command(GW, kit.ping(), timeout=0.5)
        assert len(r.received) == 1
    finally:
        r.close()


def test_command_to_a_gateway_that_never_connected_fails_at_once(kit: CloudKit) -> None:
    with pytest.raises(PublishError, match="never connected"):
        kit.send_command("gw-9", kit.ping(), timeout=WAIT)


def test_expired_command_is_not_sent(kit: CloudKit) -> None:
    cmd = kit.ping().model_copy(update={"expires_at": datetime.now(UTC) - timedelta(seconds=1)})
    with pytest.raises(ValueError, match="expired"):
        kit.send_command(GW, cmd)


def test_broker_discards_an_expired_command_for_an_offline_gateway(
    kit: CloudKit, make_probe: ProbeFactory
) -> None:
    host, port = kit.connection.host, kit.connection.port
    gw = make_probe(GW, clean_start=False, session_expiry=300)
    gw.connect(host, port)
    assert gw.wait_connected()
    gw.subscribe(Topics(SITE, GW).command)
    gw.close()
    short = kit.ping(ttl=1)
    with pytest.raises(CommandTimeoutError):
        kit.send_command(GW, short, timeout=0.2)
    long = kit.ping(ttl=60)
    with pytest.raises(CommandTimeoutError):
        kit.send_command(GW, long, timeout=0.2)
    time.sleep(2.1)  # let the first command's one-second message expiry pass at the broker

    again = make_probe(GW, clean_start=False, session_expiry=300)
    again.connect(host, port)
    assert again.wait_messages(1)
    time.sleep(0.3)  # give a wrongly kept first command the chance to arrive too
    ids = [CommandEnvelope.model_validate_json(m.payload).cmd.id for m in again.messages]
    assert ids == [long.id]
    expiry: Any = again.messages[0].properties
    assert expiry.MessageExpiryInterval < 60  # the broker counts the time it waited


# --- watching -------------------------------------------------------------------------------------------------


def publish(probe: Any, topic: str, payload: str, *, retain: bool = False, qos: int = 1) -> None:
    info = probe.client.publish(topic, payload, qos=qos, retain=retain)
    if qos:
        assert probe.wait_published(info.mid)


def test_watch_status_telemetry_state_requests_and_errors(kit: CloudKit, make_probe: ProbeFactory) -> None:
    seen: list[tuple[str, str]] = []
    cond = threading.Condition()

    def record(gateway: str, value: Any) -> None:
        with cond:
            seen.append((gateway, type(value).__name__))
            cond.notify_all()

    for model in (GatewayStatus, Telemetry, AclState, SnapshotRequest, ErrorReport):
        kit.watch(model, record)
    gw = make_probe(GW)
    gw.connect(kit.connection.host, kit.connection.port)
    assert gw.wait_connected()
    t = Topics(SITE, GW)
    now = datetime.now(UTC)
    publish(gw, t.status, GatewayStatus(online=True, at=now, software="1.0").model_dump_json(), retain=True)
    telemetry = Telemetry(
        at=now, software="1.0", acl_version=7, outbox_depth=0, oldest_pending_at=None, last_upload_at=None
    )
    publish(gw, t.telemetry, telemetry.model_dump_json(), retain=True, qos=0)
    publish(gw, t.acl_state, AclState(version=7, applied_at=now).model_dump_json(), retain=True)
    publish(gw, t.acl_request, SnapshotRequest(reason="gap", have_version=6).model_dump_json())
    err = ErrorReport(at=now, topic=t.delta, error="schema", detail="bad op")
    publish(gw, t.errors, err.model_dump_json())

    assert kit.wait_for(AclState, GW, lambda s: s.version == 7).applied_at == now
    assert kit.wait_for(Telemetry, GW) == telemetry
    assert kit.wait_for(ErrorReport, GW) == err
    with cond:
        assert cond.wait_for(lambda: len(seen) == 5, WAIT), seen
    assert sorted(seen) == sorted(
        (GW, n) for n in ("GatewayStatus", "Telemetry", "AclState", "SnapshotRequest", "ErrorReport")
    )
    status = kit.latest(GatewayStatus, GW)
    assert status is not None and status.online
    assert kit.latest(GatewayStatus, "gw-2") is None


def test_retained_status_reaches_a_kit_that_connects_later(
    broker: LocalBroker, make_probe: ProbeFactory
) -> None:
    gw = make_probe(GW)
    gw.connect(broker.host, broker.port)
    assert gw.wait_connected()
    offline = GatewayStatus(online=False, at=datetime.now(UTC))
    publish(gw, Topics(SITE, GW).status, offline.model_dump_json(), retain=True)

    with CloudKit(broker.host, broker.port, "late", SITE) as late:
        assert late.wait_for(GatewayStatus, GW) == offline


def test_a_watch_callback_may_answer_a_snapshot_request(kit: CloudKit, make_probe: ProbeFactory) -> None:
    pushed: list[str] = []
    kit.watch(SnapshotRequest, lambda gateway, req: pushed.append(kit.push_snapshot(gateway, sample_doc())))
    gw = make_probe(GW)
    gw.connect(kit.connection.host, kit.connection.port)
    assert gw.wait_connected()
    t = Topics(SITE, GW)
    gw.subscribe(t.snapshot)

    publish(gw, t.acl_request, SnapshotRequest(reason="startup", have_version=0).model_dump_json())

    assert gw.wait_messages(1)
    assert wait_until(lambda: len(pushed) == 1)
    assert SnapshotChunk.model_validate_json(gw.messages[0].payload).snapshot_id == pushed[0]


def test_invalid_watched_message_is_set_aside(kit: CloudKit, make_probe: ProbeFactory) -> None:
    gw = make_probe(GW)
    gw.connect(kit.connection.host, kit.connection.port)
    assert gw.wait_connected()
    publish(gw, Topics(SITE, GW).errors, '{"nonsense": true}')
    assert wait_until(lambda: len(kit.rejected) == 1)
    assert kit.rejected[0][0] == Topics(SITE, GW).errors
    assert kit.latest(ErrorReport, GW) is None


def test_watching_an_unwatched_kind_is_refused(kit: CloudKit) -> None:
    with pytest.raises(ValueError, match="not watched"):
        kit.watch(CommandReply, lambda gateway, value: None)


def test_kit_client_id_must_be_a_topic_level(broker: LocalBroker) -> None:
    with pytest.raises(ValueError, match="client id"):
        CloudKit(broker.host, broker.port, "backend/1", SITE)


def test_refused_connection_raises(make_broker: Any) -> None:
    b = make_broker(allow_anonymous=False, users={"backend": "right"})
    kit = CloudKit(b.host, b.port, "backend-1", SITE, username="backend", password="wrong")
    with pytest.raises(ConnectError, match="refused"):
        kit.connect(timeout=WAIT)
    kit.close()


# --- events ---------------------------------------------------------------------------------------------------


_CHAINS: dict[str, list[UploadedEvent]] = {}


def make_events(first: int, last: int, *, gateway: str = GW) -> list[UploadedEvent]:
    """Events first..last of one gateway's chain, hash-chained as the gateway chains them (one chain per
    gateway name for the whole module, so overlapping slices are the same events)."""
    events = _CHAINS.setdefault(gateway, [])
    if len(events) < last:
        prev = events[-1].hash if events else GENESIS_HASH
        events += _chain(len(events) + 1, last, prev)
    return events[first - 1 : last]


def _chain(first: int, last: int, prev: str) -> list[UploadedEvent]:
    out = []
    for seq in range(first, last + 1):
        record = {"type": "decision", "at": f"2025-01-01T00:00:{seq % 60:02d}+00:00", "granted": seq % 3 != 0}
        eid = str(uuid6.uuid7())
        h = event_hash(prev, eid, seq, record)
        out.append(UploadedEvent(seq=seq, id=eid, hash=h, prev_hash=prev, event=record))
        prev = h
    return out


def batch_of(events: list[UploadedEvent], gateway: str = GW, site: str = SITE) -> bytes:
    return EventBatch(site=site, gateway=gateway, events=events).model_dump_json().encode()


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.hash_ok: list[bool] = []
        self.lock = threading.Lock()

    def __call__(self, ev: ReceivedEvent) -> None:
        with self.lock:
            self.calls.append((ev.gateway, ev.seq))
            self.hash_ok.append(ev.hash_ok)

    def count(self) -> int:
        with self.lock:
            return len(self.calls)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DedupeStore]:
    with DedupeStore(tmp_path / "dedupe.db") as s:
        yield s


@pytest.fixture
def gateway_probe(broker: LocalBroker, make_probe: ProbeFactory) -> Any:
    gw = make_probe(GW)
    gw.connect(broker.host, broker.port)
    assert gw.wait_connected()
    return gw


def test_consumer_hands_each_event_to_the_handler_once(
    kit: CloudKit, store: DedupeStore, gateway_probe: Any
) -> None:
    rec = Recorder()
    events_topic = Topics(SITE, GW).events
    with EventConsumer(kit, SITE, rec, dedupe=store) as consumer:
        publish(gateway_probe, events_topic, batch_of(make_events(1, 10)).decode())
        publish(gateway_probe, events_topic, batch_of(make_events(1, 10)).decode())  # re-sent
        publish(gateway_probe, events_topic, batch_of(make_events(5, 15)).decode())  # overlapping
        assert wait_until(lambda: consumer.stats.batches == 3)
    assert rec.calls == [(GW, s) for s in range(1, 16)]
    assert all(rec.hash_ok)
    stats = consumer.stats
    assert (stats.new, stats.duplicates, stats.failures, stats.rejected) == (15, 16, 0, 0)
    assert store.count(SITE, GW) == 15
    assert store.high(SITE, GW) == 15
    assert store.gaps(SITE, GW) == []
    assert store.issues() == []


def test_gaps_are_reported_until_filled(kit: CloudKit, store: DedupeStore, gateway_probe: Any) -> None:
    topic = Topics(SITE, GW).events
    with EventConsumer(kit, SITE, Recorder(), dedupe=store) as consumer:
        publish(gateway_probe, topic, batch_of(make_events(3, 5)).decode())
        publish(gateway_probe, topic, batch_of(make_events(9, 10)).decode())
        assert wait_until(lambda: consumer.stats.batches == 2)
        assert store.gaps(SITE, GW) == [(1, 2), (6, 8)]
        publish(gateway_probe, topic, batch_of(make_events(1, 2) + make_events(6, 8)).decode())
        assert wait_until(lambda: consumer.stats.batches == 3)
    assert store.gaps(SITE, GW) == []
    assert store.high(SITE, GW) == 10
    assert store.issues() == []  # chain links checked in both directions as the holes filled


def test_broken_chain_and_bad_hash_are_recorded(
    kit: CloudKit, store: DedupeStore, gateway_probe: Any
) -> None:
    rec = Recorder()
    good = make_events(1, 3)
    tampered = good[1].model_copy(
        update={"event": {**good[1].event, "granted": not good[1].event["granted"]}}
    )
    forged_next = _chain(4, 4, "f" * 64)  # links to something that is not event 3
    with EventConsumer(kit, SITE, rec, dedupe=store) as consumer:
        publish(
            gateway_probe,
            Topics(SITE, GW).events,
            batch_of([good[0], tampered, good[2], *forged_next]).decode(),
        )
        assert wait_until(lambda: consumer.stats.batches == 1)
    assert rec.hash_ok == [True, False, True, True]  # handed over anyway, flagged: the backend decides
    kinds = {(i.seq, i.kind) for i in store.issues(SITE, GW)}
    assert kinds == {(2, IssueKind.BAD_HASH), (4, IssueKind.CHAIN_BREAK)}


def test_undecodable_and_spoofed_batches_are_kept_aside(
    kit: CloudKit, store: DedupeStore, gateway_probe: Any
) -> None:
    rec = Recorder()
    topic = Topics(SITE, GW).events
    with EventConsumer(kit, SITE, rec, dedupe=store) as consumer:
        publish(gateway_probe, topic, "not json")
        publish(gateway_probe, topic, '{"site": "s1", "gateway": "gw-1", "events": []}')
        publish(gateway_probe, topic, batch_of(make_events(1, 2, gateway="gw-2"), gateway="gw-2").decode())
        publish(gateway_probe, topic, batch_of(make_events(1, 2)).decode())
        assert wait_until(lambda: consumer.stats.batches == 4)
    assert rec.calls == [(GW, 1), (GW, 2)]
    assert consumer.stats.rejected == 3
    rejected = store.rejected()
    assert rejected[0].payload == b"not json"
    assert "claims s1/gw-2" in rejected[2].error


def test_failing_handler_is_retried_and_commits_once(
    kit: CloudKit, store: DedupeStore, gateway_probe: Any
) -> None:
    attempts: list[int] = []

    def flaky(ev: ReceivedEvent) -> None:
        attempts.append(ev.seq)
        ev.db.execute("CREATE TABLE IF NOT EXISTS doors (seq INTEGER PRIMARY KEY)")
        ev.db.execute("INSERT INTO doors VALUES (?)", (ev.seq,))
        if len(attempts) <= 2:
            raise RuntimeError("backend database unavailable")

    consumer = EventConsumer(kit, SITE, flaky, dedupe=store, retry_delay=(0.05, 0.1))
    with consumer:
        publish(gateway_probe, Topics(SITE, GW).events, batch_of(make_events(1, 1)).decode())
        assert wait_until(lambda: consumer.stats.batches == 1)
    assert attempts == [1, 1, 1]
    assert consumer.stats.failures == 2
    assert "unavailable" in (consumer.stats.last_error or "")
    rows = sqlite3.connect(store.path).execute("SELECT seq FROM doors").fetchall()
    assert rows == [(1,)]  # the failed attempts' writes were rolled back with their dedupe rows


def test_unacknowledged_batch_is_redelivered_after_a_restart(
    kit: CloudKit, store: DedupeStore, gateway_probe: Any
) -> None:
    def broken(ev: ReceivedEvent) -> None:
        raise RuntimeError("bug")

    failing = EventConsumer(kit, SITE, broken, dedupe=store, client_id="consumer-a", retry_delay=(0.05, 0.1))
    with failing:
        publish(gateway_probe, Topics(SITE, GW).events, batch_of(make_events(1, 3)).decode())
        assert wait_until(lambda: failing.stats.failures >= 1)
    assert failing.stats.batches == 0

    rec = Recorder()
    with EventConsumer(kit, SITE, rec, dedupe=store, client_id="consumer-a") as fixed:
        assert wait_until(lambda: fixed.stats.batches == 1)
    assert rec.calls == [(GW, 1), (GW, 2), (GW, 3)]


def test_events_published_while_the_consumer_is_away_wait_for_it(
    kit: CloudKit, store: DedupeStore, gateway_probe: Any
) -> None:
    rec = Recorder()
    with EventConsumer(kit, SITE, rec, dedupe=store, client_id="consumer-b"):
        pass  # the first start creates the persistent session and its subscription
    publish(gateway_probe, Topics(SITE, GW).events, batch_of(make_events(1, 4)).decode())
    with EventConsumer(kit, SITE, rec, dedupe=store, client_id="consumer-b") as consumer:
        assert wait_until(lambda: consumer.stats.batches == 1)
    assert [s for _, s in rec.calls] == [1, 2, 3, 4]


def test_events_from_a_real_event_log_verify(tmp_path: Path, store: DedupeStore) -> None:
    """The kit's hash is the gateway's hash: events read from an EventLog, uploaded as records, verify."""
    from edge.store.event_log import EventLog

    log = EventLog(tmp_path / "gateway.db")
    try:
        for i in range(5):
            log.append(
                {"type": "alarm", "at": f"2025-01-01T00:00:0{i}+00:00", "alarm": "tamper", "detail": "é"}
            )
        log.flush(WAIT)
        stored = log.pending(limit=10)
    finally:
        log.close()
    uploaded = [
        UploadedEvent(seq=e.seq, id=e.id, hash=e.hash, prev_hash=e.prev_hash, event=e.record())
        for e in stored
    ]
    rec = Recorder()
    store.process(EventBatch(site=SITE, gateway=GW, events=uploaded), rec)
    assert rec.hash_ok == [True] * 5
    assert store.issues() == []


# --- the store on its own -------------------------------------------------------------------------------------


def test_a_reused_seq_with_another_event_id_is_an_issue(store: DedupeStore) -> None:
    rec = Recorder()
    store.process(EventBatch(site=SITE, gateway=GW, events=make_events(1, 2)), rec)
    reset = _chain(1, 1, GENESIS_HASH)  # a gateway whose store was wiped starts again at seq 1
    result = store.process(EventBatch(site=SITE, gateway=GW, events=reset), rec)
    assert (result.new, result.duplicates) == (0, 1)
    assert [i.kind for i in store.issues(SITE, GW)] == [IssueKind.SEQ_REUSED]


def test_sites_and_gateways_are_kept_apart(store: DedupeStore) -> None:
    rec = Recorder()
    store.process(EventBatch(site=SITE, gateway=GW, events=make_events(1, 2)), rec)
    store.process(EventBatch(site=SITE, gateway="gw-2", events=make_events(1, 2, gateway="gw-2")), rec)
    store.process(EventBatch(site="s2", gateway=GW, events=make_events(1, 2)), rec)
    assert rec.count() == 6
    assert store.gateways() == [(SITE, GW), (SITE, "gw-2"), ("s2", GW)]


def test_two_stores_on_one_file_never_both_handle_an_event(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    events = make_events(1, 200)
    batches = [events[i : i + 10] for i in range(0, 200, 10)]
    rec = Recorder()
    errors: list[BaseException] = []

    def run(order: list[list[UploadedEvent]]) -> None:
        try:  # both open the new file at once: neither may fail (it once did, "database is locked")
            with DedupeStore(path) as s:
                for b in order:
                    s.process(EventBatch(site=SITE, gateway=GW, events=b), rec)
        except BaseException as err:
            errors.append(err)

    threads = [
        threading.Thread(target=run, args=(batches,)),
        threading.Thread(target=run, args=(batches[::-1],)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(rec.calls) == [(GW, s) for s in range(1, 201)]


# --- broker ACL -----------------------------------------------------------------------------------------------


def test_recommended_acl_keeps_each_gateway_in_its_own_tree(
    make_broker: Any, make_probe: ProbeFactory, tmp_path: Path
) -> None:
    acl = tmp_path / "acl"
    acl.write_text(mosquitto_acl(SITE, [GW, "gw-2"]))
    users = {"backend": "b-pw", GW: "g1-pw", "gw-2": "g2-pw"}
    b = make_broker(allow_anonymous=False, users=users, extra_config=f"acl_file {acl}")
    gw1 = make_probe(GW, username=GW, password="g1-pw")
    gw1.connect(b.host, b.port)
    gw2 = make_probe("gw-2", username="gw-2", password="g2-pw")
    gw2.connect(b.host, b.port)
    assert gw1.wait_connected() and gw2.wait_connected()
    gw1.subscribe(Topics(SITE, "gw-2").command)  # granted by mosquitto, but nothing is delivered
    gw2.subscribe(Topics(SITE, "gw-2").command)
    rec = Recorder()
    with (
        CloudKit(b.host, b.port, "backend-1", SITE, username="backend", password="b-pw") as kit,
        DedupeStore(tmp_path / "d.db") as store,
        EventConsumer(kit, SITE, rec, dedupe=store, group="backend") as consumer,
    ):
        spoof = gw1.publish(Topics(SITE, "gw-2").events, batch_of(make_events(1, 1, gateway="gw-2"), "gw-2"))
        own = gw1.publish(Topics(SITE, GW).events, batch_of(make_events(1, 1)))
        assert gw1.wait_published(spoof) and gw1.wait_published(own)
        with pytest.raises(CommandTimeoutError):
            kit.send_command("gw-2", kit.ping(), timeout=0.3)  # gw-2 receives it but does not answer
        assert gw2.wait_messages(1)
        assert wait_until(lambda: consumer.stats.batches == 1)
        time.sleep(0.2)  # a wrongly delivered spoofed batch would arrive by now
    assert rec.calls == [(GW, 1)]
    assert gw1.messages == []
