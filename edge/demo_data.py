"""The demo compound's access list: a few residents, a guard, a cleaner, and a visitor pass per round."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

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
from edge.pin import pin_digest

ZHANG_CARD = "10001"
LI_CARD = "10002"
GUARD_CARD = "90001"
UNKNOWN_CARD = "55555"


LI_PIN = "246810"
CHEN_CARD = "10004"


def demo_access_list(
    version: int,
    now: datetime,
    side_door: str,
    all_doors: list[str],
    pin_key: bytes | None = None,
    tz: ZoneInfo | None = None,
) -> AccessList:
    # The cleaner's hours are placed away from "now" in site time, so the demo shows a schedule denial
    # whatever the hour it runs at.
    local = now.astimezone(tz) if tz else now
    start = ((local.hour + 3) % 24) * 60
    cleaning = Interval(start, (start + 4 * 60) % 1440)
    daytime = Schedule("daytime", f"Cleaning hours {cleaning}", weekly=((cleaning,),) * 7)
    people = [
        Person(
            "p-zhang", "Zhang Wei", building="A", unit="1201", group_ids=("residents-a",), face_consent=True
        ),
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
            Credential(CredentialKind.CARD, CHEN_CARD, "p-chen", format="h10301"),
            *(
                [Credential(CredentialKind.PIN, pin_digest(pin_key, LI_PIN), "p-li")]
                if pin_key is not None
                else []
            ),
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
