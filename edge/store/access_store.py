"""The access list on disk: a full snapshot replaced atomically, plus small deltas for the cloud sync.

Why a replace is one transaction: the gateway must always decide from one complete version of the list. If
the box loses power while a new snapshot of 100,000 people is being written, the transaction is never
committed and the next start loads the previous version, whole (SQLite's WAL discards the uncommitted
frames).

Rows are written with `executemany` over generators, so a snapshot is streamed into SQLite without building
a second copy of it in memory. Loading builds the frozen model objects and hands them to `AccessList.build`,
which validates the references and builds the decision index.

Deltas, and how to group them: every helper here opens `transaction(db)`, so a single call is atomic and
committed on its own. To apply several changes as one unit (a cloud delta and its new version), wrap them:

    with transaction(db):            # or: with db.atomic():
        delete_person(db, "p-17")
        upsert_credential(db, card)
        set_version(db, 42)

Inside an outer transaction each helper becomes a savepoint and nothing is committed until the outer block
ends; an exception anywhere rolls all of it back. Do not use `with db.conn:` for this: sqlite3's connection
context manager does not BEGIN, so each helper would commit on its own.

A delta that refers to something missing (a credential of an unknown person, a person in an unknown group)
raises AccessListError, as `AccessList.validate` would for a snapshot.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import sqlite_utils

from edge.errors import AccessListError, StoreError
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
from edge.store.codec import (
    canonical_json,
    date_to_text,
    dt_to_text,
    dt_to_text_or_none,
    text_to_date,
    text_to_dt,
)
from edge.store.db import transaction

log = logging.getLogger(__name__)

VERSION_KEY = "access_list_version"

_PERSON_KINDS = {k.value: k for k in PersonKind}
_STATUSES = {s.value: s for s in Status}
_CREDENTIAL_KINDS = {k.value: k for k in CredentialKind}

# Children before parents, so clearing never trips a foreign key or runs a cascade.
_CLEAR_ALL = (
    "DELETE FROM credentials",
    "DELETE FROM person_groups",
    "DELETE FROM passes",
    "DELETE FROM rules",
    "DELETE FROM people",
    "DELETE FROM schedules",
    "DELETE FROM groups",
    "DELETE FROM holidays",
)

_INSERT_GROUP = "INSERT INTO groups (id, name) VALUES (?, ?)"
_INSERT_SCHEDULE = "INSERT INTO schedules (id, name, weekly, holidays) VALUES (?, ?, ?, ?)"
_INSERT_RULE = "INSERT INTO rules (id, group_id, door_ids, schedule_id) VALUES (?, ?, ?, ?)"
_INSERT_PERSON = (
    "INSERT INTO people (id, name, kind, building, unit, status, valid_from, valid_until, face_consent,"
    " responder) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_PERSON_GROUP = "INSERT INTO person_groups (person_id, position, group_id) VALUES (?, ?, ?)"
_INSERT_CREDENTIAL = (
    "INSERT INTO credentials (kind, value, person_id, status, valid_from, valid_until, format)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_VISITOR = (
    "INSERT INTO passes (id, door_ids, valid_from, valid_until, max_uses, host_person_id, host_unit, label,"
    " status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_PEOPLE = (
    "SELECT id, name, kind, building, unit, status, valid_from, valid_until, face_consent, responder"
    " FROM people"
)
_SELECT_SCHEDULES = "SELECT id, name, weekly, holidays FROM schedules"
_SELECT_RULES = "SELECT id, group_id, door_ids, schedule_id FROM rules"
_SELECT_CREDENTIALS = (
    "SELECT kind, value, person_id, status, valid_from, valid_until, format FROM credentials"
)
_SELECT_VISITORS = (
    "SELECT id, door_ids, valid_from, valid_until, max_uses, host_person_id, host_unit, label, status"
    " FROM passes"
)
# Rows without children may be replaced whole; people are updated in place (a REPLACE would delete the row and
# cascade to the person's credentials).
_REPLACE_CREDENTIAL = _INSERT_CREDENTIAL.replace("INSERT", "INSERT OR REPLACE", 1)
_REPLACE_VISITOR = _INSERT_VISITOR.replace("INSERT", "INSERT OR REPLACE", 1)
_REPLACE_RULE = _INSERT_RULE.replace("INSERT", "INSERT OR REPLACE", 1)


# --- snapshot --------------------------------------------------------------------------------------------


def save_access_list(db: sqlite_utils.Database, acl: AccessList) -> None:
    """Replace the stored access list with `acl`, all or nothing.

    The list is validated first (AccessListError); a naive datetime anywhere raises StoreError. Either way,
    and on a crash, the previously stored version stays as it was.
    """
    acl.validate()
    conn = db.conn
    with _foreign_keys_checked_by_validate(conn), transaction(db):
        for sql in _CLEAR_ALL:
            conn.execute(sql)
        conn.executemany(_INSERT_GROUP, ((g.id, g.name) for g in acl.groups.values()))
        conn.executemany(_INSERT_SCHEDULE, (_schedule_row(s) for s in acl.schedules.values()))
        conn.executemany(_INSERT_RULE, (_rule_row(r) for r in acl.rules.values()))
        conn.executemany(_INSERT_PERSON, (_person_row(p) for p in acl.people.values()))
        conn.executemany(_INSERT_PERSON_GROUP, _person_group_rows(acl.people.values()))
        conn.executemany(_INSERT_CREDENTIAL, (_credential_row(c) for c in acl.credentials.values()))
        conn.executemany(_INSERT_VISITOR, (_pass_row(p) for p in acl.passes.values()))
        conn.executemany("INSERT INTO holidays (day) VALUES (?)", ((date_to_text(d),) for d in acl.holidays))
        _put_version(conn, acl.version)
    log.info("access list version %d saved: %s", acl.version, acl.counts())


def load_access_list(db: sqlite_utils.Database) -> AccessList:
    """The stored access list, validated and indexed (an empty version-0 list if none was ever saved)."""
    conn = db.conn
    decode = _Decoder()
    try:
        groups_of = decode.group_lists(
            conn.execute("SELECT person_id, group_id FROM person_groups ORDER BY person_id, position")
        )
        people = [decode.person(row, groups_of.get(row[0], ())) for row in conn.execute(_SELECT_PEOPLE)]
        del groups_of
        groups = [Group(decode.shared(i), n) for i, n in conn.execute("SELECT id, name FROM groups")]
        schedules = [decode.schedule(row) for row in conn.execute(_SELECT_SCHEDULES)]
        rules = [decode.rule(row) for row in conn.execute(_SELECT_RULES)]
        credentials = [decode.credential(row) for row in conn.execute(_SELECT_CREDENTIALS)]
        passes = [decode.visitor_pass(row) for row in conn.execute(_SELECT_VISITORS)]
        holidays = [text_to_date(d) for (d,) in conn.execute("SELECT day FROM holidays")]
        version = access_list_version(db)
    except (KeyError, ValueError, TypeError) as err:
        raise StoreError(f"stored access list is unreadable: {err!r}") from err
    return AccessList.build(
        version=version,
        people=people,
        groups=groups,
        schedules=schedules,
        rules=rules,
        credentials=credentials,
        passes=passes,
        holidays=holidays,
        share_values=False,  # _Decoder shared them as it built the objects
    )


@contextmanager
def _foreign_keys_checked_by_validate(conn: sqlite3.Connection) -> Iterator[None]:
    """Skip SQLite's per-row foreign key lookups for a snapshot `AccessList.validate` has already checked
    (they are a third of the time of a 100,000-person save). The pragma cannot change inside a
    transaction, so under a caller's transaction the checks simply stay on."""
    enabled = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    if conn.in_transaction or not enabled:
        yield
        return
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        conn.execute("PRAGMA foreign_keys = ON")


