"""Repeated values of the access list are one object each, on load and on AccessList.build (the memory of a
100,000-person list, bench/bench_footprint.py), and sharing them never changes a value."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import sqlite_utils

from edge.model import (
    AccessList,
    AccessRule,
    Credential,
    CredentialKind,
    Group,
    Person,
    VisitorPass,
    share_repeated_values,
)
from edge.store import load_access_list, save_access_list

AclFactory = Callable[..., AccessList]  # the bulk_acl fixture (conftest.py)


def _copy(text: str) -> str:
    """An equal string that is a different object (as each SQLite row or JSON document gives)."""
    return "".join(list(text))


def test_a_loaded_list_shares_repeated_values(db: sqlite_utils.Database, bulk_acl: AclFactory) -> None:
    expected = bulk_acl(3, people=300, passes=40)
    save_access_list(db, expected)
    loaded = load_access_list(db)
    assert loaded.people == expected.people
    assert loaded.credentials == expected.credentials
    assert loaded.passes == expected.passes
    for cred in loaded.credentials.values():
        assert cred.person_id is loaded.people[cred.person_id].id
    group_ids = {id(g) for p in loaded.people.values() for g in p.group_ids}
    assert group_ids <= {id(g.id) for g in loaded.groups.values()}
    for field in ("building", "unit", "group_ids"):
        values = [getattr(p, field) for p in loaded.people.values() if getattr(p, field) is not None]
        assert len({id(v) for v in values}) == len(set(values)), field
    formats = [c.format for c in loaded.credentials.values() if c.format is not None]
    assert len({id(f) for f in formats}) == len(set(formats))
    for field in ("label", "host_unit", "door_ids", "valid_from"):
        values = [getattr(v, field) for v in loaded.passes.values() if getattr(v, field) is not None]
        assert len({id(v) for v in values}) == len(set(values)), field


def test_build_shares_copies_of_equal_values() -> None:
    people = [
        Person(
            _copy(f"p{i}"), f"Person {i}", building=_copy("B2"), unit=_copy("1203"), group_ids=(_copy("grp"),)
        )
        for i in range(3)
    ]
    cards = [
        Credential(CredentialKind.CARD, str(100 + i), _copy(f"p{i % 3}"), format=_copy("h10301"))
        for i in range(6)
    ]
    until = datetime(2026, 6, 1, tzinfo=UTC)
    passes = [
        VisitorPass(
            f"v{i}",
            (_copy("d1"),),
            until - timedelta(hours=1),
            until + timedelta(hours=i),
            max_uses=int(str(10**6)),
            label=_copy("Courier"),
        )
        for i in range(3)
    ]
    acl = AccessList.build(
        version=1,
        people=people,
        groups=[Group("grp")],
        rules=[AccessRule("r", _copy("grp"), (_copy("d1"),))],
        credentials=cards,
        passes=passes,
    )
    assert len({id(p.building) for p in acl.people.values()}) == 1
    assert len({id(p.group_ids) for p in acl.people.values()}) == 1
    assert acl.people["p0"].group_ids[0] is acl.groups["grp"].id is acl.rules["r"].group_id
    for cred in acl.credentials.values():
        assert cred.person_id is acl.people[cred.person_id].id
    assert len({id(c.format) for c in acl.credentials.values()}) == 1
    assert len({id(v.label) for v in acl.passes.values()}) == 1
    assert len({id(v.valid_from) for v in acl.passes.values()}) == 1
    assert len({id(v.max_uses) for v in acl.passes.values()}) == 1
    assert acl.passes["v0"].door_ids is acl.rules["r"].door_ids
    assert acl.schedules_for("grp", "d1") == (None,)


def test_equal_times_in_other_zones_are_not_merged() -> None:
    """Equal instants with different UTC offsets compare equal but print differently: both are kept."""
    utc = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
    shanghai = utc.astimezone(timezone(timedelta(hours=8)))
    assert utc == shanghai
    acl = AccessList.build(
        version=1,
        people=[Person("a", "A", valid_from=utc), Person("b", "B", valid_from=shanghai)],
    )
    assert acl.people["a"].valid_from is utc
    assert acl.people["b"].valid_from is shanghai
    assert acl.people["b"].valid_from.utcoffset() == timedelta(hours=8)
    share_repeated_values(acl)  # a second pass changes nothing
    assert acl.people["b"].valid_from is shanghai
