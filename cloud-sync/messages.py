"""Every payload of the MQTT contract, version 1, as pydantic models.

These models are the contract: they validate what arrives (unknown keys are refused, so a typo in a backend is
an error, not a silent default), they serialise what leaves, and `docs/asyncapi.json` and its JSON Schemas are
generated from them (scripts/gen_contract.py; a test fails when the document is stale).

Versioning: the topic prefix carries the major version (menwei/v1). Within v1, fields are only ever added as
optional; a breaking change is a new prefix served side by side.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from edge.model import (
    AccessList,
    AccessRule,
    Credential,
    CredentialKind,
    DoorMode,
    Group,
    Interval,
    Person,
    PersonKind,
    Schedule,
    Status,
    VisitorPass,
)
from edge.passes.trust import TrustedKey

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
IntervalText = Annotated[str, StringConstraints(pattern=r"^\d\d:\d\d-\d\d:\d\d$")]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- access-list entities on the wire ---------------------------------------------------------------------


class WirePerson(Message):
    id: Id
    name: str = Field(max_length=200, description="Display name shown to guards")
    kind: PersonKind = PersonKind.RESIDENT
    building: str | None = Field(default=None, max_length=64)
    unit: str | None = Field(default=None, max_length=64)
    status: Status = Status.ACTIVE
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = Field(default=None, description="Exclusive end of validity")
    face_consent: bool = Field(default=False, description="The person consented to face enrolment")
    responder: bool = Field(default=False, description="May pass during a lockdown")
    groups: list[Id] = Field(default_factory=list)

    def to_domain(self) -> Person:
        return Person(
            self.id,
            self.name,
            self.kind,
            self.building,
            self.unit,
            self.status,
            self.valid_from,
            self.valid_until,
            self.face_consent,
            self.responder,
            tuple(self.groups),
        )

    @classmethod
    def of(cls, p: Person) -> WirePerson:
        return cls(
            id=p.id,
            name=p.name,
            kind=p.kind,
            building=p.building,
            unit=p.unit,
            status=p.status,
            valid_from=p.valid_from,
            valid_until=p.valid_until,
            face_consent=p.face_consent,
            responder=p.responder,
            groups=list(p.group_ids),
        )


class WireGroup(Message):
    id: Id
    name: str = ""

    def to_domain(self) -> Group:
        return Group(self.id, self.name)


class WireSchedule(Message):
    id: Id
    name: str = ""
    weekly: list[list[IntervalText]] = Field(
        min_length=7, max_length=7, description="Seven lists (Monday first) of 'HH:MM-HH:MM' in site time"
    )
    holidays: list[IntervalText] = Field(default_factory=list, description="Intervals on site holidays")

    def to_domain(self) -> Schedule:
        return Schedule(
            self.id,
            self.name,
            tuple(tuple(Interval.parse(x) for x in day) for day in self.weekly),
            tuple(Interval.parse(x) for x in self.holidays),
        )

    @classmethod
    def of(cls, s: Schedule) -> WireSchedule:
        return cls(
            id=s.id,
            name=s.name,
            weekly=[[str(i) for i in day] for day in s.weekly],
            holidays=[str(i) for i in s.holidays],
        )


class WireRule(Message):
    id: Id
    group: Id
    doors: list[Id] = Field(min_length=1)
    schedule: Id | None = Field(default=None, description="None: at any time")

    def to_domain(self) -> AccessRule:
        return AccessRule(self.id, self.group, tuple(self.doors), self.schedule)


class WireCredential(Message):
    kind: Literal[CredentialKind.CARD, CredentialKind.PIN, CredentialKind.BLE, CredentialKind.FACE]
    value: Id = Field(description="Card number in decimal; PIN as hex HMAC-SHA256 under the site PIN key")
    person: Id
    status: Status = Status.ACTIVE
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    format: str | None = Field(default=None, description="Card format, e.g. h10301")

    def to_domain(self) -> Credential:
        return Credential(
            self.kind, self.value, self.person, self.status, self.valid_from, self.valid_until, self.format
        )

    @classmethod
    def of(cls, c: Credential) -> WireCredential:
        return cls(
            kind=c.kind,  # type: ignore[arg-type]
            value=c.value,
            person=c.person_id,
            status=c.status,
            valid_from=c.valid_from,
            valid_until=c.valid_until,
            format=c.format,
        )


class WirePass(Message):
    id: Id
    doors: list[Id] = Field(min_length=1)
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    max_uses: int | None = Field(default=None, ge=1)
    host_person: Id | None = None
    host_unit: str | None = None
    label: str = Field(
        default="", max_length=64, description="Minimal visitor label; no further personal data"
    )
    status: Status = Status.ACTIVE

    def to_domain(self) -> VisitorPass:
        return VisitorPass(
            self.id,
            tuple(self.doors),
            self.valid_from,
            self.valid_until,
            self.max_uses,
            self.host_person,
            self.host_unit,
            self.label,
            self.status,
        )

    @classmethod
    def of(cls, v: VisitorPass) -> WirePass:
        return cls(
            id=v.id,
            doors=list(v.door_ids),
            valid_from=v.valid_from,
            valid_until=v.valid_until,
            max_uses=v.max_uses,
            host_person=v.host_person_id,
            host_unit=v.host_unit,
            label=v.label,
            status=v.status,
        )


class AccessListDocument(Message):
    """The whole access list: the content a snapshot carries (gzip'd JSON, split into chunks)."""

    version: int = Field(ge=1)
    site: Id
    people: list[WirePerson] = Field(default_factory=list)
    groups: list[WireGroup] = Field(default_factory=list)
    schedules: list[WireSchedule] = Field(default_factory=list)
    rules: list[WireRule] = Field(default_factory=list)
    credentials: list[WireCredential] = Field(default_factory=list)
    passes: list[WirePass] = Field(default_factory=list)
    holidays: list[date] = Field(default_factory=list)

    def to_domain(self) -> AccessList:
        return AccessList.build(
            version=self.version,
            people=(p.to_domain() for p in self.people),
            groups=(g.to_domain() for g in self.groups),
            schedules=(s.to_domain() for s in self.schedules),
            rules=(r.to_domain() for r in self.rules),
            credentials=(c.to_domain() for c in self.credentials),
            passes=(p.to_domain() for p in self.passes),
            holidays=self.holidays,
        )

    @classmethod
    def of(cls, acl: AccessList, site: str) -> AccessListDocument:
        return cls(
            version=acl.version,
            site=site,
            people=[WirePerson.of(p) for p in acl.people.values()],
            groups=[WireGroup(id=g.id, name=g.name) for g in acl.groups.values()],
            schedules=[WireSchedule.of(s) for s in acl.schedules.values()],
            rules=[
                WireRule(id=r.id, group=r.group_id, doors=list(r.door_ids), schedule=r.schedule_id)
                for r in acl.rules.values()
            ],
            credentials=[WireCredential.of(c) for c in acl.credentials.values()],
            passes=[WirePass.of(v) for v in acl.passes.values()],
            holidays=sorted(acl.holidays),
        )


# --- down: snapshots, deltas, commands ----------------------------------------------------------------------


class SnapshotChunk(Message):
    """One chunk of a snapshot. The chunks' `data`, base64-decoded and concatenated in index order, are the
    gzip-compressed UTF-8 JSON of an AccessListDocument. Applied only when every chunk has arrived and both
    the chunk and the total sha-256 match."""

    snapshot_id: Id = Field(description="Unique per snapshot; chunks of different snapshots never mix")
    version: int = Field(ge=1)
    index: int = Field(ge=0)
    count: int = Field(ge=1, le=10_000)
    sha256: Hex64 = Field(description="sha-256 of this chunk's decoded bytes")
    total_sha256: Hex64 = Field(description="sha-256 of all chunks' decoded bytes concatenated")
    encoding: Literal["gzip+json"] = "gzip+json"
    data: str = Field(description="base64 of this chunk's bytes")
    server_time: AwareDatetime | None = Field(default=None, description="The cloud's clock when sent")


class UpsertPerson(Message):
    op: Literal["upsert_person"]
    person: WirePerson


class DeletePerson(Message):
    """Removes the person, their credentials and (later) their face templates."""

    op: Literal["delete_person"]
    id: Id


class UpsertCredential(Message):
    op: Literal["upsert_credential"]
    credential: WireCredential


class RevokeCredential(Message):
    op: Literal["revoke_credential"]
    kind: CredentialKind
    value: Id


class UpsertPass(Message):
    op: Literal["upsert_pass"]
    visitor_pass: WirePass = Field(alias="pass")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RevokePass(Message):
    """Revokes a visitor pass. A pass the access list holds is marked revoked. A signed QR pass is usually not
    in the access list: the gateway then keeps its id on a revocation list until `valid_until` (plus the pass
    clock skew), so a scan of the token is refused (pass_revoked)."""

    op: Literal["revoke_pass"]
    id: Id
    valid_until: AwareDatetime | None = Field(
        default=None,
        description="The pass's own expiry, if known: a revocation of a pass the access list does not hold "
        "is kept until then. Absent: kept for 400 days.",
    )


class UpsertGroup(Message):
    op: Literal["upsert_group"]
    group: WireGroup


class UpsertSchedule(Message):
    op: Literal["upsert_schedule"]
    schedule: WireSchedule


class UpsertRule(Message):
    op: Literal["upsert_rule"]
    rule: WireRule


class DeleteRule(Message):
    op: Literal["delete_rule"]
    id: Id


class SetHolidays(Message):
    op: Literal["set_holidays"]
    holidays: list[date]


DeltaOp = Annotated[
    UpsertPerson
    | DeletePerson
    | UpsertCredential
    | RevokeCredential
    | UpsertPass
    | RevokePass
    | UpsertGroup
    | UpsertSchedule
    | UpsertRule
    | DeleteRule
    | SetHolidays,
    Field(discriminator="op"),
]

# Revocations and removals are applied before grants inside one delta, whatever order they were sent in.
REVOKING_OPS = frozenset({"delete_person", "revoke_credential", "revoke_pass", "delete_rule"})


class Delta(Message):
    """Changes that turn version from_version into to_version (= from_version + 1). Applied atomically, only
    on top of from_version; a gateway already at to_version or later ignores it (re-delivery is harmless); a
    gateway at any other version asks for a snapshot."""

    from_version: int = Field(ge=0)
    to_version: int = Field(ge=1)
    ops: list[DeltaOp] = Field(max_length=50_000)
    server_time: AwareDatetime | None = None


class CommandBase(Message):
    id: Id = Field(description="Unique command id; a replayed id is refused")
    operator: str = Field(min_length=1, max_length=128, description="Who asked, for the audit trail")
    reason: str = Field(default="", max_length=500)
    issued_at: AwareDatetime
    expires_at: AwareDatetime = Field(
        description="Refused after this time (also sent as MQTT message expiry)"
    )


class OpenDoor(CommandBase):
    command: Literal["open_door"]
    door: Id


class SetMode(CommandBase):
    command: Literal["set_mode"]
    door: Id | None = Field(default=None, description="None: the whole site (lockdown / lift lockdown)")
    mode: DoorMode


class Resync(CommandBase):
    command: Literal["resync"]


class Ping(CommandBase):
    command: Literal["ping"]


class EnrolFace(CommandBase):
    """Enrol a consenting resident's face on this gateway (docs/faces.md): a photo, or an embedding made by the
    model pack the gateway runs. Refused for a person without face_consent, for a photo that fails the quality
    gates and for a face already enrolled under someone else (the reply's detail says which). Nothing comes back
    but the outcome: templates and photos never leave the gateway."""

    command: Literal["enrol_face"]
    person: Id = Field(description="Person id in the access list; must have face_consent")
    face_id: Id = Field(description="The FACE credential value this face opens doors as")
    photo_b64: str | None = Field(
        default=None, max_length=2_800_000, description="JPEG or PNG photo, base64 (one face, at least 80 px)"
    )
    embedding: list[float] | None = Field(default=None, max_length=4096, description="Instead of a photo")
    pack: str | None = Field(default=None, max_length=64, description="Model pack that made `embedding`")

    @model_validator(mode="after")
    def _photo_or_embedding(self) -> EnrolFace:
        if (self.photo_b64 is None) == (self.embedding is None):
            raise ValueError("give either photo_b64 or embedding")
        if self.embedding is not None and self.pack is None:
            raise ValueError("an embedding needs the pack that made it")
        return self


Command = Annotated[OpenDoor | SetMode | Resync | Ping | EnrolFace, Field(discriminator="command")]


class CommandEnvelope(Message):
    cmd: Command


# --- up: replies, events, state, status, telemetry, errors --------------------------------------------------


class CommandReply(Message):
    id: str
    ok: bool
    error: Literal["expired", "replayed", "invalid", "unknown_door", "failed"] | None = None
    detail: str = ""
    result: dict[str, Any] = Field(default_factory=dict)


class UploadedEvent(Message):
    seq: int = Field(ge=1, description="Per-gateway sequence: strictly increasing, gaps mean events lost")
    id: str = Field(description="UUIDv7, unique across gateways")
    hash: Hex64
    prev_hash: Hex64
    event: dict[str, Any] = Field(description="The event as stored (type, at, and the type's fields)")


class EventBatch(Message):
    site: str
    gateway: str
    events: list[UploadedEvent] = Field(min_length=1)


class AclState(Message):
    version: int
    applied_at: AwareDatetime


class SnapshotRequest(Message):
    reason: Literal["startup", "gap", "mismatch", "corrupt", "command", "incomplete", "restored"]
    have_version: int
    detail: str = ""


class GatewayStatus(Message):
    online: bool
    at: AwareDatetime
    software: str = ""


class DeviceHealth(Message):
    online: bool
    detail: str = ""


class Telemetry(Message):
    at: AwareDatetime
    software: str
    acl_version: int
    outbox_depth: int
    oldest_pending_at: AwareDatetime | None
    last_upload_at: AwareDatetime | None
    devices: dict[str, DeviceHealth] = Field(default_factory=dict)


class ErrorReport(Message):
    at: AwareDatetime
    topic: str
    error: Literal["not_json", "schema", "wrong_site", "bad_sha", "too_large", "unknown_command", "rejected"]
    detail: str = Field(max_length=2000)


# --- visitor passes (docs/passes.md): the site's trust list, and use counts shared between gateways -------------

KeyIdHex = Annotated[str, StringConstraints(pattern=r"^(?:[0-9a-f]{2}){1,16}$")]
Issuer = Annotated[str, StringConstraints(pattern=r"^(?:cloud|gateway:[a-z0-9][a-z0-9_-]{0,62})$")]


class WireTrustedKey(Message):
    """One pass-signing key. `state: retired` means the key verifies nothing from the moment the gateway takes
    the list in (whatever `retired_at` says); `active` with a `retired_at` is a scheduled retirement, judged by
    the gateway's clock. A key id always names the same key, and a passed retirement is final."""

    kid: KeyIdHex = Field(description="Key id, hex (1-16 bytes), as in the pass's COSE header")
    public_key: Hex64 = Field(description="Raw Ed25519 public key, 32 bytes as hex")
    issuer: Issuer = Field(default="cloud", description="'cloud', or 'gateway:<id>' for a walk-in key")
    state: Literal["active", "retired"] = "active"
    retired_at: AwareDatetime | None = Field(
        default=None, description="From this instant on the key verifies nothing; absent: no retirement"
    )

    def to_domain(self, now: datetime) -> TrustedKey:
        """The key as the trust list holds it; `retired` means retired from `now` at the latest."""
        retired_at = self.retired_at
        if self.state == "retired":
            retired_at = now if retired_at is None else min(retired_at, now)
        return TrustedKey(
            kid=bytes.fromhex(self.kid),
            public_key=bytes.fromhex(self.public_key),
            issuer=self.issuer,
            retired_at=retired_at,
        )

    @classmethod
    def of(cls, key: TrustedKey, now: datetime) -> WireTrustedKey:
        """A key for the wire; one whose retirement has passed by `now` is sent as retired."""
        retired = key.retired_at is not None and key.retired_at <= now
        return cls(
            kid=key.kid.hex(),
            public_key=key.public_key.hex(),
            issuer=key.issuer,
            state="retired" if retired else "active",
            retired_at=key.retired_at,
        )


class PassTrustList(Message):
    """The site's full list of pass-signing keys, retained on the site-wide topic. A gateway applies a list
    whose `version` is above the one it holds; keys left out are retired, never forgotten."""

    site: Id
    version: int = Field(ge=1, description="Increases with every change; an older or equal list is ignored")
    keys: list[WireTrustedKey] = Field(max_length=256)
    server_time: AwareDatetime | None = Field(default=None, description="The cloud's clock when sent")

    @model_validator(mode="after")
    def _unique_ids(self) -> PassTrustList:
        kids = [k.kid for k in self.keys]
        if len(set(kids)) != len(kids):
            raise ValueError("a key id appears twice")
        return self


class PassUseCount(Message):
    pass_id: Id = Field(alias="pass", description="Pass id (the token's cti)")
    count: int = Field(ge=1, le=2**31 - 1, description="Uses the reporting gateway has counted in all")
    at: AwareDatetime | None = Field(
        default=None, description="When the last of them was; absent in a re-announcement after a reconnect"
    )

    @classmethod
    def of(cls, pass_id: str, count: int, at: datetime | None = None) -> PassUseCount:
        return cls.model_validate({"pass": pass_id, "count": count, "at": at})


class PassUses(Message):
    """Use counts of visitor passes at one gateway, on its own `passes/uses`; every gateway of the site reads
    them all. A count is a running total, so a merge keeps the largest per (pass, gateway): re-delivery and
    reordering change nothing."""

    gateway: Id = Field(description="The reporting gateway; must be the gateway of the topic")
    uses: list[PassUseCount] = Field(min_length=1, max_length=1000)


# --- BLE phone keys (docs/ble-phone-keys.md): one gateway's full key list ------------------------------------

MAX_BLE_KEYS = 20_000


class WireBleKey(Message):
    """One resident phone key. The key id is the value of the person's `ble` credential in the access list:
    the gateway verifies the phone's token with `key`, then decides on that credential as on a card number."""

    id: Id = Field(description="Key id: the value of the person's 'ble' credential in the access list")
    person: Id = Field(description="The person the phone belongs to (for audit; the credential decides)")
    key: Hex64 = Field(description="The 32-byte secret, 64 lowercase hex digits")
    status: Literal["active", "revoked"] = "active"
    valid_until: AwareDatetime | None = Field(
        default=None, description="Exclusive end of validity; absent: until revoked"
    )


class BleKeyList(Message):
    """Every phone key one gateway's BLE readers know, on its own `ble/keys` (retained). Always the full list
    with a version: the gateway applies a list whose `version` is above the one it holds; a key left out or
    revoked stops opening doors the moment the list is applied."""

    site: Id
    gateway: Id = Field(description="The gateway of the topic; a list for another gateway is refused")
    version: int = Field(ge=1, description="Increases with every change; an older or equal list is ignored")
    keys: list[WireBleKey] = Field(max_length=MAX_BLE_KEYS)
    server_time: AwareDatetime | None = Field(default=None, description="The cloud's clock when sent")

    @model_validator(mode="after")
    def _unique_ids(self) -> BleKeyList:
        ids = [k.id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("a key id appears twice")
        return self


def iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds")