def access_list_version(db: sqlite_utils.Database) -> int:
    row = db.conn.execute("SELECT value FROM meta WHERE key = ?", (VERSION_KEY,)).fetchone()
    return 0 if row is None else int(row[0])


# --- deltas ----------------------------------------------------------------------------------------------


def set_version(db: sqlite_utils.Database, version: int) -> None:
    with transaction(db):
        _put_version(db.conn, version)


def upsert_person(db: sqlite_utils.Database, person: Person) -> None:
    """Insert or update a person and their group memberships; their credentials are kept."""
    conn = db.conn
    with transaction(db), _references_checked(f"person {person.id!r}"):
        conn.execute(
            _INSERT_PERSON + " ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind,"
            " building = excluded.building, unit = excluded.unit, status = excluded.status,"
            " valid_from = excluded.valid_from, valid_until = excluded.valid_until,"
            " face_consent = excluded.face_consent, responder = excluded.responder",
            _person_row(person),
        )
        conn.execute("DELETE FROM person_groups WHERE person_id = ?", (person.id,))
        conn.executemany(_INSERT_PERSON_GROUP, _person_group_rows((person,)))


def delete_person(db: sqlite_utils.Database, person_id: str) -> bool:
    """Delete a person, their group memberships and all their credentials; False if there was no such
    person."""
    with transaction(db):
        # The foreign keys cascade; deleting explicitly as well keeps this right on a connection without them.
        db.conn.execute("DELETE FROM credentials WHERE person_id = ?", (person_id,))
        db.conn.execute("DELETE FROM person_groups WHERE person_id = ?", (person_id,))
        return db.conn.execute("DELETE FROM people WHERE id = ?", (person_id,)).rowcount > 0


