"""The access-control domain: who may open which door, when, with what.

Two halves:
- Site topology (doors, readers, anti-passback areas) comes from the gateway's config; it describes hardware.
- The access list (people, groups, schedules, rules, credentials, visitor passes, holidays) comes from the
  property's cloud and is stored in SQLite; it has a version and is replaced atomically.

Hot-path types are frozen, slotted dataclasses: 100,000 people and 200,000 cards must fit in a Pi's memory and be
looked up without touching the disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from edge.errors import AccessListError


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class DoorMode(StrEnum):
    NORMAL = "normal"  # credentials decide
    LOCKED = "locked"  # no credential opens it, except responders; exit still works
    UNLOCKED = "unlocked"  # held unlocked (e.g. office hours); reads are still logged
    LOCKDOWN = "lockdown"  # emergency: everyone denied except responders; unlocked doors relock


class LockType(StrEnum):
    FAIL_SAFE = "fail-safe"  # unlocks when power is lost (maglock): relay energised = locked
    FAIL_SECURE = "fail-secure"  # stays locked when power is lost (strike): relay energised = unlocked


class PersonKind(StrEnum):
    RESIDENT = "resident"
    STAFF = "staff"
    CONTRACTOR = "contractor"


class Status(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    REVOKED = "revoked"


class CredentialKind(StrEnum):
    CARD = "card"
    PIN = "pin"
    BLE = "ble"
    FACE = "face"
    PASS = "pass"


class AntiPassbackMode(StrEnum):
    HARD = "hard"  # deny the second entry
    SOFT = "soft"  # grant, but flag the violation in the event


# --- site topology (from config) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Door:
    id: str
    name: str
    controller: str
    output: int
    unlock_seconds: float = 5.0
    held_seconds: float = 30.0
    lock_type: LockType = LockType.FAIL_SECURE
    mode: DoorMode = DoorMode.NORMAL
    contact_input: int | None = None
    rex_input: int | None = None
    tamper_input: int | None = None


@dataclass(frozen=True, slots=True)
class Reader:
    id: str
    door_id: str
    direction: Direction = Direction.IN
    area: str | None = None  # anti-passback area this reader leads into (IN) or out of (OUT)


@dataclass(frozen=True, slots=True)
class AntiPassbackRule:
    area: str
    mode: AntiPassbackMode = AntiPassbackMode.HARD
    timeout_seconds: float = 600.0  # after this, the same direction is allowed again


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    timezone: str
    doors: Mapping[str, Door]
    readers: Mapping[str, Reader]
    anti_passback: Mapping[str, AntiPassbackRule] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for reader in self.readers.values():
            if reader.door_id not in self.doors:
                raise AccessListError(f"reader {reader.id!r} refers to unknown door {reader.door_id!r}")


# --- access list (from the cloud) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interval:
    """Minutes since local midnight. end <= start means the interval crosses midnight into the next day;
    it belongs to the day it starts on."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (0 <= self.start < 1440 and 0 <= self.end <= 1440):
            raise AccessListError(f"interval {self.start}-{self.end} is outside a day (0..1440 minutes)")

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    @classmethod
    def parse(cls, text: str) -> Interval:
        """'HH:MM-HH:MM', e.g. '07:00-19:00' or '22:00-06:00'; '24:00' ends at midnight."""
        try:
            a, b = text.split("-")
            return cls(_minutes(a), _minutes(b))
        except ValueError as err:
            raise AccessListError(f"bad interval {text!r}: expected 'HH:MM-HH:MM'") from err

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"


def _minutes(hhmm: str) -> int:
    h, m = hhmm.strip().split(":")
    hours, minutes = int(h), int(m)
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise ValueError(hhmm)
    return hours * 60 + minutes


