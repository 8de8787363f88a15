"""Access list storage: round trip of every field, atomic replace, deltas, and the 100k-person scale."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils

from edge.errors import AccessListError, StoreError
from edge.model import (
    AccessList,
    AccessRule,
    Credential,
    CredentialKind,
    Person,
    PersonKind,
    Status,
    VisitorPass,
)
from edge.store import (
    access_list_version,
    delete_credential,
    delete_pass,
    delete_person,
    delete_rule,
    load_access_list,
    open_db,
    save_access_list,
    set_version,
    transaction,
    upsert_credential,
    upsert_pass,
    upsert_person,
    upsert_rule,
)

AclFactory = Callable[..., AccessList]  # the bulk_acl fixture (conftest.py)


def _assert_same(loaded: AccessList, expected: AccessList) -> None:
    assert loaded.version == expected.version
    assert loaded.people == expected.people
    assert loaded.groups == expected.groups
    assert loaded.schedules == expected.schedules
    assert loaded.rules == expected.rules
    assert loaded.credentials == expected.credentials
    assert loaded.passes == expected.passes
    assert loaded.holidays == expected.holidays


def _count(db: sqlite_utils.Database, table: str) -> int:
    count: int = db.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return count


def test_empty_database_loads_an_empty_version_zero(db: sqlite_utils.Database) -> None:
    acl = load_access_list(db)
    assert acl.version == 0
    assert acl.counts() == dict.fromkeys(acl.counts(), 0)
    assert access_list_version(db) == 0


def test_every_field_survives_a_round_trip(db: sqlite_utils.Database, sample_acl: AccessList) -> None:
    save_access_list(db, sample_acl)
    loaded = load_access_list(db)

    _assert_same(loaded, sample_acl)
    assert access_list_version(db) == 7
    # Dataclass equality compares instants; check offsets and field details explicitly too.
    wang = loaded.people["p-1"]
    assert wang.name == "Wang Fang 王芳"
    assert wang.group_ids == ("g-res", "g-staff")
    assert wang.face_consent is True
    assert wang.valid_from is not None
    assert wang.valid_from.utcoffset() == timedelta(hours=8)
    assert wang.valid_from.microsecond == 123456
    pin = loaded.credentials[(CredentialKind.PIN, "9f86d081884c7d659a2feaa0c55ad015")]
    assert pin.valid_until is not None
    assert pin.valid_until.utcoffset() == timedelta(hours=-3, minutes=-30)
    assert pin.status is Status.DISABLED
    assert loaded.people["p-2"].responder is True
    assert loaded.people["p-3"].kind is PersonKind.CONTRACTOR
    office = loaded.schedules["s-office"]
    assert [str(i) for i in office.weekly[0]] == ["07:00-19:00", "22:00-06:00"]
    assert office.weekly[6] == ()
    assert [str(i) for i in office.holidays] == ["10:00-24:00"]
    assert office.holidays[0].end == 1440
    assert loaded.passes["v-1"].max_uses == 2
    assert loaded.passes["v-2"].max_uses is None
    assert loaded.rules["r-1"].schedule_id is None
    # The index the decision engine uses is rebuilt on load.
    assert loaded.schedules_for("g-staff", "gate-n") == ("s-office",)
    assert loaded.schedules_for("g-res", "lobby-a") == (None,)


def test_schedule_intervals_are_stored_as_readable_text(
    db: sqlite_utils.Database, sample_acl: AccessList
) -> None:
    save_access_list(db, sample_acl)
    weekly, holidays = db.conn.execute(
        "SELECT weekly, holidays FROM schedules WHERE id = 's-office'"
    ).fetchone()
    assert weekly.startswith('[["07:00-19:00","22:00-06:00"],')
    assert weekly.endswith('["09:00-12:30"],[]]')
    assert holidays == '["10:00-24:00"]'
    valid_from = db.conn.execute("SELECT valid_from FROM people WHERE id = 'p-1'").fetchone()[0]
    assert valid_from == "2026-03-01T08:30:15.123456+08:00"


def test_save_replaces_the_whole_list(
    db: sqlite_utils.Database, sample_acl: AccessList, bulk_acl: AclFactory
) -> None:
    save_access_list(db, bulk_acl(3, people=50, passes=5, tag="old"))
    save_access_list(db, sample_acl)
    _assert_same(load_access_list(db), sample_acl)
    assert _count(db, "people") == 3
    assert _count(db, "person_groups") == 3
    assert _count(db, "holidays") == 2


def test_naive_datetime_fails_the_save_and_keeps_the_old_version(
    db: sqlite_utils.Database, sample_acl: AccessList, bulk_acl: AclFactory
) -> None:
    save_access_list(db, sample_acl)
    new = bulk_acl(8, people=200, passes=20, tag="new")
    last = new.passes["v19"]
    new.passes["v19"] = dataclasses.replace(last, valid_until=datetime(2026, 1, 1, 12, 0))
    with pytest.raises(StoreError, match="naive datetime"):
        save_access_list(db, new)  # fails after people and cards were already written in the transaction
    _assert_same(load_access_list(db), sample_acl)
    assert db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert not db.conn.in_transaction


def test_inconsistent_list_is_refused_before_writing(
    db: sqlite_utils.Database, sample_acl: AccessList
) -> None:
    save_access_list(db, sample_acl)
    broken = AccessList(version=9, people=dict(sample_acl.people), credentials=dict(sample_acl.credentials))
    with pytest.raises(AccessListError, match="unknown group"):
        save_access_list(db, broken)
    _assert_same(load_access_list(db), sample_acl)


def test_save_inside_a_caller_transaction_rolls_back_with_it(
    db: sqlite_utils.Database, sample_acl: AccessList, bulk_acl: AclFactory
) -> None:
    save_access_list(db, sample_acl)

    def replace_then_fail() -> None:
        with transaction(db):
            save_access_list(db, bulk_acl(9, people=100, tag="never"))
            assert access_list_version(db) == 9
            raise RuntimeError("caller changes its mind")

    with pytest.raises(RuntimeError):
        replace_then_fail()
    _assert_same(load_access_list(db), sample_acl)


def test_saved_list_is_visible_to_another_connection(
    db: sqlite_utils.Database, db_path: Path, sample_acl: AccessList
) -> None:
    save_access_list(db, sample_acl)
    other = open_db(db_path)
    try:
        _assert_same(load_access_list(other), sample_acl)
    finally:
        other.close()


# --- deltas ----------------------------------------------------------------------------------------------


def test_upsert_person_inserts_then_updates_and_keeps_credentials(
    db: sqlite_utils.Database, sample_acl: AccessList
) -> None:
    save_access_list(db, sample_acl)
    newcomer = Person("p-9", "New Tenant", unit="0101", group_ids=("g-res",))
    upsert_person(db, newcomer)
    assert load_access_list(db).people["p-9"] == newcomer

    changed = dataclasses.replace(
        sample_acl.people["p-1"], name="Wang Fang", status=Status.DISABLED, group_ids=("g-staff",)
    )
    upsert_person(db, changed)
    loaded = load_access_list(db)
    assert loaded.people["p-1"] == changed
    assert loaded.schedules_for("g-staff", "gate-n") == ("s-office",)
    # An update is not a delete: the person's three credentials are still there.
    assert sorted(c.value for c in loaded.credentials.values() if c.person_id == "p-1") == [
        "12345678",
        "9f86d081884c7d659a2feaa0c55ad015",
        "tmpl-1",
    ]


def test_delete_person_deletes_their_credentials_and_memberships(
    db: sqlite_utils.Database, sample_acl: AccessList
) -> None:
    save_access_list(db, sample_acl)
    assert delete_person(db, "p-1") is True
    assert delete_person(db, "p-1") is False
    loaded = load_access_list(db)
    assert "p-1" not in loaded.people
    assert sorted(c.person_id for c in loaded.credentials.values()) == ["p-2", "p-3"]
    assert db.conn.execute("SELECT count(*) FROM person_groups WHERE person_id = 'p-1'").fetchone()[0] == 0
    # The pass whose host was deleted stays: passes outlive their host's record.
    assert loaded.passes["v-1"].host_person_id == "p-1"


def test_credential_upsert_and_delete(db: sqlite_utils.Database, sample_acl: AccessList) -> None:
    save_access_list(db, sample_acl)
    card = Credential(CredentialKind.CARD, "555", "p-2", valid_until=datetime(2027, 1, 1, tzinfo=UTC))
    upsert_credential(db, card)
    revoked = dataclasses.replace(card, status=Status.REVOKED, person_id="p-3")
    upsert_credential(db, revoked)
    assert load_access_list(db).credentials[(CredentialKind.CARD, "555")] == revoked

    assert delete_credential(db, CredentialKind.CARD, "555") is True
    assert delete_credential(db, CredentialKind.CARD, "555") is False
    assert delete_credential(db, CredentialKind.PIN, "12345678") is False  # kind is part of the key
    assert (CredentialKind.CARD, "12345678") in load_access_list(db).credentials


def test_delta_referring_to_unknown_things_is_refused(
    db: sqlite_utils.Database, sample_acl: AccessList
) -> None:
    save_access_list(db, sample_acl)
    with pytest.raises(AccessListError, match="'p-404'"):
        upsert_credential(db, Credential(CredentialKind.CARD, "1", "p-404"))
    with pytest.raises(AccessListError, match="person 'p-9'"):
        upsert_person(db, Person("p-9", "X", group_ids=("g-404",)))
    with pytest.raises(AccessListError, match="rule 'r-9'"):
        upsert_rule(db, AccessRule("r-9", "g-res", ("gate-n",), "s-404"))
    _assert_same(load_access_list(db), sample_acl)


def test_pass_and_rule_deltas(db: sqlite_utils.Database, sample_acl: AccessList) -> None:
    save_access_list(db, sample_acl)
    start = datetime(2026, 6, 1, 9, tzinfo=UTC)
    visitor = VisitorPass("v-3", ("gate-n",), start, start + timedelta(hours=2), max_uses=1, label="Ms. Li")
    upsert_pass(db, visitor)
    used_up = dataclasses.replace(visitor, status=Status.REVOKED)
    upsert_pass(db, used_up)
    rule = AccessRule("r-9", "g-empty", ("lobby-a", "gate-n"), "s-office")
    upsert_rule(db, rule)

    loaded = load_access_list(db)
    assert loaded.passes["v-3"] == used_up
    assert loaded.rules["r-9"] == rule
    assert loaded.schedules_for("g-empty", "lobby-a") == ("s-office",)

    assert delete_pass(db, "v-3") is True
    assert delete_pass(db, "v-3") is False
    assert delete_rule(db, "r-9") is True
    assert delete_rule(db, "r-9") is False
    loaded = load_access_list(db)
    assert "v-3" not in loaded.passes
    assert loaded.schedules_for("g-empty", "lobby-a") == ()


def test_set_version(db: sqlite_utils.Database, sample_acl: AccessList) -> None:
    save_access_list(db, sample_acl)
    set_version(db, 8)
    assert access_list_version(db) == 8
    assert load_access_list(db).version == 8
    with pytest.raises(AccessListError, match="non-negative integer"):
        set_version(db, -1)
    assert access_list_version(db) == 8


def test_a_grouped_delta_is_all_or_nothing(
    db: sqlite_utils.Database, db_path: Path, sample_acl: AccessList
) -> None:
    save_access_list(db, sample_acl)

    def delta_with_a_bad_change() -> None:
        with transaction(db):
            delete_person(db, "p-2")
            upsert_credential(db, Credential(CredentialKind.CARD, "777", "p-1"))
            set_version(db, 8)
            upsert_credential(db, Credential(CredentialKind.CARD, "778", "p-nobody"))  # fails

    with pytest.raises(AccessListError):
        delta_with_a_bad_change()
    _assert_same(load_access_list(db), sample_acl)

    with transaction(db):
        delete_person(db, "p-2")
        upsert_credential(db, Credential(CredentialKind.CARD, "777", "p-1"))
        set_version(db, 8)
        # Nothing is visible to other connections until the block ends.
        other = sqlite3.connect(db_path)
        try:
            assert other.execute("SELECT count(*) FROM people WHERE id = 'p-2'").fetchone()[0] == 1
        finally:
            other.close()
    loaded = load_access_list(db)
    assert loaded.version == 8
    assert "p-2" not in loaded.people
    assert (CredentialKind.BLE, "ble-key-1") not in loaded.credentials
    assert loaded.credentials[(CredentialKind.CARD, "777")].person_id == "p-1"


# --- scale -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_full_scale_list_round_trips(db: sqlite_utils.Database, bulk_acl: AclFactory) -> None:
    """100,000 people, 200,000 cards, 100,000 passes (timed separately, never asserted)."""
    acl = bulk_acl(42, people=100_000, cards_per_person=2, passes=100_000, tag="big")
    save_access_list(db, acl)
    loaded = load_access_list(db)
    assert loaded.counts() == {
        "people": 100_000,
        "groups": 20,
        "schedules": 5,
        "rules": 40,
        "credentials": 200_000,
        "passes": 100_000,
        "holidays": 10,
    }
    assert loaded.version == 42
    assert loaded.people == acl.people
    assert loaded.credentials == acl.credentials
    assert loaded.passes == acl.passes
