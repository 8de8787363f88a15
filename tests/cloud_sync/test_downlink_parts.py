"""The downlink's parts without a broker: the snapshot assembler's bounds, delta planning and application (disk
and memory must agree, whatever the ops), the command time and replay checks, the snapshot-request rate limit,
and a property test that no byte string on any down topic makes the downlink fail."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from cloud_sync import delta_apply, downlink
from cloud_sync.commands import (
    MAX_LIFETIME,
    REPLAY_KEY,
    ReplayCache,
    check_time,
    load_replay_cache,
    save_replay_cache,
)
from cloud_sync.downlink import Downlink
from cloud_sync.link import Incoming
from cloud_sync.messages import (
    AccessListDocument,
    Delta,
    Ping,
    SnapshotChunk,
    SnapshotRequest,
)
from cloud_sync.snapshot_assembler import ChunkRefusedError, Decoded, SnapshotAssembler
from cloud_sync.snapshot_codec import chunk_bytes_of, encode_snapshot
from cloud_sync.topics import Topics
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import MqttSection
from edge.demo_data import demo_access_list
from edge.devices import build_devices
from edge.errors import AccessListError
from edge.gateway import Gateway
from edge.model import (
    AccessList,
    AccessRule,
    Credential,
    CredentialKind,
    Group,
    Interval,
    Person,
    Schedule,
    Status,
    VisitorPass,
)
from edge.store.access_store import load_access_list, save_access_list, set_version
from edge.store.db import open_db, transaction
from edge.store.state import put_state
from tests.demo_site import demo_config

ROOT = Path(__file__).resolve().parents[2]
TOPICS = Topics("lotus-garden", "gw-demo")
NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


# --- the assembler -----------------------------------------------------------------------------------------


def chunks_of(version: int, snapshot_id: str, chunk_bytes: int = 200) -> list[tuple[SnapshotChunk, bytes]]:
    acl = demo_access_list(version, NOW, "side-door", ["main-gate", "side-door", "lobby-a"])
    chunks = encode_snapshot(
        AccessListDocument.of(acl, "s"), chunk_bytes=chunk_bytes, snapshot_id=snapshot_id
    )
    return [(c, chunk_bytes_of(c)) for c in chunks]


def test_a_snapshot_completes_with_its_last_chunk_in_any_order() -> None:
    asm = SnapshotAssembler()
    parts = chunks_of(2, "a")
    assert len(parts) >= 3
    order = [*parts[1:], parts[0]]
    for chunk, data in order[:-1]:
        assert asm.add(chunk, data, 0.0) == (None, [])
    asm.add(*order[0], 0.0)  # a QoS 1 re-delivery of a chunk already held changes nothing
    done, dropped = asm.add(*order[-1], 0.0)
    assert done is not None and not dropped
    assert done.parts == [data for _, data in parts] and done.version == 2
    assert asm.in_progress == {} and asm.held_bytes == 0


def test_a_third_snapshot_drops_the_oldest_and_old_ones_are_superseded() -> None:
    asm = SnapshotAssembler()
    asm.add(*chunks_of(2, "a")[0], 1.0)
    asm.add(*chunks_of(3, "b")[0], 2.0)
    _, dropped = asm.add(*chunks_of(4, "c")[0], 3.0)
    assert dropped == ["a"] and set(asm.in_progress) == {"b", "c"}
    assert asm.drop_superseded(3) == ["b"]
    assert set(asm.in_progress) == {"c"}


def test_incomplete_snapshots_expire() -> None:
    asm = SnapshotAssembler(timeout=10.0)
    asm.add(*chunks_of(2, "a")[0], 100.0)
    assert asm.next_deadline() == 110.0
    assert asm.expire(105.0) == []
    assert asm.expire(110.0) == ["a"]
    assert asm.next_deadline() is None


def test_contradicting_chunks_drop_their_snapshot() -> None:
    asm = SnapshotAssembler()
    (first, data), (second, data2), *_ = chunks_of(2, "a")
    asm.add(first, data, 0.0)
    with pytest.raises(ChunkRefusedError) as err:
        asm.add(second.model_copy(update={"version": 9}), data2, 0.0)
    assert err.value.error == "rejected" and asm.in_progress == {}
    asm.add(first, data, 0.0)
    with pytest.raises(ChunkRefusedError):
        asm.add(first, data + b"x", 0.0)  # the same index again, different bytes
    with pytest.raises(ChunkRefusedError):
        asm.add(first.model_copy(update={"index": first.count}), data, 0.0)


def test_the_byte_bound_holds() -> None:
    asm = SnapshotAssembler(max_bytes=300)
    parts = chunks_of(2, "a", chunk_bytes=200)
    asm.add(*parts[0], 0.0)
    with pytest.raises(ChunkRefusedError) as err:
        asm.add(*parts[1], 0.0)
    assert err.value.error == "too_large" and asm.held_bytes == 0


# --- deltas: plan, resolve, write, update --------------------------------------------------------------------


def base_list() -> AccessList:
    always = Schedule("s1", weekly=((Interval.parse("00:00-24:00"),),) * 7)
    return AccessList.build(
        version=1,
        people=[Person(f"p{i}", f"P{i}", group_ids=("g1",)) for i in range(1, 4)],
        groups=[Group("g1"), Group("g2")],
        schedules=[always],
        rules=[AccessRule("r1", "g1", ("d1",)), AccessRule("r2", "g2", ("d1", "d2"), "s1")],
        credentials=[Credential(CredentialKind.CARD, f"c{i}", f"p{i}") for i in range(1, 4)],
        passes=[VisitorPass("v1", ("d1",), NOW, NOW + timedelta(hours=1))],
        holidays=[date(2026, 1, 1)],
    )


def delta(*ops: dict[str, Any]) -> Delta:
    return Delta.model_validate({"from_version": 1, "to_version": 2, "ops": list(ops)})


def test_plan_puts_revocations_first_and_parents_before_children() -> None:
    d = delta(
        {"op": "upsert_credential", "credential": {"kind": "card", "value": "c9", "person": "p9"}},
        {"op": "upsert_person", "person": {"id": "p9", "name": "N", "groups": ["g9"]}},
        {"op": "revoke_credential", "kind": "card", "value": "c1"},
        {"op": "upsert_group", "group": {"id": "g9"}},
        {"op": "delete_rule", "id": "r2"},
    )
    kinds = [type(s).__name__ for s in delta_apply.plan(d)]
    assert kinds == ["RevokeCredentialStep", "RemoveRule", "Group", "Person", "Credential"]
    actions = delta_apply.resolve(base_list(), delta_apply.plan(d))
    assert len(actions) == 5


def test_a_revocation_marks_and_a_later_grant_reassigns() -> None:
    acl = base_list()
    d = delta(
        {"op": "upsert_credential", "credential": {"kind": "card", "value": "c1", "person": "p2"}},
        {"op": "revoke_credential", "kind": "card", "value": "c1"},
        {"op": "revoke_credential", "kind": "card", "value": "c2"},
        {"op": "revoke_credential", "kind": "card", "value": "unknown"},
        {"op": "revoke_pass", "id": "v1"},
    )
    delta_apply.update(acl, delta_apply.resolve(acl, delta_apply.plan(d)))
    c1, c2 = acl.credentials[(CredentialKind.CARD, "c1")], acl.credentials[(CredentialKind.CARD, "c2")]
    assert (c1.person_id, c1.status) == ("p2", Status.ACTIVE)
    assert c2.status is Status.REVOKED
    assert acl.passes["v1"].status is Status.REVOKED
    assert (CredentialKind.CARD, "unknown") not in acl.credentials


@pytest.mark.parametrize(
    "op",
    [
        {"op": "upsert_credential", "credential": {"kind": "card", "value": "c9", "person": "nobody"}},
        {"op": "upsert_person", "person": {"id": "p9", "name": "N", "groups": ["g-none"]}},
        {"op": "upsert_rule", "rule": {"id": "r9", "group": "g-none", "doors": ["d1"]}},
        {"op": "upsert_rule", "rule": {"id": "r9", "group": "g1", "doors": ["d1"], "schedule": "s-none"}},
    ],
)
def test_a_grant_referring_to_nothing_refuses_the_delta(op: dict[str, Any]) -> None:
    with pytest.raises(AccessListError):
        delta_apply.resolve(base_list(), delta_apply.plan(delta(op)))


def test_a_card_of_a_person_deleted_in_the_same_delta_is_refused() -> None:
    d = delta(
        {"op": "upsert_credential", "credential": {"kind": "card", "value": "c9", "person": "p1"}},
        {"op": "delete_person", "id": "p1"},
    )
    with pytest.raises(AccessListError):
        delta_apply.resolve(base_list(), delta_apply.plan(d))


IDS = st.sampled_from(["p1", "p2", "p3", "p4"])
CARDS = st.sampled_from(["c1", "c2", "c3", "c4"])
GROUPS = st.sampled_from(["g1", "g2", "g3"])
OPS = st.one_of(
    st.builds(lambda p: {"op": "delete_person", "id": p}, IDS),
    st.builds(lambda c: {"op": "revoke_credential", "kind": "card", "value": c}, CARDS),
    st.builds(lambda v: {"op": "revoke_pass", "id": v}, st.sampled_from(["v1", "v2"])),
    st.builds(lambda r: {"op": "delete_rule", "id": r}, st.sampled_from(["r1", "r2", "r3"])),
    st.builds(lambda g: {"op": "upsert_group", "group": {"id": g, "name": g.upper()}}, GROUPS),
    st.builds(
        lambda p, gs: {"op": "upsert_person", "person": {"id": p, "name": p, "groups": gs}},
        IDS,
        st.lists(GROUPS, max_size=2, unique=True),
    ),
    st.builds(
        lambda c, p, s: {
            "op": "upsert_credential",
            "credential": {"kind": "card", "value": c, "person": p, "status": s},
        },
        CARDS,
        IDS,
        st.sampled_from(["active", "disabled"]),
    ),
    st.builds(
        lambda r, g, s: {"op": "upsert_rule", "rule": {"id": r, "group": g, "doors": ["d1"], "schedule": s}},
        st.sampled_from(["r1", "r3"]),
        GROUPS,
        st.sampled_from([None, "s1", "s2"]),
    ),
    st.builds(
        lambda s: {"op": "upsert_schedule", "schedule": {"id": s, "weekly": [["08:00-18:00"]] * 7}},
        st.sampled_from(["s1", "s2"]),
    ),
    st.builds(
        lambda v: {
            "op": "upsert_pass",
            "pass": {
                "id": v,
                "doors": ["d2"],
                "valid_from": "2026-01-01T00:00:00Z",
                "valid_until": "2026-01-02T00:00:00Z",
            },
        },
        st.sampled_from(["v1", "v2"]),
    ),
    st.builds(lambda ds: {"op": "set_holidays", "holidays": ds}, st.lists(st.dates(), max_size=2)),
)


def same(a: AccessList, b: AccessList) -> bool:
    """Equal lists; the rule index compared as sets (its order follows storage order, which does not matter)."""

    def index(acl: AccessList) -> dict[tuple[str, str], frozenset[str | None]]:
        return {key: frozenset(acl.schedules_for(*key)) for key in acl._grants}

    fields = ("version", "people", "groups", "schedules", "rules", "credentials", "passes", "holidays")
    return all(getattr(a, f) == getattr(b, f) for f in fields) and index(a) == index(b)


def _fresh_store() -> sqlite_utils.Database:
    db = open_db(":memory:")
    save_access_list(db, base_list())
    return db


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=1, max_size=8))
def test_disk_and_memory_agree_after_any_delta(ops: list[dict[str, Any]]) -> None:
    db = _fresh_store()
    acl = base_list()
    d = delta(*ops)
    try:
        actions: list[delta_apply.Action] = []
        with transaction(db):
            actions.extend(delta_apply.resolve(acl, delta_apply.plan(d)))
            delta_apply.write(db, actions)
            set_version(db, 2)
    except AccessListError:
        assert same(load_access_list(db), base_list()), "a refused delta leaves the store as it was"
        return
    delta_apply.update(acl, actions)
    acl.version = 2
    acl.validate()
    assert same(load_access_list(db), acl)
    # Revocations first: a card revoked and not granted again in this delta cannot be active.
    granted_again = {o["credential"]["value"] for o in ops if o["op"] == "upsert_credential"}
    for o in ops:
        if o["op"] == "revoke_credential" and o["value"] not in granted_again:
            cred = acl.credentials.get((CredentialKind.CARD, o["value"]))
            assert cred is None or cred.status is Status.REVOKED


# --- commands: time and replay ------------------------------------------------------------------------------


def ping(issued: timedelta, ttl: timedelta) -> Ping:
    return Ping(command="ping", id="c", operator="o", issued_at=NOW + issued, expires_at=NOW + issued + ttl)


@pytest.mark.parametrize(
    ("issued", "ttl", "verdict"),
    [
        (timedelta(0), timedelta(seconds=30), None),
        (timedelta(seconds=-90), timedelta(seconds=60), None),  # expired 30 s ago: within the 30 s skew
        (timedelta(seconds=-120), timedelta(seconds=60), "expired"),
        (timedelta(seconds=20), timedelta(seconds=30), None),  # our clock is a little behind
        (timedelta(seconds=40), timedelta(seconds=30), "invalid"),
        (timedelta(0), timedelta(seconds=-1), "invalid"),
        (timedelta(0), MAX_LIFETIME + timedelta(seconds=31), "invalid"),
    ],
)
def test_command_times(issued: timedelta, ttl: timedelta, verdict: str | None) -> None:
    result = check_time(ping(issued, ttl), NOW, 30.0)
    assert (result[0] if result else None) == verdict


def test_the_replay_cache_remembers_until_expiry_and_refuses_when_full() -> None:
    cache = ReplayCache(capacity=2)
    assert cache.add("a", NOW + timedelta(seconds=10), NOW)
    assert cache.add("b", NOW + timedelta(seconds=20), NOW)
    assert "a" in cache
    assert not cache.add("c", NOW + timedelta(seconds=30), NOW), "full of live ids: refuse, never forget"
    assert cache.add("c", NOW + timedelta(seconds=30), NOW + timedelta(seconds=15)), "a expired and made room"
    assert "a" not in cache and len(cache) == 2
    again = ReplayCache.from_state(cache.to_state())
    assert "b" in again and "c" in again


def test_the_replay_cache_survives_in_the_store_and_damage_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    cache = ReplayCache()
    cache.add("cmd-1", NOW + timedelta(minutes=5), NOW)
    save_replay_cache(path, "normal", cache.to_state())
    assert "cmd-1" in load_replay_cache(path, "normal")
    db = open_db(path)
    try:
        put_state(
            db,
            REPLAY_KEY,
            {
                "ok": (NOW + timedelta(minutes=1)).isoformat(),
                "bad": "yesterday",
                "naive": "2026-01-01T00:00:00",
            },
        )
    finally:
        db.close()
    loaded = load_replay_cache(path, "normal")
    assert "ok" in loaded and len(loaded) == 1
    assert len(ReplayCache.from_state(["not", "a", "mapping"])) == 0


# --- the Downlink on a gateway, without a broker ------------------------------------------------------------


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bool]] = []

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, **_: Any) -> int:
        self.sent.append((topic, payload, retain))
        return len(self.sent)

    def on(self, topic: str) -> list[bytes]:
        return [p for t, p, _ in self.sent if t == topic]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    cfg = demo_config(tmp_path / "gw")
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    await gw.replace_access_list(demo_access_list(1, datetime.now(UTC), "side-door", list(gw.site.doors)))
    yield gw
    await gw.stop()


async def drain(gw: Gateway) -> None:
    for _ in range(1000):
        pending = [
            t
            for t in gw._tasks
            if getattr(t.get_coro(), "__qualname__", "").startswith("Downlink.") and not t.done()
        ]
        if not pending:
            return
        await asyncio.wait(pending, timeout=10)
    pytest.fail("downlink tasks did not finish")


async def test_snapshot_requests_are_rate_limited_except_on_command(gateway: Gateway) -> None:
    pub = FakePublisher()
    dl = Downlink(gateway, TOPICS, MqttSection(), pub)
    assert dl.request_snapshot("gap")
    assert not dl.request_snapshot("gap")
    assert not dl.request_snapshot("incomplete")
    assert dl.request_snapshot("command")
    reasons = [SnapshotRequest.model_validate_json(p).reason for p in pub.on(TOPICS.acl_request)]
    assert reasons == ["gap", "command"]


async def test_a_list_no_longer_in_force_is_emptied_off_the_loop(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    drained: list[int] = []
    monkeypatch.setattr(downlink, "drain", lambda acl: drained.append(acl.version))
    shared = demo_access_list(7, NOW, "side-door", ["main-gate"])
    held: list[object] = [
        demo_access_list(5, NOW, "side-door", ["main-gate"]),
        Decoded("s", demo_access_list(6, NOW, "side-door", ["main-gate"]), 1),
        shared,  # still referenced here: must not be emptied
    ]
    await asyncio.to_thread(downlink._release, held)
    assert sorted(drained) == [5, 6] and not held


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
_NEAR_VALID = st.one_of(
    st.fixed_dictionaries(
        {
            "cmd": st.dictionaries(
                st.sampled_from(
                    ["command", "id", "operator", "door", "mode", "issued_at", "expires_at", "reason"]
                ),
                _JSONISH,
            )
        }
    ),
    st.fixed_dictionaries(
        {
            "from_version": st.integers(-1, 3),
            "to_version": st.integers(-1, 3),
            "ops": st.lists(
                st.dictionaries(
                    st.sampled_from(["op", "id", "kind", "value", "person", "credential"]), _JSONISH
                ),
                max_size=3,
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "snapshot_id": st.text(max_size=5),
            "version": st.integers(-1, 3),
            "index": st.integers(-1, 3),
            "count": st.integers(-1, 3),
            "sha256": st.sampled_from(["0" * 64, "x"]),
            "total_sha256": st.sampled_from(["0" * 64, "x"]),
            "data": st.sampled_from(["", "AAAA", "!!"]),
        }
    ),
)
_PAYLOADS = st.one_of(
    st.binary(max_size=300),
    _JSONISH.map(lambda v: json.dumps(v).encode()),
    _NEAR_VALID.map(lambda v: json.dumps(v).encode()),
    st.binary(min_size=5000, max_size=5000),
)


async def test_no_bytes_on_any_down_topic_make_the_downlink_fail(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    pub = FakePublisher()
    dl = Downlink(gateway, TOPICS, MqttSection(max_payload_bytes=4096), pub)
    seen = 0

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        topic=st.sampled_from([*TOPICS.down(), f"{TOPICS.base}/other", "menwei/v1/x/y/cmd"]),
        payload=_PAYLOADS,
        response=st.none() | st.sampled_from(["", "a/+/b", f"{TOPICS.base}/cmd/reply/x"]),
        correlation=st.none() | st.binary(max_size=8),
    )
    def feed(topic: str, payload: bytes, response: str | None, correlation: bytes | None) -> None:
        nonlocal seen
        dl.handle(Incoming(topic, payload, 1, False, response, correlation, ()))
        seen += 1

    with caplog.at_level(logging.WARNING):
        feed()
        await drain(gateway)
    assert seen >= 300
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a task ended in an exception"
    assert gateway.engine is not None and gateway.engine.acl.version >= 1
    gateway.engine.acl.validate()
