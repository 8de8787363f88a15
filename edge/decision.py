"""The access decision: (credential, reader, time, gateway state) -> Decision.

`evaluate` is a pure function: it reads the in-memory access list and state and returns a Decision with an
enumerated reason; it never touches the disk or the network. `DecisionEngine` wraps it and records the
consequences of a grant (anti-passback position, visitor pass uses) in the state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from edge.model import (
    AccessList,
    AntiPassbackMode,
    CredentialKind,
    Direction,
    DoorMode,
    Person,
    Reader,
    Site,
    Status,
    VisitorPass,
)
from edge.schedule import is_open


class Reason(StrEnum):
    GRANTED = "granted"
    GRANTED_RESPONDER = "granted_responder"  # a responder during lockdown or at a locked door
    UNKNOWN_READER = "unknown_reader"
    UNKNOWN_CREDENTIAL = "unknown_credential"
    CREDENTIAL_REVOKED = "credential_revoked"
    CREDENTIAL_DISABLED = "credential_disabled"
    CREDENTIAL_NOT_YET_VALID = "credential_not_yet_valid"
    CREDENTIAL_EXPIRED = "credential_expired"
    PERSON_DISABLED = "person_disabled"
    PERSON_NOT_YET_VALID = "person_not_yet_valid"
    PERSON_EXPIRED = "person_expired"
    NO_ACCESS_TO_DOOR = "no_access_to_door"
    OUTSIDE_SCHEDULE = "outside_schedule"
    DOOR_LOCKED = "door_locked"
    LOCKDOWN = "lockdown"
    ANTI_PASSBACK = "anti_passback"
    PASS_REVOKED = "pass_revoked"
    PASS_NOT_YET_VALID = "pass_not_yet_valid"
    PASS_EXPIRED = "pass_expired"
    PASS_WRONG_DOOR = "pass_wrong_door"
    PASS_USED_UP = "pass_used_up"
    # A visitor pass token that cannot be trusted (edge.passes); checked before the rest of the decision.
    PASS_MALFORMED = "pass_malformed"
    PASS_UNKNOWN_KEY = "pass_unknown_key"
    PASS_BAD_SIGNATURE = "pass_bad_signature"
    PASS_KEY_RETIRED = "pass_key_retired"
    PASS_WRONG_SITE = "pass_wrong_site"
    CLOCK_UNTRUSTED = "clock_untrusted"  # passes fail closed while the gateway cannot trust its clock
    # A door that needs a face and a second credential got one of them (edge.face.factors).
    SECOND_FACTOR_REQUIRED = "second_factor_required"

    @property
    def granted(self) -> bool:
        return self in (Reason.GRANTED, Reason.GRANTED_RESPONDER)


@dataclass(frozen=True, slots=True)
class AccessRequest:
    reader_id: str
    kind: CredentialKind
    value: str
    at: datetime  # timezone-aware


@dataclass(frozen=True, slots=True)
class Decision:
    reason: Reason
    reader_id: str
    door_id: str | None
    kind: CredentialKind
    credential: str  # as presented (card number, pass id, ...); PINs arrive already hashed
    at: datetime
    person_id: str | None = None
    pass_id: str | None = None
    direction: Direction | None = None
    apb_violation: bool = False  # soft anti-passback: granted, but the entry was out of order

    @property
    def granted(self) -> bool:
        return self.reason.granted


@dataclass(slots=True)
class _Position:
    direction: Direction
    mono: float


@dataclass(slots=True)
class GatewayState:
    """Mutable state the decision reads: door modes, site lockdown, anti-passback positions, pass uses."""

    door_modes: dict[str, DoorMode] = field(default_factory=dict)
    lockdown: bool = False
    # (subject, area) -> last direction through that area and when (monotonic seconds)
    positions: dict[tuple[str, str], _Position] = field(default_factory=dict)
    pass_uses: dict[str, int] = field(default_factory=dict)

    def mode_of(self, door_id: str) -> DoorMode:
        if self.lockdown:
            return DoorMode.LOCKDOWN
        return self.door_modes.get(door_id, DoorMode.NORMAL)


def _window(valid_from: datetime | None, valid_until: datetime | None, at: datetime) -> tuple[bool, bool]:
    """(not yet valid, expired) for a validity window; the end is exclusive."""
    return (valid_from is not None and at < valid_from, valid_until is not None and at >= valid_until)


def evaluate(
    req: AccessRequest,
    site: Site,
    acl: AccessList,
    state: GatewayState,
    mono: float,
    tz: ZoneInfo,
    verified: VisitorPass | None = None,
) -> Decision:
    """Decide one request. Pure: reads its arguments, changes nothing.

    `verified` is a visitor pass whose token was verified (edge.passes): its signed terms decide instead of an
    access list entry, and an access list entry with the same id can only take it away (revocation).
    """

    def out(reason: Reason, **kw: object) -> Decision:
        return Decision(
            reason=reason,
            reader_id=req.reader_id,
            door_id=reader.door_id if reader else None,
            kind=req.kind,
            credential=req.value,
            at=req.at,
            direction=reader.direction if reader else None,
            **kw,  # type: ignore[arg-type]
        )

    reader = site.readers.get(req.reader_id)
    if reader is None:
        return out(Reason.UNKNOWN_READER)
    door_id = reader.door_id
    mode = state.mode_of(door_id)

    if req.kind is CredentialKind.PASS:
        listed = acl.passes.get(req.value)
        vp = verified or listed
        if vp is None:
            return out(Reason.UNKNOWN_CREDENTIAL)
        pid = vp.id
        if vp.status is not Status.ACTIVE or (listed is not None and listed.status is not Status.ACTIVE):
            return out(Reason.PASS_REVOKED, pass_id=pid)
        early, late = _window(vp.valid_from, vp.valid_until, req.at)
        if early:
            return out(Reason.PASS_NOT_YET_VALID, pass_id=pid)
        if late:
            return out(Reason.PASS_EXPIRED, pass_id=pid)
        if mode is DoorMode.LOCKDOWN:
            return out(Reason.LOCKDOWN, pass_id=pid)
        if mode is DoorMode.LOCKED:
            return out(Reason.DOOR_LOCKED, pass_id=pid)
        if door_id not in vp.door_ids:
            return out(Reason.PASS_WRONG_DOOR, pass_id=pid)
        if vp.max_uses is not None and state.pass_uses.get(pid, 0) >= vp.max_uses:
            return out(Reason.PASS_USED_UP, pass_id=pid)
        apb = _anti_passback(site, state, reader, f"pass:{pid}", mono)
        if apb is Reason.ANTI_PASSBACK:
            return out(Reason.ANTI_PASSBACK, pass_id=pid)
        return out(Reason.GRANTED, pass_id=pid, apb_violation=apb is not None)

    cred = acl.credentials.get((req.kind, req.value))
    if cred is None:
        return out(Reason.UNKNOWN_CREDENTIAL)
    person = acl.people.get(cred.person_id)
    if person is None:  # validate() prevents this; treat as unknown rather than crash
        return out(Reason.UNKNOWN_CREDENTIAL)
    who = person.id
    if cred.status is Status.REVOKED:
        return out(Reason.CREDENTIAL_REVOKED, person_id=who)
    if cred.status is Status.DISABLED:
        return out(Reason.CREDENTIAL_DISABLED, person_id=who)
    early, late = _window(cred.valid_from, cred.valid_until, req.at)
    if early:
        return out(Reason.CREDENTIAL_NOT_YET_VALID, person_id=who)
    if late:
        return out(Reason.CREDENTIAL_EXPIRED, person_id=who)
    if person.status is not Status.ACTIVE:
        return out(Reason.PERSON_DISABLED, person_id=who)
    early, late = _window(person.valid_from, person.valid_until, req.at)
    if early:
        return out(Reason.PERSON_NOT_YET_VALID, person_id=who)
    if late:
        return out(Reason.PERSON_EXPIRED, person_id=who)

    if mode in (DoorMode.LOCKDOWN, DoorMode.LOCKED):
        if person.responder:
            return out(Reason.GRANTED_RESPONDER, person_id=who)
        return out(Reason.LOCKDOWN if mode is DoorMode.LOCKDOWN else Reason.DOOR_LOCKED, person_id=who)

    schedule_reason = _schedule_check(person, door_id, acl, req.at, tz)
    if schedule_reason is not None:
        return out(schedule_reason, person_id=who)

    apb = _anti_passback(site, state, reader, f"person:{who}", mono)
    if apb is Reason.ANTI_PASSBACK:
        return out(Reason.ANTI_PASSBACK, person_id=who)
    return out(Reason.GRANTED, person_id=who, apb_violation=apb is not None)


def refuse(req: AccessRequest, site: Site, reason: Reason, pass_id: str | None = None) -> Decision:
    """A denial decided before `evaluate` (a pass token that cannot be trusted), shaped like its decisions."""
    reader = site.readers.get(req.reader_id)
    return Decision(
        reason=reason if reader else Reason.UNKNOWN_READER,
        reader_id=req.reader_id,
        door_id=reader.door_id if reader else None,
        kind=req.kind,
        credential=req.value,
        at=req.at,
        pass_id=pass_id,
        direction=reader.direction if reader else None,
    )


def _schedule_check(
    person: Person, door_id: str, acl: AccessList, at: datetime, tz: ZoneInfo
) -> Reason | None:
    """None when some group of the person opens this door now; else why not."""
    any_rule = False
    local: datetime | None = None
    for gid in person.group_ids:
        for sid in acl.schedules_for(gid, door_id):
            any_rule = True
            if sid is None:
                return None
            schedule = acl.schedules.get(sid)
            if schedule is None:
                continue
            if local is None:
                local = at.astimezone(tz)
            if is_open(schedule, local, acl.holidays):
                return None
    return Reason.OUTSIDE_SCHEDULE if any_rule else Reason.NO_ACCESS_TO_DOOR


def _anti_passback(
    site: Site, state: GatewayState, reader: Reader, subject: str, mono: float
) -> Reason | None:
    """None: in order. ANTI_PASSBACK: hard violation (deny). GRANTED: soft violation (grant, flag it)."""
    if reader.area is None:
        return None
    rule = site.anti_passback.get(reader.area)
    if rule is None:
        return None
    last = state.positions.get((subject, reader.area))
    if last is None or last.direction is not reader.direction:
        return None
    if mono - last.mono >= rule.timeout_seconds:
        return None
    return Reason.ANTI_PASSBACK if rule.mode is AntiPassbackMode.HARD else Reason.GRANTED


class DecisionEngine:
    """Holds the site, the access list and the state; decides and records grants. Runs on the event loop."""

    def __init__(self, site: Site, acl: AccessList, state: GatewayState | None = None) -> None:
        self.site = site
        self.acl = acl
        self.state = state or GatewayState(
            door_modes={d.id: d.mode for d in site.doors.values()},
        )
        self.tz = ZoneInfo(site.timezone)

    def decide(self, req: AccessRequest, mono: float, verified: VisitorPass | None = None) -> Decision:
        decision = evaluate(req, self.site, self.acl, self.state, mono, self.tz, verified)
        if decision.granted:
            self._record(decision, mono)
        return decision

    def prune(self, mono: float) -> int:
        """Forget anti-passback positions older than their area's timeout (they no longer decide anything), so
        the state stays bounded over months. Returns how many were dropped."""
        rules = self.site.anti_passback
        stale = [
            key
            for key, pos in self.state.positions.items()
            if key[1] not in rules or mono - pos.mono >= rules[key[1]].timeout_seconds
        ]
        for key in stale:
            del self.state.positions[key]
        return len(stale)

    def _record(self, decision: Decision, mono: float) -> None:
        reader = self.site.readers[decision.reader_id]
        if decision.pass_id is not None:
            self.state.pass_uses[decision.pass_id] = self.state.pass_uses.get(decision.pass_id, 0) + 1
            subject = f"pass:{decision.pass_id}"
        else:
            subject = f"person:{decision.person_id}"
        if reader.area is not None and reader.area in self.site.anti_passback:
            self.state.positions[(subject, reader.area)] = _Position(reader.direction, mono)
