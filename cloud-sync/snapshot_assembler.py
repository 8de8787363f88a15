"""Snapshot chunks -> one checked blob -> a validated AccessList, without ever mixing two snapshots.

Why a separate assembler: chunks arrive one MQTT message at a time, possibly interleaved with a newer snapshot
or cut off halfway. `SnapshotAssembler` keeps them per snapshot_id, bounded in number (two snapshots at most)
and in bytes, and hands out a `Complete` snapshot only when every chunk is present; it never touches the access
list in force. Whatever goes wrong (a bad sha-256, a chunk that contradicts its siblings, a snapshot abandoned
halfway) the caller keeps the list it has.

Why a decoder of its own, with two goals measured on a 100,000-person snapshot (66 MB of JSON):
- Time. `AccessListDocument.model_validate_json` builds ~500,000 frozen pydantic objects only for them to be
  converted to the domain's dataclasses: ~6.5 s here, conversion included. The same checks run through
  TypeAdapters over TypedDicts that mirror the wire models field for field (same types, same constraints,
  unknown keys refused), which build plain dicts, and the domain objects are made from those directly: ~1.7 s.
- The doors. pydantic-core and the json module hold the GIL for a whole call, so one call over the whole
  document stalled the event loop for 0.7 s, worker thread or not. The document is therefore parsed one
  array element at a time and validated a batch at a time (see _load), so the loop gets the GIL back within
  milliseconds throughout.
tests/cloud_sync/test_snapshot_codec.py proves the schemas identical, the resulting AccessLists equal, and the
verdicts equal on random edits, so a field added to messages.py without its twin here fails a test instead
of being silently dropped.
"""

from __future__ import annotations

import gzip
import io
import json
import json.decoder
import json.scanner
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any, Literal, NotRequired, TypeVar

from cloud_sync.messages import Id, IntervalText, SnapshotChunk
from cloud_sync.snapshot_codec import MAX_SNAPSHOT_BYTES, SnapshotError, sha256_hex
from pydantic import AwareDatetime, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import InitErrorDetails
from typing_extensions import TypedDict

from edge.model import (
    AccessList,
    AccessRule,
    Credential,
    CredentialKind,
    Group,
    Interval,
    Person,
    PersonKind,
    Schedule,
    Status,
    VisitorPass,
)

MAX_ASSEMBLIES = 2  # snapshots collected at once: the one being sent and, at most, one that superseded it
MAX_ASSEMBLY_BYTES = 64 * 1024 * 1024  # compressed bytes held across assemblies (100k people: ~2.5 MB)
ASSEMBLY_TIMEOUT = 120.0  # seconds without a new chunk before an incomplete snapshot is abandoned

ChunkError = Literal["bad_sha", "too_large", "rejected"]
T = TypeVar("T")


class ChunkRefusedError(SnapshotError):
    """A chunk cannot be used; `error` is the ErrorReport code."""

    def __init__(self, error: ChunkError, detail: str) -> None:
        super().__init__(detail)
        self.error: ChunkError = error
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Complete:
    """Every chunk of one snapshot, in index order, each already checked against its own sha-256."""

    snapshot_id: str
    version: int
    parts: list[bytes]
    total_sha256: str


