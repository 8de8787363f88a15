"""Snapshot chunks and the gateway's fast snapshot decoder.

The codec (snapshot_codec.py) must refuse anything that does not check out. The fast decoder
(snapshot_assembler.decode_access_list) must accept exactly what the reference model (AccessListDocument)
accepts and build exactly the AccessList it builds: proved here by comparing their JSON Schemas, their results
on hand-picked documents, and their verdicts on random mutations of a valid document."""

from __future__ import annotations

import base64
import copy
import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cloud_sync import snapshot_assembler
from cloud_sync.messages import AccessListDocument, SnapshotChunk
from cloud_sync.snapshot_assembler import (
    DOCUMENT_ADAPTER,
    ChunkRefusedError,
    decode_access_list,
    drain,
    snapshot_json,
)
from cloud_sync.snapshot_codec import (
    SnapshotError,
    chunk_bytes_of,
    decode_snapshot,
    encode_snapshot,
    sha256_hex,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge.demo_data import demo_access_list
from edge.errors import AccessListError
from edge.model import (
    AccessList,
    Credential,
    CredentialKind,
    Person,
    PersonKind,
    Status,
    VisitorPass,
)

SITE = "lotus-garden"
NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def rich_list(version: int = 7) -> AccessList:
    """The demo list plus entities with every optional field set."""
    acl = demo_access_list(version, NOW, "side-door", ["main-gate", "side-door", "lobby-a"])
    acl.people["p-full"] = Person(
        "p-full",
        "Full Fields",
        PersonKind.STAFF,
        "B",
        "0101",
        Status.DISABLED,
        NOW - timedelta(days=1),
        NOW + timedelta(days=30),
        True,
        True,
        ("security", "cleaning"),
    )
    acl.credentials[(CredentialKind.BLE, "ble-1")] = Credential(
        CredentialKind.BLE, "ble-1", "p-full", Status.REVOKED, NOW, NOW + timedelta(days=1), "fmt"
    )
    acl.passes["V-full"] = VisitorPass(
        "V-full", ("main-gate", "lobby-a"), NOW, NOW + timedelta(hours=3), 2, "p-full", "B-0101", "Ms. Li"
    )
    acl.holidays = frozenset({NOW.date(), (NOW + timedelta(days=40)).date()})
    acl.validate()
    acl.reindex()
    return acl


def doc_bytes(acl: AccessList, **dump: Any) -> bytes:
    return AccessListDocument.of(acl, SITE).model_dump_json(by_alias=True, **dump).encode()


def reference(raw: bytes) -> AccessList:
    return AccessListDocument.model_validate_json(raw).to_domain()


# --- the codec ---------------------------------------------------------------------------------------------


def test_chunks_reassemble_to_the_same_document() -> None:
    doc = AccessListDocument.of(rich_list(), SITE)
    chunks = encode_snapshot(doc, chunk_bytes=300, snapshot_id="s-1")
    assert len(chunks) > 2
    assert {c.snapshot_id for c in chunks} == {"s-1"} and {c.count for c in chunks} == {len(chunks)}
    assert len({c.total_sha256 for c in chunks}) == 1
    parts = [chunk_bytes_of(c) for c in chunks]
    assert decode_snapshot(parts, chunks[0].total_sha256) == doc
    assert decode_access_list(snapshot_json(parts, chunks[0].total_sha256)).acl == doc.to_domain()


def test_a_chunk_with_a_wrong_sha_or_bad_base64_is_refused() -> None:
    chunk = encode_snapshot(AccessListDocument.of(rich_list(), SITE))[0]
    with pytest.raises(SnapshotError, match="sha-256 mismatch"):
        chunk_bytes_of(chunk.model_copy(update={"sha256": "0" * 64}))
    with pytest.raises(SnapshotError, match="not base64"):
        chunk_bytes_of(chunk.model_copy(update={"data": "***"}))


def test_the_whole_is_checked_before_anything_is_decompressed() -> None:
    chunks = encode_snapshot(AccessListDocument.of(rich_list(), SITE), chunk_bytes=300)
    parts = [chunk_bytes_of(c) for c in chunks]
    with pytest.raises(SnapshotError, match="total"):
        decode_snapshot(parts[::-1], chunks[0].total_sha256)  # every chunk fine, order wrong
    with pytest.raises(ChunkRefusedError) as err:
        snapshot_json(parts[:-1], chunks[0].total_sha256)
    assert err.value.error == "bad_sha"


def test_a_gzip_bomb_stops_at_the_bound() -> None:
    blob = gzip.compress(b" " * 5_000_000)
    with pytest.raises(ChunkRefusedError) as err:
        snapshot_json([blob], sha256_hex(blob), max_bytes=1_000_000)
    assert err.value.error == "too_large"
    not_gzip = b"plain"
    with pytest.raises(ChunkRefusedError) as err:
        snapshot_json([not_gzip], sha256_hex(not_gzip))
    assert err.value.error == "rejected"


def test_chunk_model_refuses_nonsense() -> None:
    good = encode_snapshot(AccessListDocument.of(rich_list(), SITE))[0].model_dump()
    for change in ({"count": 0}, {"index": -1}, {"sha256": "ABC"}, {"encoding": "zstd"}, {"extra": 1}):
        with pytest.raises(ValidationError):
            SnapshotChunk.model_validate({**good, **change})
    assert base64.b64decode(good["data"])


# --- the fast decoder is the reference, faster -------------------------------------------------------------


def _inline(schema: dict[str, Any]) -> Any:
    """A JSON Schema with its $refs inlined and names, descriptions and defaults dropped: what is accepted."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {
                k: walk(v) for k, v in node.items() if k not in ("title", "description", "default", "$defs")
            }
        if isinstance(node, list):
            return [walk(x) for x in node]
        return node

    return walk(schema)


def test_the_fast_decoder_has_the_reference_schema() -> None:
    """Fails when a field is added to a Wire* model without its twin in snapshot_assembler."""
    assert _inline(DOCUMENT_ADAPTER.json_schema()) == _inline(AccessListDocument.model_json_schema())


@pytest.mark.parametrize("indent", [None, 2])
def test_the_fast_decoder_builds_the_reference_list(indent: int | None) -> None:
    raw = doc_bytes(rich_list())
    if indent is not None:  # any JSON layout, not only our encoder's
        raw = json.dumps(json.loads(raw), indent=indent).encode()
    decoded = decode_access_list(raw)
    assert decoded.site == SITE and decoded.json_bytes == len(raw)
    assert decoded.acl == reference(raw)
    assert decoded.acl.schedules_for("residents-a", "lobby-a") == (None,), "the rule index is built"


def test_defaults_are_the_reference_defaults() -> None:
    raw = json.dumps(
        {
            "version": 1,
            "site": SITE,
            "people": [{"id": "p", "name": "P"}],
            "groups": [{"id": "g"}],
            "schedules": [{"id": "s", "weekly": [[]] * 7}],
            "rules": [{"id": "r", "group": "g", "doors": ["d"]}],
            "credentials": [{"kind": "pin", "value": "ab", "person": "p"}],
            "passes": [
                {
                    "id": "v",
                    "doors": ["d"],
                    "valid_from": "2026-01-01T00:00:00Z",
                    "valid_until": "2026-01-02T00:00:00+08:00",
                }
            ],
        }
    ).encode()
    assert decode_access_list(raw).acl == reference(raw)
    assert decode_access_list(b'{"version": 3, "site": "s"}').acl == reference(b'{"version": 3, "site": "s"}')


def test_errors_in_big_lists_name_their_place_in_the_document() -> None:
    people = [{"id": f"p{i}", "name": "x"} for i in range(2500)]
    people[1500]["kind"] = "alien"
    raw = json.dumps({"version": 1, "site": SITE, "people": people}).encode()
    with pytest.raises(ValidationError) as err:
        decode_access_list(raw)
    assert [e["loc"] for e in err.value.errors()] == [("people", 1500, "kind")]


BAD_DOCUMENTS: dict[str, Any] = {
    "naive datetime": lambda d: d["passes"][0].update(valid_from="2026-01-01T00:00:00"),
    "extra key in a person": lambda d: d["people"][0].update(secret=1),
    "extra key at the top": lambda d: d.update(signature="x"),
    "empty id": lambda d: d["credentials"][0].update(value=""),
    "a pass as a credential": lambda d: d["credentials"][0].update(kind="pass"),
    "six weekdays": lambda d: d["schedules"][0].update(weekly=[[]] * 6),
    "bad interval": lambda d: d["schedules"][0].update(weekly=[["7-19"]] * 7),
    "impossible interval": lambda d: d["schedules"][0].update(weekly=[["25:00-26:00"]] * 7),
    "zero uses": lambda d: d["passes"][0].update(max_uses=0),
    "version zero": lambda d: d.update(version=0),
    "people not a list": lambda d: d.update(people={"p": 1}),
    "a person not an object": lambda d: d["people"].append("p-x"),
    "credential of nobody": lambda d: d["credentials"][0].update(person="p-nobody"),
    "rule for an unknown group": lambda d: d["rules"][0].update(group="g-nobody"),
    "long name": lambda d: d["people"][0].update(name="x" * 201),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_the_fast_decoder_refuses_what_the_reference_refuses(case: str) -> None:
    doc = json.loads(doc_bytes(rich_list()))
    BAD_DOCUMENTS[case](doc)
    raw = json.dumps(doc).encode()
    with pytest.raises((ValidationError, AccessListError)) as fast:
        decode_access_list(raw)
    with pytest.raises((ValidationError, AccessListError)) as ref:
        reference(raw)
    assert type(fast.value) is type(ref.value)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"[]",
        b'"text"',
        b"{",
        b'{"version": 1, "site": "s",}',
        b'{"version": 1, "site": "s"} trailing',
        b'{"version": NaN, "site": "s"}',
        b'{"version": 1, "site": "s", "people": [{"id": "p", "name": "\\ud800"}]}',
        b'{"version": 1, "site": "s", "people": [{"id": "p", "name": "a\x01b"}]}',
        b'{"version": 1, "site": "s", "people": [}',
        b"\xff\xfe{}",
        b'{"version": 1, "site": "s", "people": [{"id": "p", "name": "ok"}] , "version": 2}',
    ],
)
def test_odd_json_gets_the_reference_verdict(raw: bytes) -> None:
    try:
        expected: AccessList | None = reference(raw)
    except (ValidationError, AccessListError):
        expected = None
    try:
        got: AccessList | None = decode_access_list(raw).acl
    except (ValidationError, AccessListError):
        got = None
    assert got == expected


_VALID = json.loads(doc_bytes(rich_list()))
_PATHS = [
    ("people", 0, "kind"),
    ("people", 0, "groups"),
    ("people", 0, "valid_until"),
    ("people", 4, "face_consent"),
    ("credentials", 0, "status"),
    ("credentials", 1, "person"),
    ("passes", 0, "max_uses"),
    ("passes", 0, "doors"),
    ("passes", 1, "valid_from"),
    ("schedules", 0, "holidays"),
    ("rules", 0, "schedule"),
    ("holidays",),
    ("version",),
    ("site",),
]
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 3),
    st.sampled_from(
        ["", "card", "revoked", "staff", "2026-01-01T00:00:00Z", "2026-01-01", "p-zhang", "x" * 70]
    ),
    st.lists(st.sampled_from(["main-gate", "", "security", 1]), max_size=3),
    st.just({}),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.sampled_from(_PATHS), _VALUES), min_size=1, max_size=3))
def test_random_edits_get_the_same_verdict_and_list(edits: list[tuple[tuple[Any, ...], Any]]) -> None:
    doc = copy.deepcopy(_VALID)
    for path, value in edits:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    raw = json.dumps(doc).encode()
    try:
        expected: AccessList | None = reference(raw)
    except (ValidationError, AccessListError):
        expected = None
    try:
        got: AccessList | None = decode_access_list(raw).acl
    except (ValidationError, AccessListError):
        got = None
    assert got == expected


def test_batches_cover_long_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot_assembler, "BATCH", 3)
    raw = doc_bytes(rich_list())
    assert decode_access_list(raw).acl == reference(raw)


def test_drain_empties_a_list_no_longer_in_force() -> None:
    acl = rich_list()
    drain(acl)
    assert not acl.people and not acl.credentials and not acl.passes and not acl.rules
    assert acl.schedules_for("residents-a", "lobby-a") == ()
