"""The downlink against a real mosquitto: snapshots (whole, interrupted, corrupt), deltas (in order, re-delivered,
gapped, revocations first), commands (open, modes, ping, expiry, replay, replies) and malformed input on every
down topic. The cloud is a plain paho client; the gateway is the demo site with its simulators.

"Nothing changes" is checked the same way everywhere (`Fingerprint`): the version and counts in memory and on
disk, the state table, and a decision for a known card, before and after."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import random
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import pytest
from cloud_sync.downlink import Downlink
from cloud_sync.link import Incoming, LinkSettings, MqttLink
from cloud_sync.messages import (
    AccessListDocument,
    AclState,
    CommandReply,
    Delta,
    ErrorReport,
    RevokeCredential,
    SnapshotChunk,
    SnapshotRequest,
    UpsertCredential,
    UpsertPerson,
    WireCredential,
    WirePerson,
    iso,
)
from cloud_sync.snapshot_codec import encode_snapshot, sha256_hex
from cloud_sync.topics import Topics
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.sim.door_controller import SimulatedDoorController
from edge.config import MqttSection
from edge.decision import AccessRequest, Reason, evaluate
from edge.demo_data import LI_CARD, ZHANG_CARD, demo_access_list
from edge.devices import build_devices
from edge.gateway import Gateway
from edge.model import AccessList, Credential, CredentialKind, Person, Status
from edge.store.access_store import load_access_list
from edge.store.db import open_db
from tests.demo_site import demo_config

if TYPE_CHECKING:
    from cloud_sync.broker import LocalBroker

    from tests.cloud_sync.conftest import Probe, ProbeFactory

ROOT = Path(__file__).resolve().parents[2]
SITE = "lotus-garden"
TOPICS = Topics(SITE, "gw-demo")
MAX_PAYLOAD = 8192
NEW_CARD = "77777"


# --- the rig -------------------------------------------------------------------------------------------------


async def eventually(predicate: Callable[[], bool], within: float = 10.0, what: str = "condition") -> None:
    """Poll on the loop (the gateway keeps running while we wait); fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)


async def drain(gw: Gateway) -> None:
    """Let every task the downlink spawned finish."""
    for _ in range(200):
        pending = [
            t
            for t in gw._tasks
            if not t.done() and getattr(t.get_coro(), "__qualname__", "").startswith("Downlink.")
        ]
        if not pending:
            return
        await asyncio.wait(pending, timeout=10)
    pytest.fail("downlink tasks did not finish")


def acl_version(version: int, *, extra_card: str | None = None) -> AccessList:
    """The demo list at `version`, optionally with one more resident holding `extra_card`."""
    acl = demo_access_list(version, datetime.now(UTC), "side-door", ["main-gate", "side-door", "lobby-a"])
    if extra_card is not None:
        acl.people["p-new"] = Person("p-new", "New Resident", building="A", group_ids=("residents-a",))
        acl.credentials[(CredentialKind.CARD, extra_card)] = Credential(
            CredentialKind.CARD, extra_card, "p-new"
        )
        acl.validate()
    return acl


def decide(gw: Gateway, card: str, reader: str = "lobby-a-in") -> Reason:
    """A decision without side effects (no anti-passback, no event)."""
    engine = gw.engine
    assert engine is not None
    req = AccessRequest(reader, CredentialKind.CARD, card, gw.clock.now())
    return evaluate(req, gw.site, engine.acl, engine.state, gw.clock.monotonic(), engine.tz).reason


def correlation(msg: mqtt.MQTTMessage) -> bytes | None:
    value: bytes | None = getattr(msg.properties, "CorrelationData", None)
    return value


def stored_events(gw: Gateway, kind: str) -> list[dict[str, Any]]:
    assert gw.events is not None
    gw.events.flush()
    with sqlite3.connect(gw.db_path) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE type = ? ORDER BY seq", (kind,)).fetchall()
    return [json.loads(p) for (p,) in rows]


@dataclass(frozen=True)
class Fingerprint:
    version: int
    counts: dict[str, int]
    stored_version: int
    stored_counts: dict[str, int]
    state: list[tuple[str, str]]
    zhang: Reason
    li: Reason

    @classmethod
    def of(cls, gw: Gateway) -> Fingerprint:
        assert gw.engine is not None
        db = open_db(gw.db_path)
        try:
            stored = load_access_list(db)
            state = [(k, v) for k, v in db.conn.execute("SELECT key, value FROM state ORDER BY key")]
        finally:
            db.close()
        return cls(
            gw.engine.acl.version,
            gw.engine.acl.counts(),
            stored.version,
            stored.counts(),
            state,
            decide(gw, ZHANG_CARD),
            decide(gw, LI_CARD),
        )