@dataclass(frozen=True, slots=True)
class Schedule:
    """A weekly schedule. weekly[0] is Monday. On a site holiday the holiday intervals apply instead of the
    weekday's (an empty tuple means: closed on holidays)."""

    id: str
    name: str = ""
    weekly: tuple[tuple[Interval, ...], ...] = ((),) * 7
    holidays: tuple[Interval, ...] = ()

    def __post_init__(self) -> None:
        if len(self.weekly) != 7:
            raise AccessListError(f"schedule {self.id!r} needs 7 weekdays, got {len(self.weekly)}")


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class AccessRule:
    """Members of group may open doors during schedule (None = at any time)."""

    id: str
    group_id: str
    door_ids: tuple[str, ...]
    schedule_id: str | None = None


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    name: str
    kind: PersonKind = PersonKind.RESIDENT
    building: str | None = None
    unit: str | None = None
    status: Status = Status.ACTIVE
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    face_consent: bool = False
    responder: bool = False  # may pass during lockdown (security staff, fire wardens)
    group_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Credential:
    """A card number (value = decimal card number, format = e.g. 'h10301'), a PIN (value = hex HMAC of the
    PIN under the site PIN key, so the gateway never holds PINs in the clear), a BLE key id, a face template id."""

    kind: CredentialKind
    value: str
    person_id: str
    status: Status = Status.ACTIVE
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    format: str | None = None

    @property
    def key(self) -> tuple[CredentialKind, str]:
        return (self.kind, self.value)


@dataclass(frozen=True, slots=True)
class VisitorPass:
    id: str
    door_ids: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime
    max_uses: int | None = None  # None: unlimited inside the window
    host_person_id: str | None = None
    host_unit: str | None = None
    label: str = ""  # minimal visitor label, e.g. "Courier" or "Ms. Li"; no further personal data
    status: Status = Status.ACTIVE


@dataclass(slots=True)
class AccessList:
    """The in-memory access list: every lookup the decision engine makes is a dict access.

    Mutations (deltas from the cloud) go through the methods below so the derived rule index stays right.
    """

    version: int = 0
    people: dict[str, Person] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    rules: dict[str, AccessRule] = field(default_factory=dict)
    credentials: dict[tuple[CredentialKind, str], Credential] = field(default_factory=dict)
    passes: dict[str, VisitorPass] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()
    # (group_id, door_id) -> schedules that allow it; None in the tuple means "always".
    _grants: dict[tuple[str, str], tuple[str | None, ...]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        *,
        version: int,
        people: Iterable[Person] = (),
        groups: Iterable[Group] = (),
        schedules: Iterable[Schedule] = (),
        rules: Iterable[AccessRule] = (),
        credentials: Iterable[Credential] = (),
        passes: Iterable[VisitorPass] = (),
        holidays: Iterable[date] = (),
        share_values: bool = True,
    ) -> AccessList:
        """The list, validated and indexed. `share_values`: make equal field values one object each
        (share_repeated_values); a caller that already built its objects that way (the store's loader) skips
        the pass."""
        acl = cls(
            version=version,
            people={p.id: p for p in people},
            groups={g.id: g for g in groups},
            schedules={s.id: s for s in schedules},
            rules={r.id: r for r in rules},
            credentials={c.key: c for c in credentials},
            passes={p.id: p for p in passes},
            holidays=frozenset(holidays),
        )
        acl.validate()
        if share_values:
            share_repeated_values(acl)
        acl.reindex()
        return acl

    def validate(self) -> None:
        """Reject references to things that do not exist (a rule for an unknown group, a card of nobody)."""
        for rule in self.rules.values():
            if rule.group_id not in self.groups:
                raise AccessListError(f"rule {rule.id!r} refers to unknown group {rule.group_id!r}")
            if rule.schedule_id is not None and rule.schedule_id not in self.schedules:
                raise AccessListError(f"rule {rule.id!r} refers to unknown schedule {rule.schedule_id!r}")
        for person in self.people.values():
            for gid in person.group_ids:
                if gid not in self.groups:
                    raise AccessListError(f"person {person.id!r} is in unknown group {gid!r}")
        for cred in self.credentials.values():
            if cred.person_id not in self.people:
                raise AccessListError(f"{cred.kind} credential belongs to unknown person {cred.person_id!r}")

    def reindex(self) -> None:
        grants: dict[tuple[str, str], list[str | None]] = {}
        for rule in self.rules.values():
            for door_id in rule.door_ids:
                grants.setdefault((rule.group_id, door_id), []).append(rule.schedule_id)
        self._grants = {k: tuple(v) for k, v in grants.items()}

    def schedules_for(self, group_id: str, door_id: str) -> tuple[str | None, ...]:
        return self._grants.get((group_id, door_id), ())

    # Deltas. Callers apply revocations before grants (see cloud_sync).
    def upsert_rule(self, rule: AccessRule) -> None:
        self.rules[rule.id] = rule
        self.reindex()

    def remove_rule(self, rule_id: str) -> None:
        if self.rules.pop(rule_id, None) is not None:
            self.reindex()

    def remove_person(self, person_id: str) -> None:
        """Remove a person and every credential of theirs."""
        self.people.pop(person_id, None)
        for key in [k for k, c in self.credentials.items() if c.person_id == person_id]:
            del self.credentials[key]

    def counts(self) -> dict[str, int]:
        return {
            "people": len(self.people),
            "groups": len(self.groups),
            "schedules": len(self.schedules),
            "rules": len(self.rules),
            "credentials": len(self.credentials),
            "passes": len(self.passes),
            "holidays": len(self.holidays),
        }