@dataclass(slots=True)
class _Assembly:
    snapshot_id: str
    version: int
    count: int
    total_sha256: str
    started: float
    touched: float
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class SnapshotAssembler:
    """Collects checked chunks per snapshot_id. Not thread-safe: used from the event loop only.

    Bounds: at most `max_assemblies` snapshots at once (a chunk of a further one drops the oldest), at most
    `max_bytes` held in total (a chunk past it drops its own snapshot), and `expire()` drops snapshots that
    have received nothing for `timeout` seconds.
    """

    def __init__(
        self,
        *,
        max_assemblies: int = MAX_ASSEMBLIES,
        max_bytes: int = MAX_ASSEMBLY_BYTES,
        timeout: float = ASSEMBLY_TIMEOUT,
    ) -> None:
        self.max_assemblies = max_assemblies
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._assemblies: dict[str, _Assembly] = {}

    @property
    def in_progress(self) -> dict[str, tuple[int, int, int]]:
        """snapshot_id -> (version, chunks received, chunk count), for logs and tests."""
        return {a.snapshot_id: (a.version, len(a.parts), a.count) for a in self._assemblies.values()}

    @property
    def held_bytes(self) -> int:
        return sum(a.size for a in self._assemblies.values())

    def add(self, chunk: SnapshotChunk, data: bytes, now: float) -> tuple[Complete | None, list[str]]:
        """Add one chunk whose `data` already matched its own sha-256 (see chunk_bytes_of).

        Returns the complete snapshot when this was its last missing chunk (and forgets it), plus the ids of
        snapshots dropped to make room. Raises ChunkRefusedError (the chunk's snapshot is dropped with it when
        the chunk contradicts it or it grows too large).
        """
        dropped: list[str] = []
        a = self._assemblies.get(chunk.snapshot_id)
        if a is None:
            if chunk.index >= chunk.count:
                raise ChunkRefusedError("rejected", f"chunk index {chunk.index} >= count {chunk.count}")
            while len(self._assemblies) >= self.max_assemblies:
                oldest = min(self._assemblies.values(), key=lambda x: x.started)
                del self._assemblies[oldest.snapshot_id]
                dropped.append(oldest.snapshot_id)
            a = _Assembly(chunk.snapshot_id, chunk.version, chunk.count, chunk.total_sha256, now, now)
            self._assemblies[a.snapshot_id] = a
        elif (chunk.version, chunk.count, chunk.total_sha256) != (a.version, a.count, a.total_sha256):
            del self._assemblies[a.snapshot_id]
            raise ChunkRefusedError(
                "rejected", f"chunk {chunk.index} of {chunk.snapshot_id} contradicts the earlier chunks"
            )
        if chunk.index >= a.count:
            del self._assemblies[a.snapshot_id]
            raise ChunkRefusedError("rejected", f"chunk index {chunk.index} >= count {a.count}")
        a.touched = now
        earlier = a.parts.get(chunk.index)
        if earlier is not None:
            if earlier != data:
                del self._assemblies[a.snapshot_id]
                raise ChunkRefusedError(
                    "rejected", f"chunk {chunk.index} of {a.snapshot_id} sent twice, differing"
                )
            return None, dropped  # a QoS 1 re-delivery
        if self.held_bytes + len(data) > self.max_bytes:
            del self._assemblies[a.snapshot_id]
            raise ChunkRefusedError(
                "too_large", f"snapshot {a.snapshot_id} exceeds {self.max_bytes} bytes in assembly"
            )
        a.parts[chunk.index] = data
        a.size += len(data)
        if len(a.parts) < a.count:
            return None, dropped
        del self._assemblies[a.snapshot_id]
        parts = [a.parts[i] for i in range(a.count)]
        return Complete(a.snapshot_id, a.version, parts, a.total_sha256), dropped

    def expire(self, now: float) -> list[str]:
        """Drop snapshots that received no chunk for `timeout` seconds; their ids."""
        stale = [sid for sid, a in self._assemblies.items() if now - a.touched >= self.timeout]
        for sid in stale:
            del self._assemblies[sid]
        return stale

    def drop_superseded(self, version: int) -> list[str]:
        """Drop snapshots not newer than `version` (one just came into force); their ids."""
        old = [sid for sid, a in self._assemblies.items() if a.version <= version]
        for sid in old:
            del self._assemblies[sid]
        return old

    def next_deadline(self) -> float | None:
        """When the next incomplete snapshot times out (same clock as `now`), if any."""
        if not self._assemblies:
            return None
        return min(a.touched for a in self._assemblies.values()) + self.timeout


# --- the fast decoder --------------------------------------------------------------------------------------
# Twins of messages.Wire* and messages.AccessListDocument: keep them in step (a test compares the schemas).

_STRICT = ConfigDict(extra="forbid")
_Name200 = Annotated[str, Field(max_length=200)]
_Text64 = Annotated[str, Field(max_length=64)]


