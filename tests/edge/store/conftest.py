"""Fixtures for the store tests: a database file per test and access lists that use every field."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlite_utils

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
from edge.store import open_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
MINUS_0330 = timezone(timedelta(hours=-3, minutes=-30))

AclFactory = Callable[..., AccessList]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "gateway.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[sqlite_utils.Database]:
    database = open_db(db_path)
    yield database
    database.close()


def _sample_acl(version: int = 7) -> AccessList:
    """A small list in which every field of every type takes a non-default value somewhere."""
    t0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=SHANGHAI)
    weekday = (Interval.parse("07:00-19:00"), Interval.parse("22:00-06:00"))
    office = Schedule(
        id="s-office",
        name="Office hours",
        weekly=(weekday, weekday, weekday, weekday, weekday, (Interval.parse("09:00-12:30"),), ()),
        holidays=(Interval.parse("10:00-24:00"),),
    )
    closed = Schedule(id="s-closed")  # all defaults: seven empty days, closed on holidays
    return AccessList.build(
        version=version,
        groups=[Group("g-res", "Residents"), Group("g-staff", "Staff"), Group("g-empty")],
        schedules=[office, closed],
        rules=[
            AccessRule("r-1", "g-res", ("gate-n", "lobby-a")),
            AccessRule("r-2", "g-staff", ("gate-n",), "s-office"),
            AccessRule("r-3", "g-staff", (), "s-closed"),
        ],
        people=[
            Person(
                id="p-1",
                name="Wang Fang 王芳",
                kind=PersonKind.RESIDENT,
                building="B2",
                unit="1203",
                status=Status.ACTIVE,
                valid_from=t0,
                valid_until=t0 + timedelta(days=365),
                face_consent=True,
                responder=False,
                group_ids=("g-res", "g-staff"),
            ),
            Person(
                id="p-2",
                name="Guard Li",
                kind=PersonKind.STAFF,
                status=Status.DISABLED,
                valid_from=datetime(2025, 1, 1, tzinfo=UTC),
                responder=True,
                group_ids=("g-staff",),
            ),
            Person(id="p-3", name="Contractor", kind=PersonKind.CONTRACTOR, status=Status.REVOKED),
        ],
        credentials=[
            Credential(CredentialKind.CARD, "12345678", "p-1", format="h10301"),
            Credential(
                CredentialKind.PIN,
                "9f86d081884c7d659a2feaa0c55ad015",
                "p-1",
                status=Status.DISABLED,
                valid_from=datetime(2026, 1, 1, 0, 0, tzinfo=MINUS_0330),
                valid_until=datetime(2027, 1, 1, 0, 0, tzinfo=MINUS_0330),
            ),
            Credential(CredentialKind.BLE, "ble-key-1", "p-2", status=Status.REVOKED),
            Credential(CredentialKind.FACE, "tmpl-1", "p-1"),
            # The same value under another kind is a different credential.
            Credential(CredentialKind.CARD, "ble-key-1", "p-3"),
        ],
        passes=[
            VisitorPass(
                id="v-1",
                door_ids=("gate-n", "lobby-a"),
                valid_from=t0,
                valid_until=t0 + timedelta(hours=4),
                max_uses=2,
                host_person_id="p-1",
                host_unit="B2-1203",
                label="Courier",
                status=Status.ACTIVE,
            ),
            VisitorPass(
                id="v-2",
                door_ids=(),
                valid_from=datetime(2026, 5, 1, tzinfo=UTC),
                valid_until=datetime(2026, 5, 2, tzinfo=UTC),
                status=Status.REVOKED,
            ),
        ],
        holidays=[date(2026, 1, 1), date(2026, 10, 1)],
    )


@pytest.fixture
def sample_acl() -> AccessList:
    return _sample_acl()


def _bulk_acl(
    version: int, *, people: int, cards_per_person: int = 2, passes: int = 0, tag: str = ""
) -> AccessList:
    """A big list whose every name carries `tag`, so a mix of two versions would show."""
    t0 = datetime(2026, 1, 1, tzinfo=SHANGHAI)
    groups = [Group(f"g{i}", f"{tag} group {i}") for i in range(20)]
    schedules = [Schedule(f"s{i}", f"{tag} schedule {i}") for i in range(5)]
    rules = [
        AccessRule(f"r{i}", f"g{i % 20}", (f"d{i % 6}",), f"s{i % 5}" if i % 2 else None) for i in range(40)
    ]
    return AccessList.build(
        version=version,
        groups=groups,
        schedules=schedules,
        rules=rules,
        people=[
            Person(
                f"p{i}",
                f"{tag} person {i}",
                unit=str(i % 400),
                valid_from=t0 + timedelta(seconds=i),
                group_ids=(f"g{i % 20}",) if i % 3 else (f"g{i % 20}", f"g{(i + 7) % 20}"),
            )
            for i in range(people)
        ],
        credentials=[
            Credential(CredentialKind.CARD, f"{10_000_000 + i}", f"p{i % people}", format="h10301")
            for i in range(people * cards_per_person)
        ],
        passes=[
            VisitorPass(f"v{i}", (f"d{i % 6}",), t0, t0 + timedelta(hours=i % 48 + 1), label=f"{tag} visitor")
            for i in range(passes)
        ],
        holidays=[date(2026, 1, 1) + timedelta(days=7 * i) for i in range(10)],
    )


@pytest.fixture
def bulk_acl() -> AclFactory:
    return _bulk_acl