def share_repeated_values(acl: AccessList) -> None:
    """Make equal field values of the access list one shared object each: the person id a card refers to is
    the person's own id string, and each card format, building, unit, group list, door list, pass label and
    validity time exists once. What arrives from SQLite rows or the cloud's JSON is a fresh object per field
    per row; at 100,000 people, 200,000 cards and 100,000 passes the copies cost ~50 MB of a Pi's memory.

    Only immutable values that are equal in every respect are shared (str, int, tuples of str, datetimes with
    the same tzinfo), so no lookup or comparison can tell the difference. The frozen objects are updated in
    place with object.__setattr__, as their own __init__ does: building a second set of objects would double
    the peak memory of a load.
    """
    strings: dict[str, str] = {}
    ints: dict[int, int] = {}
    names: dict[tuple[str, ...], tuple[str, ...]] = {}
    times: dict[tuple[datetime, object], datetime] = {}

    def text(value: str | None) -> str | None:
        return None if value is None else strings.setdefault(value, value)

    def ids(value: tuple[str, ...]) -> tuple[str, ...]:
        shared = names.get(value)
        if shared is None:
            shared = names[value] = tuple(strings.setdefault(v, v) for v in value)
        return shared

    def time(value: datetime | None) -> datetime | None:
        return None if value is None else times.setdefault((value, value.tzinfo), value)

    def update(obj: object, field_name: str, value: object) -> None:
        if getattr(obj, field_name) is not value:
            object.__setattr__(obj, field_name, value)

    for group_id in acl.groups:
        strings.setdefault(group_id, group_id)
    for schedule_id in acl.schedules:
        strings.setdefault(schedule_id, schedule_id)
    for person_id in acl.people:  # the dict keys: the canonical person id strings
        strings.setdefault(person_id, person_id)
    for rule in acl.rules.values():
        update(rule, "group_id", text(rule.group_id))
        update(rule, "door_ids", ids(rule.door_ids))
        update(rule, "schedule_id", text(rule.schedule_id))
    for person in acl.people.values():
        update(person, "id", text(person.id))
        update(person, "building", text(person.building))
        update(person, "unit", text(person.unit))
        update(person, "group_ids", ids(person.group_ids))
        update(person, "valid_from", time(person.valid_from))
        update(person, "valid_until", time(person.valid_until))
    for cred in acl.credentials.values():
        update(cred, "person_id", text(cred.person_id))
        update(cred, "format", text(cred.format))
        update(cred, "valid_from", time(cred.valid_from))
        update(cred, "valid_until", time(cred.valid_until))
    for visitor_pass in acl.passes.values():
        update(visitor_pass, "door_ids", ids(visitor_pass.door_ids))
        update(visitor_pass, "valid_from", time(visitor_pass.valid_from))
        update(visitor_pass, "valid_until", time(visitor_pass.valid_until))
        if visitor_pass.max_uses is not None:
            update(visitor_pass, "max_uses", ints.setdefault(visitor_pass.max_uses, visitor_pass.max_uses))
        update(visitor_pass, "host_person_id", text(visitor_pass.host_person_id))
        update(visitor_pass, "host_unit", text(visitor_pass.host_unit))
        update(visitor_pass, "label", text(visitor_pass.label))