def upsert_credential(db: sqlite_utils.Database, credential: Credential) -> None:
    with transaction(db), _references_checked(f"{credential.kind} credential of {credential.person_id!r}"):
        db.conn.execute(
            _REPLACE_CREDENTIAL,
            _credential_row(credential),
        )


def delete_credential(db: sqlite_utils.Database, kind: CredentialKind, value: str) -> bool:
    with transaction(db):
        cursor = db.conn.execute("DELETE FROM credentials WHERE kind = ? AND value = ?", (kind.value, value))
        return cursor.rowcount > 0


def upsert_pass(db: sqlite_utils.Database, visitor_pass: VisitorPass) -> None:
    with transaction(db):
        db.conn.execute(
            _REPLACE_VISITOR,
            _pass_row(visitor_pass),
        )


def delete_pass(db: sqlite_utils.Database, pass_id: str) -> bool:
    with transaction(db):
        return db.conn.execute("DELETE FROM passes WHERE id = ?", (pass_id,)).rowcount > 0


def upsert_rule(db: sqlite_utils.Database, rule: AccessRule) -> None:
    with transaction(db), _references_checked(f"rule {rule.id!r}"):
        db.conn.execute(
            _REPLACE_RULE,
            _rule_row(rule),
        )


def delete_rule(db: sqlite_utils.Database, rule_id: str) -> bool:
    with transaction(db):
        return db.conn.execute("DELETE FROM rules WHERE id = ?", (rule_id,)).rowcount > 0


def upsert_group(db: sqlite_utils.Database, group: Group) -> None:
    """Insert or rename a group. Updated in place: rules and memberships refer to it."""
    with transaction(db):
        db.conn.execute(
            _INSERT_GROUP + " ON CONFLICT (id) DO UPDATE SET name = excluded.name", (group.id, group.name)
        )


def upsert_schedule(db: sqlite_utils.Database, schedule: Schedule) -> None:
    """Insert or change a schedule. Updated in place: rules refer to it."""
    with transaction(db):
        db.conn.execute(
            _INSERT_SCHEDULE + " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
            " weekly = excluded.weekly, holidays = excluded.holidays",
            _schedule_row(schedule),
        )


def set_holidays(db: sqlite_utils.Database, days: Iterable[date]) -> None:
    """Replace the site's holiday dates with `days`."""
    with transaction(db):
        db.conn.execute("DELETE FROM holidays")
        db.conn.executemany(
            "INSERT OR IGNORE INTO holidays (day) VALUES (?)", ((date_to_text(d),) for d in days)
        )


@contextmanager
def _references_checked(what: str) -> Iterator[None]:
    """Turn a foreign key violation into the AccessListError a bad delta deserves."""
    try:
        yield
    except sqlite3.IntegrityError as err:
        raise AccessListError(f"{what} refers to something that does not exist: {err}") from err


def _put_version(conn: sqlite3.Connection, version: int) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise AccessListError(f"access list version must be a non-negative integer, not {version!r}")
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (VERSION_KEY, str(version)),
    )


# --- rows <-> model --------------------------------------------------------------------------------------


def _intervals_text(intervals: Iterable[Interval]) -> list[str]:
    return [str(i) for i in intervals]


def _intervals_from(texts: list[str]) -> tuple[Interval, ...]:
    return tuple(Interval.parse(t) for t in texts)


def _schedule_row(s: Schedule) -> tuple[Any, ...]:
    weekly = [_intervals_text(day) for day in s.weekly]
    return (s.id, s.name, canonical_json(weekly), canonical_json(_intervals_text(s.holidays)))


def _rule_row(r: AccessRule) -> tuple[Any, ...]:
    return (r.id, r.group_id, canonical_json(list(r.door_ids)), r.schedule_id)


def _person_row(p: Person) -> tuple[Any, ...]:
    return (
        p.id,
        p.name,
        p.kind.value,
        p.building,
        p.unit,
        p.status.value,
        dt_to_text_or_none(p.valid_from),
        dt_to_text_or_none(p.valid_until),
        int(p.face_consent),
        int(p.responder),
    )


def _person_group_rows(people: Iterable[Person]) -> Iterator[tuple[str, int, str]]:
    for p in people:
        for position, group_id in enumerate(p.group_ids):
            yield (p.id, position, group_id)


def _credential_row(c: Credential) -> tuple[Any, ...]:
    return (
        c.kind.value,
        c.value,
        c.person_id,
        c.status.value,
        dt_to_text_or_none(c.valid_from),
        dt_to_text_or_none(c.valid_until),
        c.format,
    )


