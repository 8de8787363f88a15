"""The demo compound's access list: a few residents, a guard, a cleaner, and a visitor pass per round."""

from __future__ import annotations

from datetime import datetime, timedelta

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
    VisitorPass,
)

ZHANG_CARD = "10001"
LI_CARD = "10002"
GUARD_CARD = "90001"
UNKNOWN_CARD = "55555"


def demo_access_list(version: int, now: datetime, side_door: str, all_doors: list[str]) -> AccessList:
    daytime = Schedule("daytime", "Cleaning hours", weekly=((Interval.parse("07:00-19:00"),),) * 7)
    people = [
        Person("p-zhang", "Zhang Wei", building="A", unit="1201", group_ids=("residents-a",), face_consent=True),
        Person("p-li", "Li Na", building="A", unit="0803", group_ids=("residents-a",)),
        Person("p-wang", "Guard Wang", kind=PersonKind.STAFF, group_ids=("security",), responder=True),
        Person("p-chen", "Chen (cleaner)", kind=PersonKind.CONTRACTOR, group_ids=("cleaning",)),
    ]
    return AccessList.build(
        version=version,
        people=people,
        groups=[Group("residents-a", "Building A residents"), Group("security"), Group("cleaning")],
        schedules=[daytime],
        rules=[
            AccessRule("r-residents", "residents-a", tuple(all_doors)),
            AccessRule("r-security", "security", tuple(all_doors)),
            AccessRule("r-cleaning", "cleaning", tuple(all_doors), "daytime"),
        ],
        credentials=[
            Credential(CredentialKind.CARD, ZHANG_CARD, "p-zhang", format="h10301"),
            Credential(CredentialKind.CARD, LI_CARD, "p-li", format="h10301"),
            Credential(CredentialKind.CARD, GUARD_CARD, "p-wang", format="h10301"),
            Credential(CredentialKind.CARD, "10004", "p-chen", format="h10301"),
        ],
        passes=[
            VisitorPass(
                f"V-{version}",
                (side_door,),
                now - timedelta(minutes=5),
                now + timedelta(hours=2),
                max_uses=1,
                host_person_id="p-zhang",
                host_unit="A-1201",
                label="Courier",
            )
        ],
    )
