"""The console's look-up of residents, staff and other people on the access list (GET /api/people).

Credentials are shown masked: a guard confirming "is this card Zhang Wei's?" needs the last digits, not the
number. PINs are never shown (the gateway holds only their HMAC anyway).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, StringConstraints

from edge.console.api import Console, ConsoleDep, SessionDep
from edge.console.scan import scan
from edge.model import AccessList, Credential, CredentialKind, Person, Status

router = APIRouter(prefix="/api")

MAX_ROWS = 50
MIN_SUFFIX = 3  # digits of a credential that match on their own


class CredentialOut(BaseModel):
    type: CredentialKind
    masked: str


class PersonOut(BaseModel):
    id: str
    name: str
    unit: str | None
    kind: str
    status: str
    valid_from: datetime | None
    valid_until: datetime | None
    credentials: list[CredentialOut]
    face_enrolled: bool


def masked(credential: Credential) -> str:
    if credential.kind is CredentialKind.PIN:
        return "****"
    if credential.kind is CredentialKind.FACE:
        return "enrolled"
    value = credential.value
    return "*" * min(4, max(0, len(value) - 4)) + value[-4:]


def unit_of(person: Person) -> str | None:
    if person.unit is None:
        return None
    return f"{person.building}-{person.unit}" if person.building else person.unit


@router.get("/people")
async def people(
    session: SessionDep,
    console: ConsoleDep,
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = "",
) -> list[PersonOut]:
    """People on the access list, at most 50: `q` matches the name, the unit (e.g. 'A-1201') or the last digits
    of a card or phone key (at least 3). A search is audited (who looked for what)."""
    acl = _acl(console)
    wanted = q.casefold()
    # Snapshot lists, copied per request (a few ms) rather than kept: a kept index of 100,000 entries would add
    # to every full garbage collection on the doors' loop for as long as it lived.
    credentials = list(acl.credentials.values())
    suffix_ids: set[str] = set()
    if len(q) >= MIN_SUFFIX:

        def has_suffix(c: Credential) -> bool:
            return c.kind in (CredentialKind.CARD, CredentialKind.BLE) and c.value.endswith(q)

        suffix_ids = {c.person_id for c in await scan(credentials, has_suffix, MAX_ROWS)}

    def keep(person: Person) -> bool:
        return (
            not wanted
            or wanted in person.name.casefold()
            or wanted in (unit_of(person) or "").casefold()
            or person.id in suffix_ids
        )

    found = await scan(list(acl.people.values()), keep, MAX_ROWS)
    ids = {p.id for p in found}
    theirs: dict[str, list[Credential]] = {}
    for credential in await scan(credentials, lambda c: c.person_id in ids) if ids else ():
        theirs.setdefault(credential.person_id, []).append(credential)
    if q:  # a search of residents' records is accounted for; the plain list the page loads is not
        console.audit("search_people", session.account.username, True, f"{q!r}: {len(found)} found")
    return [_out(p, theirs.get(p.id, [])) for p in found]


def _acl(console: Console) -> AccessList:
    engine = console.gateway.engine
    assert engine is not None
    return engine.acl


def _out(person: Person, credentials: list[Credential]) -> PersonOut:
    return PersonOut(
        id=person.id,
        name=person.name,
        unit=unit_of(person),
        kind=person.kind.value,
        status=person.status.value,
        valid_from=person.valid_from,
        valid_until=person.valid_until,
        credentials=[CredentialOut(type=c.kind, masked=masked(c)) for c in credentials],
        face_enrolled=any(c.kind is CredentialKind.FACE and c.status is Status.ACTIVE for c in credentials),
    )