class Rig:
    """A started gateway with a Downlink on an MqttLink, and the cloud as a paho probe."""

    def __init__(self, gw: Gateway, downlink: Downlink, link: MqttLink, cloud: Probe) -> None:
        self.gw = gw
        self.downlink = downlink
        self.link = link
        self.cloud = cloud

    def up(self, topic: str) -> list[mqtt.MQTTMessage]:
        with self.cloud.cond:
            return [m for m in self.cloud.messages if m.topic == topic]

    def errors(self) -> list[ErrorReport]:
        return [ErrorReport.model_validate_json(m.payload) for m in self.up(TOPICS.errors)]

    def requests(self) -> list[SnapshotRequest]:
        return [SnapshotRequest.model_validate_json(m.payload) for m in self.up(TOPICS.acl_request)]

    def states(self) -> list[AclState]:
        return [AclState.model_validate_json(m.payload) for m in self.up(TOPICS.acl_state)]

    def send(self, topic: str, payload: bytes, **props: Any) -> None:
        properties = None
        if props:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            for name, value in props.items():
                setattr(properties, name, value)
        info = self.cloud.client.publish(topic, payload, qos=1, properties=properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS

    def send_snapshot(self, chunks: list[SnapshotChunk]) -> None:
        for chunk in chunks:
            self.send(TOPICS.snapshot, chunk.model_dump_json().encode())

    def send_delta(self, delta: Delta) -> None:
        self.send(TOPICS.delta, delta.model_dump_json(by_alias=True).encode())

    async def applied(self, version: int) -> None:
        await eventually(
            lambda: self.gw.engine is not None and self.gw.engine.acl.version == version, what=f"v{version}"
        )
        await eventually(lambda: any(s.version == version for s in self.states()), what=f"AclState {version}")

    async def refused(self, error: str, before: int) -> ErrorReport:
        await eventually(lambda: len(self.errors()) > before, what=f"ErrorReport {error}")
        await drain(self.gw)
        report = self.errors()[before]
        assert report.error == error, report
        return report


@pytest.fixture
async def rig(tmp_path: Path, broker: LocalBroker, make_probe: ProbeFactory) -> AsyncIterator[Rig]:
    cfg = demo_config(tmp_path / "gw")
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    await gw.replace_access_list(acl_version(1))
    cloud = make_probe("cloud")
    cloud.connect(broker.host, broker.port)
    assert cloud.wait_connected()
    cloud.subscribe(f"{TOPICS.base}/#")
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
    link.start()
    r = Rig(gw, holder["dl"], link, cloud)
    # The retained AclState is published after the SUBSCRIBE on the same connection: once the cloud sees it,
    # the gateway's subscriptions are in place.
    await eventually(lambda: any(s.version == 1 for s in r.states()), what="initial AclState")
    yield r
    await asyncio.to_thread(link.stop)
    await gw.stop()


def snapshot_of(acl: AccessList, *, site: str = SITE, chunk_bytes: int = 200) -> list[SnapshotChunk]:
    return encode_snapshot(AccessListDocument.of(acl, site), chunk_bytes=chunk_bytes)


def command(kind: str, *, cid: str | None = None, ttl: float = 30, issued: float = 0, **fields: Any) -> bytes:
    now = datetime.now(UTC)
    body = {
        "command": kind,
        "id": cid or uuid.uuid4().hex,
        "operator": "ops@cloud",
        "reason": "test",
        "issued_at": iso(now + timedelta(seconds=issued)),
        "expires_at": iso(now + timedelta(seconds=ttl)),
        **fields,
    }
    return json.dumps({"cmd": body}).encode()


# --- snapshots -----------------------------------------------------------------------------------------------


async def test_a_full_snapshot_applies_atomically_and_the_version_is_published(
    rig: Rig, broker: LocalBroker, make_probe: ProbeFactory
) -> None:
    chunks = snapshot_of(acl_version(2, extra_card=NEW_CARD))
    assert len(chunks) > 2, "the test needs a multi-chunk snapshot"
    assert decide(rig.gw, NEW_CARD) is Reason.UNKNOWN_CREDENTIAL
    random.Random(1).shuffle(chunks)  # order of arrival does not matter, the index does
    rig.send_snapshot(chunks)
    await rig.applied(2)
    assert decide(rig.gw, NEW_CARD) is Reason.GRANTED
    fp = Fingerprint.of(rig.gw)
    assert fp.stored_version == 2 and fp.stored_counts == fp.counts
    assert [e["version"] for e in stored_events(rig.gw, "access_list")] == [2]
    late = make_probe("late-subscriber")  # the version is retained: a backend that connects later sees it
    late.connect(broker.host, broker.port)
    assert late.wait_connected()
    late.subscribe(TOPICS.acl_state)
    assert await asyncio.to_thread(late.wait_messages, 1)
    assert late.messages[0].retain and AclState.model_validate_json(late.messages[0].payload).version == 2
    assert not rig.errors()
    timing = rig.downlink.last_snapshot
    assert timing is not None and timing.version == 2

    # A re-delivered copy of the same snapshot is ignored: nothing is stored twice.
    rig.send_snapshot(snapshot_of(acl_version(2)))
    await asyncio.sleep(0.3)
    await drain(rig.gw)
    assert rig.gw.engine is not None and rig.gw.engine.acl.version == 2
    assert decide(rig.gw, NEW_CARD) is Reason.GRANTED, "the older copy without the new card was not applied"


async def test_an_interrupted_snapshot_keeps_the_old_list_and_the_next_one_applies(rig: Rig) -> None:
    before = Fingerprint.of(rig.gw)
    first = snapshot_of(acl_version(2, extra_card=NEW_CARD))
    half = first[: len(first) // 2]
    rig.send_snapshot(half)
    sid = first[0].snapshot_id
    await eventually(
        lambda: rig.downlink.assembler.in_progress.get(sid, (0, 0, 0))[1] == len(half), what="half assembled"
    )
    await drain(rig.gw)
    assert Fingerprint.of(rig.gw) == before, "half a snapshot changes nothing"

    rig.send_snapshot(snapshot_of(acl_version(3, extra_card="88888")))
    await rig.applied(3)
    assert decide(rig.gw, "88888") is Reason.GRANTED
    assert decide(rig.gw, NEW_CARD) is Reason.UNKNOWN_CREDENTIAL
    assert rig.downlink.assembler.in_progress == {}, "the abandoned snapshot was superseded and dropped"
    assert not rig.errors()


async def test_a_snapshot_that_stops_arriving_is_abandoned_and_a_new_one_requested(rig: Rig) -> None:
    rig.downlink.assembler.timeout = 0.3
    chunks = snapshot_of(acl_version(2))
    rig.send_snapshot(chunks[:1])
    await eventually(lambda: any(r.reason == "incomplete" for r in rig.requests()), what="incomplete request")
    assert rig.downlink.assembler.in_progress == {}
    assert rig.gw.engine is not None and rig.gw.engine.acl.version == 1
    # The late remainder of the abandoned snapshot cannot complete it; a fresh full one applies.
    rig.send_snapshot(snapshot_of(acl_version(2, extra_card=NEW_CARD)))
    await rig.applied(2)
    assert decide(rig.gw, NEW_CARD) is Reason.GRANTED


async def test_a_resync_applies_the_next_snapshot_even_at_the_same_version(rig: Rig) -> None:
    rig.send_snapshot(snapshot_of(acl_version(1, extra_card=NEW_CARD)))  # same version: a re-delivery
    await asyncio.sleep(0.3)
    await drain(rig.gw)
    assert decide(rig.gw, NEW_CARD) is Reason.UNKNOWN_CREDENTIAL
    rig.send(TOPICS.command, command("resync"))
    await eventually(lambda: any(r.reason == "command" for r in rig.requests()), what="resync request")
    rig.send_snapshot(snapshot_of(acl_version(1, extra_card=NEW_CARD)))
    await eventually(lambda: decide(rig.gw, NEW_CARD) is Reason.GRANTED, what="forced snapshot applied")


# --- malformed input on every down topic ----------------------------------------------------------------------


def _chunk_json(chunk: SnapshotChunk, **changes: Any) -> bytes:
    return chunk.model_copy(update=changes).model_dump_json().encode()


def _bad_total(acl: AccessList) -> list[bytes]:
    chunks = snapshot_of(acl)
    return [_chunk_json(c, total_sha256="0" * 64) for c in chunks]


def _bad_gzip() -> list[bytes]:
    blob = b"this is not gzip at all"
    return [
        SnapshotChunk(
            snapshot_id="nogzip",
            version=5,
            index=0,
            count=1,
            sha256=sha256_hex(blob),
            total_sha256=sha256_hex(blob),
            data=base64.b64encode(blob).decode(),
        )
        .model_dump_json()
        .encode()
    ]


def _doc_chunks(doc: bytes, version: int = 5) -> list[bytes]:
    blob = gzip.compress(doc)
    return [
        SnapshotChunk(
            snapshot_id=uuid.uuid4().hex,
            version=version,
            index=0,
            count=1,
            sha256=sha256_hex(blob),
            total_sha256=sha256_hex(blob),
            data=base64.b64encode(blob).decode(),
        )
        .model_dump_json()
        .encode()
    ]


def _unknown_person_snapshot() -> list[bytes]:
    doc = json.loads(AccessListDocument.of(acl_version(5), SITE).model_dump_json())
    doc["credentials"].append({"kind": "card", "value": "1", "person": "p-nobody"})
    return _doc_chunks(json.dumps(doc).encode())


MALFORMED: dict[str, tuple[str, Callable[[], list[bytes]], str]] = {
    "snapshot not json": (TOPICS.snapshot, lambda: [b"{not json"], "not_json"),
    "snapshot chunk schema": (TOPICS.snapshot, lambda: [b'{"snapshot_id": "x", "version": 0}'], "schema"),
    "snapshot chunk extra key": (
        TOPICS.snapshot,
        lambda: [_chunk_json(snapshot_of(acl_version(5))[0]).replace(b"{", b'{"surprise": 1, ', 1)],
        "schema",
    ),
    "snapshot bad chunk sha": (
        TOPICS.snapshot,
        lambda: [_chunk_json(snapshot_of(acl_version(5))[0], sha256="0" * 64)],
        "bad_sha",
    ),
    "snapshot bad total sha": (TOPICS.snapshot, lambda: _bad_total(acl_version(5)), "bad_sha"),
    "snapshot not gzip": (TOPICS.snapshot, _bad_gzip, "rejected"),
    "snapshot document schema": (
        TOPICS.snapshot,
        lambda: _doc_chunks(b'{"version": 5, "site": 7}'),
        "schema",
    ),
    "snapshot document not json": (TOPICS.snapshot, lambda: _doc_chunks(b"\xff\xfe garbage"), "not_json"),
    "snapshot card of nobody": (TOPICS.snapshot, _unknown_person_snapshot, "rejected"),
    "snapshot wrong site": (
        TOPICS.snapshot,
        lambda: [c.model_dump_json().encode() for c in snapshot_of(acl_version(5), site="other-site")],
        "wrong_site",
    ),
    "snapshot huge": (TOPICS.snapshot, lambda: [b"x" * (MAX_PAYLOAD + 1)], "too_large"),
    "delta not json": (TOPICS.delta, lambda: [b"\x00\x01\x02"], "not_json"),
    "delta schema": (
        TOPICS.delta,
        lambda: [b'{"from_version": 1, "to_version": 2, "ops": [{"op": "boom"}]}'],
        "schema",
    ),
    "delta backwards": (TOPICS.delta, lambda: [b'{"from_version": 3, "to_version": 2, "ops": []}'], "schema"),
    "delta huge": (TOPICS.delta, lambda: [b"[" * (MAX_PAYLOAD + 1)], "too_large"),
    "command not json": (TOPICS.command, lambda: [b"open the door please"], "not_json"),
    "command schema": (TOPICS.command, lambda: [command("open_door")], "schema"),  # no door
    "command unknown": (TOPICS.command, lambda: [command("self_destruct")], "unknown_command"),
    "command huge": (TOPICS.command, lambda: [command("ping", pad="x" * MAX_PAYLOAD)], "too_large"),
    "foreign topic": (f"menwei/v1/{SITE}/other-gw/cmd", lambda: [command("ping")], "wrong_site"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_input_is_refused_reported_and_changes_nothing(
    rig: Rig, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic, payloads, error = MALFORMED[case]
    before = Fingerprint.of(rig.gw)
    if topic not in TOPICS.down():
        rig.downlink.handle(Incoming(topic, payloads()[0], 1, False, None, None, ()))  # not subscribed to
    else:
        for payload in payloads():
            rig.send(topic, payload, ResponseTopic=f"{TOPICS.base}/cmd/reply/test", CorrelationData=b"c-1")
    report = await rig.refused(error, 0)
    assert report.topic == topic
    assert Fingerprint.of(rig.gw) == before
    events = stored_events(rig.gw, "sync_error")
    assert [(e["topic"], e["error"]) for e in events] == [(topic, error)]
    warnings = [r for r in caplog.records if r.name == "cloud_sync.downlink" and r.levelname == "WARNING"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "refused" in warnings[0].getMessage()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    if topic == TOPICS.command:  # the requester is answered, on its response topic
        await eventually(lambda: bool(rig.up(f"{TOPICS.base}/cmd/reply/test")), what="reply")
        reply_msg = rig.up(f"{TOPICS.base}/cmd/reply/test")[0]
        reply = CommandReply.model_validate_json(reply_msg.payload)
        assert not reply.ok and reply.error == "invalid"
        assert correlation(reply_msg) == b"c-1"
    # The gateway keeps going: a good delta still applies.
    rig.send_delta(
        Delta(
            from_version=1,
            to_version=2,
            ops=[RevokeCredential(op="revoke_credential", kind=CredentialKind.CARD, value=LI_CARD)],
        )
    )
    await rig.applied(2)


async def test_refusal_details_carry_no_payload_values(rig: Rig) -> None:
    secret = "p-SECRET-NAME-" + "z" * 300  # too long an id: refused, and not echoed
    doc = json.loads(AccessListDocument.of(acl_version(5), SITE).model_dump_json())
    doc["people"][0]["id"] = secret
    rig.send(TOPICS.snapshot, _doc_chunks(json.dumps(doc).encode())[0])
    report = await rig.refused("schema", 0)
    assert "SECRET" not in report.detail and "people.0.id" in report.detail
    assert "SECRET" not in json.dumps(stored_events(rig.gw, "sync_error"))


# --- deltas --------------------------------------------------------------------------------------------------


def revoke(card: str) -> RevokeCredential:
    return RevokeCredential(op="revoke_credential", kind=CredentialKind.CARD, value=card)


def grant(card: str, person: str) -> UpsertCredential:
    return UpsertCredential(
        op="upsert_credential", credential=WireCredential(kind=CredentialKind.CARD, value=card, person=person)
    )


async def test_deltas_apply_in_order_and_redeliveries_are_ignored(rig: Rig) -> None:
    assert decide(rig.gw, LI_CARD) is Reason.GRANTED
    d2 = Delta(from_version=1, to_version=2, ops=[revoke(LI_CARD)])
    newcomer = UpsertPerson(
        op="upsert_person", person=WirePerson(id="p-new", name="New", groups=["residents-a"])
    )
    d3 = Delta(from_version=2, to_version=3, ops=[grant(NEW_CARD, "p-new"), newcomer])  # child before parent
    rig.send_delta(d2)
    rig.send_delta(d3)
    await rig.applied(3)
    assert decide(rig.gw, LI_CARD) is Reason.CREDENTIAL_REVOKED
    assert decide(rig.gw, NEW_CARD) is Reason.GRANTED
    fp = Fingerprint.of(rig.gw)
    assert (fp.stored_version, fp.stored_counts) == (3, fp.counts), "disk and memory agree"
    assert rig.gw.engine is not None
    rig.gw.engine.acl.validate()

    rig.send_delta(d2)  # QoS 1 re-delivery, or the cloud repeating itself
    rig.send_delta(d3)
    await asyncio.sleep(0.3)
    await drain(rig.gw)
    assert Fingerprint.of(rig.gw) == fp
    assert not rig.errors() and not rig.requests()
    assert [e["version"] for e in stored_events(rig.gw, "access_list")] == [2, 3]


async def test_a_gap_or_a_mismatch_asks_for_a_snapshot(rig: Rig) -> None:
    before = Fingerprint.of(rig.gw)
    rig.send_delta(Delta(from_version=4, to_version=5, ops=[revoke(ZHANG_CARD)]))
    await eventually(lambda: len(rig.requests()) == 1, what="gap request")
    request = rig.requests()[0]
    assert (request.reason, request.have_version) == ("gap", 1)
    await drain(rig.gw)
    assert Fingerprint.of(rig.gw) == before
    assert not rig.errors(), "a gap is not an error of the message"

    rig.downlink._last_request = None  # the rate limit is tested in the unit tests
    rig.send_delta(Delta(from_version=0, to_version=2, ops=[revoke(ZHANG_CARD)]))
    await eventually(lambda: len(rig.requests()) == 2, what="mismatch request")
    assert rig.requests()[1].reason == "mismatch"
    assert Fingerprint.of(rig.gw) == before


async def test_revocations_in_a_delta_apply_before_grants_whatever_the_order_sent(rig: Rig) -> None:
    # Li's card goes to Zhang. Sent grant-first: applied in that order, the revocation would win.
    rig.send_delta(Delta(from_version=1, to_version=2, ops=[grant(LI_CARD, "p-zhang"), revoke(LI_CARD)]))
    await rig.applied(2)
    assert rig.gw.engine is not None
    cred = rig.gw.engine.acl.credentials[(CredentialKind.CARD, LI_CARD)]
    assert (cred.person_id, cred.status) == ("p-zhang", Status.ACTIVE)
    assert decide(rig.gw, LI_CARD) is Reason.GRANTED
    db = open_db(rig.gw.db_path)
    try:
        stored = load_access_list(db).credentials[(CredentialKind.CARD, LI_CARD)]
    finally:
        db.close()
    assert stored == cred


async def test_a_delta_referring_to_nobody_is_refused_whole(rig: Rig) -> None:
    before = Fingerprint.of(rig.gw)
    rig.send_delta(Delta(from_version=1, to_version=2, ops=[revoke(ZHANG_CARD), grant(NEW_CARD, "p-nobody")]))
    report = await rig.refused("rejected", 0)
    assert "p-nobody" in report.detail
    assert Fingerprint.of(rig.gw) == before, "the revocation in the same delta was rolled back too"
    await eventually(lambda: any(r.reason == "mismatch" for r in rig.requests()), what="resync request")


async def test_deleting_a_person_takes_their_cards_along(rig: Rig) -> None:
    rig.send_delta(
        Delta.model_validate(
            {"from_version": 1, "to_version": 2, "ops": [{"op": "delete_person", "id": "p-li"}]}
        )
    )
    await rig.applied(2)
    assert decide(rig.gw, LI_CARD) is Reason.UNKNOWN_CREDENTIAL
    assert rig.gw.engine is not None
    rig.gw.engine.acl.validate()
    fp = Fingerprint.of(rig.gw)
    assert fp.stored_counts == fp.counts


# --- commands ------------------------------------------------------------------------------------------------


async def _ask(rig: Rig, payload: bytes) -> CommandReply:
    reply_topic = f"{TOPICS.base}/cmd/reply/ops"
    seen = len(rig.up(reply_topic))
    corr = uuid.uuid4().bytes
    rig.send(
        TOPICS.command, payload, ResponseTopic=reply_topic, CorrelationData=corr, MessageExpiryInterval=30
    )
    await eventually(lambda: len(rig.up(reply_topic)) > seen, what="command reply")
    msg = rig.up(reply_topic)[seen]
    assert correlation(msg) == corr
    return CommandReply.model_validate_json(msg.payload)


async def test_open_door_releases_the_door_and_is_audited(rig: Rig) -> None:
    controller = rig.gw.devices.controllers["sim-1"]
    assert isinstance(controller, SimulatedDoorController)
    payload = command("open_door", cid="c-open-1", door="lobby-a", reason="courier at the lobby")
    reply = await _ask(rig, payload)
    assert (reply.id, reply.ok, reply.error) == ("c-open-1", True, None)
    await eventually(lambda: controller.outputs[3], what="lobby relay released (output 3, fail-secure)")
    opened = stored_events(rig.gw, "remote_open")
    assert [(e["door"], e["by"], e["reason"]) for e in opened] == [
        ("lobby-a", "ops@cloud", "courier at the lobby")
    ]
    audit = stored_events(rig.gw, "command")
    assert [(e["command_id"], e["ok"]) for e in audit] == [("c-open-1", True)]


async def test_set_mode_lockdown_and_back(rig: Rig) -> None:
    assert decide(rig.gw, ZHANG_CARD) is Reason.GRANTED
    reply = await _ask(rig, command("set_mode", mode="lockdown", reason="drill"))
    assert reply.ok
    assert decide(rig.gw, ZHANG_CARD) is Reason.LOCKDOWN
    refused = await _ask(rig, command("open_door", door="lobby-a"))
    assert (refused.ok, refused.error) == (False, "failed"), "no remote open during a lockdown"
    reply = await _ask(rig, command("set_mode", mode="normal", reason="drill over"))
    assert reply.ok
    assert decide(rig.gw, ZHANG_CARD) is Reason.GRANTED
    door = await _ask(rig, command("set_mode", door="side-door", mode="locked"))
    assert door.ok
    assert decide(rig.gw, ZHANG_CARD, "side-door-in") is Reason.DOOR_LOCKED
    modes = [(e["mode"], e["door"], e["by"]) for e in stored_events(rig.gw, "mode")]
    assert modes[-3:] == [
        ("lockdown", None, "ops@cloud"),
        ("normal", None, "ops@cloud"),
        ("locked", "side-door", "ops@cloud"),
    ]


async def test_ping_replies_with_time_and_versions(rig: Rig) -> None:
    reply = await _ask(rig, command("ping", cid="c-ping"))
    assert reply.ok and reply.id == "c-ping"
    assert reply.result["acl_version"] == 1
    assert abs(datetime.fromisoformat(reply.result["time"]) - datetime.now(UTC)) < timedelta(seconds=30)
    assert reply.result["software"]


async def test_unknown_door_expired_and_replayed_commands_are_refused(rig: Rig) -> None:
    unknown = await _ask(rig, command("open_door", door="vault"))
    assert (unknown.ok, unknown.error) == (False, "unknown_door")
    expired = await _ask(rig, command("open_door", door="lobby-a", issued=-120, ttl=-60))
    assert (expired.ok, expired.error) == (False, "expired")
    future = await _ask(rig, command("ping", issued=3600, ttl=3660))
    assert (future.ok, future.error) == (False, "invalid")
    payload = command("open_door", cid="c-once", door="lobby-a")
    assert (await _ask(rig, payload)).ok
    replayed = await _ask(rig, payload)
    assert (replayed.ok, replayed.error) == (False, "replayed")
    audit = [(e["ok"], e["error"]) for e in stored_events(rig.gw, "command")]
    assert audit == [
        (False, "unknown_door"),
        (False, "expired"),
        (False, "invalid"),
        (True, None),
        (False, "replayed"),
    ]
    assert len(stored_events(rig.gw, "remote_open")) == 1


async def test_a_reply_without_response_topic_goes_to_the_default_topic(rig: Rig) -> None:
    rig.send(TOPICS.command, command("ping", cid="c-default"), CorrelationData=b"k")
    await eventually(lambda: bool(rig.up(TOPICS.command_reply)), what="default reply")
    msg = rig.up(TOPICS.command_reply)[0]
    assert CommandReply.model_validate_json(msg.payload).id == "c-default"
    assert correlation(msg) == b"k"


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, **_: Any) -> int:
        self.sent.append((topic, payload))
        return len(self.sent)


async def test_a_replayed_command_is_refused_after_a_restart(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path / "gw")
    payload = command("ping", cid="c-restart", ttl=600)
    msg = Incoming(TOPICS.command, payload, 1, False, None, None, ())
    replies: list[CommandReply] = []
    for _ in range(2):
        gw = Gateway(cfg, build_devices(cfg))
        await gw.start()
        pub = _Recorder()
        dl = Downlink(gw, TOPICS, MqttSection(), pub)
        dl.handle(msg)
        await drain(gw)
        replies += [CommandReply.model_validate_json(p) for t, p in pub.sent if t == TOPICS.command_reply]
        await gw.stop()
    assert [(r.ok, r.error) for r in replies] == [(True, None), (False, "replayed")]


async def test_a_gateway_without_a_list_asks_for_one_on_connect(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path / "gw")
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    try:
        pub = _Recorder()
        Downlink(gw, TOPICS, MqttSection(), pub).on_connection(True)
        topics = [t for t, _ in pub.sent]
        assert topics == [TOPICS.acl_state, TOPICS.acl_request]
        assert SnapshotRequest.model_validate_json(pub.sent[1][1]).reason == "startup"
        assert AclState.model_validate_json(pub.sent[0][1]).version == 0
    finally:
        await gw.stop()