class _Person(TypedDict):
    __pydantic_config__ = _STRICT  # type: ignore[misc]
    id: Id
    name: _Name200
    kind: NotRequired[PersonKind]
    building: NotRequired[_Text64 | None]
    unit: NotRequired[_Text64 | None]
    status: NotRequired[Status]
    valid_from: NotRequired[AwareDatetime | None]
    valid_until: NotRequired[AwareDatetime | None]
    face_consent: NotRequired[bool]
    responder: NotRequired[bool]
    groups: NotRequired[list[Id]]


class _Group(TypedDict):
    __pydantic_config__ = _STRICT  # type: ignore[misc]
    id: Id
    name: NotRequired[str]


class _Schedule(TypedDict):
    __pydantic_config__ = _STRICT  # type: ignore[misc]
    id: Id
    name: NotRequired[str]
    weekly: Annotated[list[list[IntervalText]], Field(min_length=7, max_length=7)]
    holidays: NotRequired[list[IntervalText]]


class _Rule(TypedDict):
    __pydantic_config__ = _STRICT  # type: ignore[misc]
    id: Id
    group: Id
    doors: Annotated[list[Id], Field(min_length=1)]
    schedule: NotRequired[Id | None]


class _Credential(TypedDict):
    __pydantic_config__ = _STRICT  # type: ignore[misc]
    kind: Literal[CredentialKind.CARD, CredentialKind.PIN, CredentialKind.BLE, CredentialKind.FACE]
    value: Id
    person: Id
    status: NotRequired[Status]
    valid_from: NotRequired[AwareDatetime | None]
    valid_until: NotRequired[AwareDatetime | None]
    format: NotRequired[str | None]


class _Pass(TypedDict):
    __pydantic_config__ = _STRICT  # type: ignore[misc]
    id: Id
    doors: Annotated[list[Id], Field(min_length=1)]
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    max_uses: NotRequired[Annotated[int, Field(ge=1)] | None]
    host_person: NotRequired[Id | None]
    host_unit: NotRequired[str | None]
    label: NotRequired[_Text64]
    status: NotRequired[Status]


class _Document(TypedDict):
    __pydantic_config__ = _STRICT  # type: ignore[misc]
    version: Annotated[int, Field(ge=1)]
    site: Id
    people: NotRequired[list[_Person]]
    groups: NotRequired[list[_Group]]
    schedules: NotRequired[list[_Schedule]]
    rules: NotRequired[list[_Rule]]
    credentials: NotRequired[list[_Credential]]
    passes: NotRequired[list[_Pass]]
    holidays: NotRequired[list[date]]


DOCUMENT_ADAPTER: TypeAdapter[_Document] = TypeAdapter(_Document)


@dataclass(frozen=True, slots=True)
class Decoded:
    site: str
    acl: AccessList
    json_bytes: int


def snapshot_json(parts: list[bytes], total_sha256: str, max_bytes: int = MAX_SNAPSHOT_BYTES) -> bytes:
    """Join the chunks' bytes, check the total sha-256, gunzip with a bound (a gzip bomb stops at max_bytes)."""
    blob = b"".join(parts)
    if sha256_hex(blob) != total_sha256:
        raise ChunkRefusedError("bad_sha", "snapshot total sha-256 mismatch")
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(blob)) as gz:
            raw = gz.read(max_bytes + 1)
    except (OSError, EOFError) as err:
        raise ChunkRefusedError("rejected", f"snapshot is not valid gzip: {err}") from err
    if len(raw) > max_bytes:
        raise ChunkRefusedError("too_large", f"snapshot larger than {max_bytes} bytes decompressed")
    return raw