def _pass_row(p: VisitorPass) -> tuple[Any, ...]:
    return (
        p.id,
        canonical_json(list(p.door_ids)),
        dt_to_text(p.valid_from),
        dt_to_text(p.valid_until),
        p.max_uses,
        p.host_person_id,
        p.host_unit,
        p.label,
        p.status.value,
    )


class _Decoder:
    """Rows -> model objects. Memoises the texts that repeat across rows (timestamps of a bulk import, door
    lists), which saves parsing time and, by sharing the objects, memory on the gateway.

    Every repeated value is shared as it is decoded (a card's person id is its person's id string; card
    formats, buildings, units, group lists, pass labels exist once): sharing them only afterwards
    (`share_repeated_values`, as `AccessList.build` does for other callers) would free the copies between
    the objects that stay, and those holes keep the process's memory (RSS) up. At 100,000 people, 200,000 cards and
    100,000 passes this is ~50 MB less."""

    def __init__(self) -> None:
        self._times: dict[str, datetime] = {}
        self._names: dict[str, tuple[str, ...]] = {}
        self._texts: dict[str, str] = {}
        self._id_lists: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._ints: dict[int, int] = {}

    def shared(self, value: str) -> str:
        return self._texts.setdefault(value, value)

    def text(self, value: str | None) -> str | None:
        return None if value is None else self.shared(value)

    def id_list(self, values: Iterable[str]) -> tuple[str, ...]:
        key = tuple(values)
        shared = self._id_lists.get(key)
        if shared is None:
            shared = self._id_lists[key] = tuple(self.shared(v) for v in key)
        return shared

    def group_lists(self, rows: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
        """person id -> group ids, from (person_id, group_id) rows ordered by person and position. The person
        ids read here become the shared ones."""
        out: dict[str, tuple[str, ...]] = {}
        person: str | None = None
        current: list[str] = []
        for person_id, group_id in rows:
            if person_id != person:
                if person is not None:
                    out[person] = self.id_list(current)
                person, current = self.shared(person_id), []
            current.append(group_id)
        if person is not None:
            out[person] = self.id_list(current)
        return out

    def time(self, text: str) -> datetime:
        value = self._times.get(text)
        if value is None:
            value = self._times[text] = text_to_dt(text)
        return value

    def time_or_none(self, text: str | None) -> datetime | None:
        return None if text is None else self.time(text)

    def names(self, text: str) -> tuple[str, ...]:
        value = self._names.get(text)
        if value is None:
            value = self._names[text] = tuple(json.loads(text))
        return value

    def schedule(self, row: tuple[Any, ...]) -> Schedule:
        sid, name, weekly, holidays = row
        return Schedule(
            id=self.shared(sid),
            name=name,
            weekly=tuple(_intervals_from(day) for day in json.loads(weekly)),
            holidays=_intervals_from(json.loads(holidays)),
        )

    def rule(self, row: tuple[Any, ...]) -> AccessRule:
        rid, group_id, door_ids, schedule_id = row
        return AccessRule(
            id=rid,
            group_id=self.shared(group_id),
            door_ids=self.names(door_ids),
            schedule_id=self.text(schedule_id),
        )

    def person(self, row: tuple[Any, ...], group_ids: Iterable[str]) -> Person:
        pid, name, kind, building, unit, status, valid_from, valid_until, face_consent, responder = row
        return Person(
            id=self.shared(pid),
            name=name,
            kind=_PERSON_KINDS[kind],
            building=self.text(building),
            unit=self.text(unit),
            status=_STATUSES[status],
            valid_from=self.time_or_none(valid_from),
            valid_until=self.time_or_none(valid_until),
            face_consent=bool(face_consent),
            responder=bool(responder),
            group_ids=self.id_list(group_ids),
        )

    def credential(self, row: tuple[Any, ...]) -> Credential:
        kind, value, person_id, status, valid_from, valid_until, fmt = row
        return Credential(
            kind=_CREDENTIAL_KINDS[kind],
            value=value,
            person_id=self.shared(person_id),
            status=_STATUSES[status],
            valid_from=self.time_or_none(valid_from),
            valid_until=self.time_or_none(valid_until),
            format=self.text(fmt),
        )

    def visitor_pass(self, row: tuple[Any, ...]) -> VisitorPass:
        pid, door_ids, valid_from, valid_until, max_uses, host_person_id, host_unit, label, status = row
        return VisitorPass(
            id=pid,
            door_ids=self.names(door_ids),
            valid_from=self.time(valid_from),
            valid_until=self.time(valid_until),
            max_uses=None if max_uses is None else self._ints.setdefault(max_uses, max_uses),
            host_person_id=self.text(host_person_id),
            host_unit=self.text(host_unit),
            label=self.shared(label),
            status=_STATUSES[status],
        )
