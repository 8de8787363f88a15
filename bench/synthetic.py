"""The synthetic site every benchmark measures: N people in 50 groups, 2N cards, N visitor passes, every group
allowed on every door (half of them through an always-open schedule, so schedule evaluation is on the path)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from edge.model import (
    AccessList,
    AccessRule,
    Credential,
    CredentialKind,
    Group,
    Interval,
    Person,
    Schedule,
    VisitorPass,
)

CARD_BASE = 10_000_000  # card numbers are CARD_BASE + i for i in range(2 * people)


def big_access_list(
    people: int,
    doors: list[str],
    now: datetime,
    *,
    version: int = 1,
    pass_window: timedelta = timedelta(hours=1),
    pass_max_uses: int = 1_000_000,
) -> AccessList:
    rng = random.Random(7)
    groups = [Group(f"g{i}", f"Group {i}") for i in range(50)]
    always = Schedule("office", "Office", weekly=((Interval.parse("00:00-24:00"),),) * 7)
    rules = [
        AccessRule(f"r{i}", g.id, tuple(doors), "office" if i % 2 else None) for i, g in enumerate(groups)
    ]
    persons = [
        Person(f"p{i}", f"Person {i}", building=str(i % 40), unit=str(i % 3000), group_ids=(f"g{i % 50}",))
        for i in range(people)
    ]
    cards = [
        Credential(CredentialKind.CARD, str(CARD_BASE + i), f"p{i % people}", format="h10301")
        for i in range(2 * people)
    ]
    passes = [
        VisitorPass(
            f"V{i}",
            (doors[rng.randrange(len(doors))],),
            now - pass_window,
            now + pass_window,
            max_uses=pass_max_uses,
            label="Visitor",
        )
        for i in range(people)
    ]
    return AccessList.build(
        version=version,
        people=persons,
        groups=groups,
        schedules=[always],
        rules=rules,
        credentials=cards,
        passes=passes,
    )