def decode_access_list(raw: bytes) -> Decoded:
    """Validate the JSON of an AccessListDocument and build the domain AccessList from it.

    Raises pydantic.ValidationError (not JSON, or schema) or AccessListError (references to missing things).
    """
    size = len(raw)
    doc = _load(raw)
    del raw  # the caller may still hold it; this frame does not need it any more
    big = {key: doc.pop(key) for key in _BIG if isinstance(doc.get(key), list)}
    top: dict[str, Any] = dict(DOCUMENT_ADAPTER.validate_python(doc))
    del doc
    door_lists: dict[tuple[str, ...], tuple[str, ...]] = {}  # passes share a handful of door lists
    people = _batched("people", big.pop("people", []), _person)
    credentials = _batched("credentials", big.pop("credentials", []), _credential)
    passes = _batched("passes", big.pop("passes", []), lambda v: _pass(v, door_lists))
    acl = AccessList.build(
        version=top["version"],
        people=people,
        groups=[Group(g["id"], g.get("name", "")) for g in top.get("groups", ())],
        schedules=[
            Schedule(
                s["id"],
                s.get("name", ""),
                tuple(tuple(Interval.parse(x) for x in day) for day in s["weekly"]),
                tuple(Interval.parse(x) for x in s.get("holidays", ())),
            )
            for s in top.get("schedules", ())
        ],
        rules=[
            AccessRule(r["id"], r["group"], tuple(r["doors"]), r.get("schedule"))
            for r in top.get("rules", ())
        ],
        credentials=credentials,
        passes=passes,
        holidays=top.get("holidays", ()),
    )
    return Decoded(top["site"], acl, size)


# Why the document is parsed element by element: pydantic-core (and the json module) hold the GIL for a whole
# call, so validating 66 MB of JSON in one call stalled the event loop, and with it every door, for 0.7 s even
# though it ran in a worker thread. Here every call is short (one array element, or a batch of BATCH
# elements), so the loop gets the GIL back within milliseconds. Anything unusual (a top level that is not an
# object, a syntax error, an escaped surrogate, which json and pydantic treat differently) goes to pydantic's
# own validate_json instead, so the accepted documents and the error reported are exactly the reference ones.

BATCH = 1000
_BIG = ("people", "credentials", "passes")
_ITEM_ADAPTERS: dict[str, TypeAdapter[list[Any]]] = {
    "people": TypeAdapter(list[_Person]),
    "credentials": TypeAdapter(list[_Credential]),
    "passes": TypeAdapter(list[_Pass]),
}
_WS = re.compile(r"[ \t\n\r]*")
_BLANK = frozenset(" \t\n\r")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _UnusualDocumentError(Exception):
    """The incremental parser leaves this document to the reference parser."""


def _no_constants(name: str) -> Any:
    raise _UnusualDocumentError(name)  # NaN and Infinity are not JSON; the json module would accept them


# The json module's C scanner: one JSON value at a position -> (value, end). Strict: control characters inside
# strings are refused, as pydantic refuses them.
_DECODER = json.JSONDecoder(parse_constant=_no_constants)
_SCAN: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]
_scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


def _load(raw: bytes) -> dict[str, Any]:
    """The document as plain JSON values (not yet validated), its big arrays parsed one element at a time."""
    try:
        text = raw.decode("utf-8")
        if _SURROGATE_ESCAPE.search(text):
            raise _UnusualDocumentError("escaped surrogate")
        return _parse_object(text)
    except (_UnusualDocumentError, ValueError, IndexError, StopIteration, RecursionError):
        return dict(DOCUMENT_ADAPTER.validate_json(raw))  # raises the reference error (or agrees)


def _skip(text: str, pos: int) -> int:
    """The position of the next non-blank character (JSON blanks only)."""
    if text[pos] in _BLANK:
        match = _WS.match(text, pos)
        assert match is not None  # the pattern matches the empty string
        return match.end()
    return pos


def _parse_object(text: str) -> dict[str, Any]:
    pos = _skip(text, 0)
    if text[pos] != "{":
        raise _UnusualDocumentError("top level is not an object")
    out: dict[str, Any] = {}
    pos = _skip(text, pos + 1)
    if text[pos] == "}":
        pos += 1
    else:
        while True:
            if text[pos] != '"':
                raise _UnusualDocumentError("expected a key")
            key, pos = _scanstring(text, pos + 1, True)
            pos = _skip(text, pos)
            if text[pos] != ":":
                raise _UnusualDocumentError("expected ':'")
            pos = _skip(text, pos + 1)
            if key in _BIG and text[pos] == "[":
                out[key], pos = _parse_array(text, pos)
            else:
                out[key], pos = _SCAN(text, pos)
            pos = _skip(text, pos)
            if text[pos] == ",":
                pos = _skip(text, pos + 1)
            elif text[pos] == "}":
                pos += 1
                break
            else:
                raise _UnusualDocumentError("expected ',' or '}'")
    if text[pos:].strip(" \t\n\r"):
        raise _UnusualDocumentError("data after the document")
    return out


def _parse_array(text: str, pos: int) -> tuple[list[Any], int]:
    scan, skip = _SCAN, _skip
    out: list[Any] = []
    append = out.append
    pos = skip(text, pos + 1)
    if text[pos] == "]":
        return out, pos + 1
    while True:
        value, pos = scan(text, pos)
        append(value)
        pos = skip(text, pos)
        if text[pos] == ",":
            pos = skip(text, pos + 1)
        elif text[pos] == "]":
            return out, pos + 1
        else:
            raise _UnusualDocumentError("expected ',' or ']'")


def _batched(key: str, items: list[Any], build: Callable[[Any], T]) -> list[T]:
    """Validate `items` BATCH at a time and build their domain objects, releasing each batch as it goes."""
    adapter = _ITEM_ADAPTERS[key]
    out: list[T] = []
    for start in range(0, len(items), BATCH):
        end = min(start + BATCH, len(items))
        try:
            valid = adapter.validate_python(items[start:end])
        except ValidationError as err:
            raise _relocated(err, key, start) from None
        out.extend(build(x) for x in valid)
        items[start:end] = [None] * (end - start)  # free the raw dicts now, a batch at a time
    return out


def _relocated(err: ValidationError, key: str, offset: int) -> ValidationError:
    """A batch's error with locations as in the whole document: ('people', 12345, 'name')."""
    details: list[InitErrorDetails] = []
    for e in err.errors(include_url=False):
        loc = e["loc"]
        index = loc[0] + offset if loc and isinstance(loc[0], int) else loc[0] if loc else 0
        detail: InitErrorDetails = {"type": e["type"], "loc": (key, index, *loc[1:]), "input": e["input"]}
        if "ctx" in e:
            detail["ctx"] = e["ctx"]
        details.append(detail)
    return ValidationError.from_exception_data("AccessListDocument", details)


def _person(p: dict[str, Any]) -> Person:
    return Person(
        p["id"],
        p["name"],
        p.get("kind", PersonKind.RESIDENT),
        p.get("building"),
        p.get("unit"),
        p.get("status", Status.ACTIVE),
        p.get("valid_from"),
        p.get("valid_until"),
        p.get("face_consent", False),
        p.get("responder", False),
        tuple(p.get("groups", ())),
    )


def _credential(c: dict[str, Any]) -> Credential:
    return Credential(
        c["kind"],
        c["value"],
        c["person"],
        c.get("status", Status.ACTIVE),
        c.get("valid_from"),
        c.get("valid_until"),
        c.get("format"),
    )


def _pass(v: dict[str, Any], door_lists: dict[tuple[str, ...], tuple[str, ...]]) -> VisitorPass:
    return VisitorPass(
        v["id"],
        _shared(door_lists, tuple(v["doors"])),
        v["valid_from"],
        v["valid_until"],
        v.get("max_uses"),
        v.get("host_person"),
        v.get("host_unit"),
        v.get("label", ""),
        v.get("status", Status.ACTIVE),
    )


def drain(acl: AccessList) -> None:
    """Empty a list that is no longer in force a few entries at a time. Freeing 400,000 objects in one go is a
    single C call that holds the GIL (and so stalls the loop) for a tenth of a second or more; popping them in
    a Python loop lets the loop in between. Only for a list nobody else holds."""
    for table in (acl.credentials, acl.passes, acl.people):
        pop = table.popitem
        for _ in range(len(table)):
            pop()
    acl._grants = {}
    acl.rules.clear()


def _shared(pool: dict[tuple[str, ...], tuple[str, ...]], value: tuple[str, ...]) -> tuple[str, ...]:
    return pool.setdefault(value, value)
