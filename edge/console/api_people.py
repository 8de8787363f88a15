"""The console's look-up of residents, staff and other people on the access list (GET /api/people).

Credentials are shown masked: a guard confirming "is this card Zhang Wei's?" needs the last digits, not the
number. PINs are never shown (the gateway holds only their HMAC anyway).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, StringConstraints

from edge.console.api import Console, ConsoleDep, SessionDep
from edge.console.scan import SLICE, scan
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


@dataclass(slots=True)
class CredentialIndex:
    """Credentials by person, built once per access-list version (in slices, see scan.py)."""

    acl_id: int = 0
    version: int = -1
    by_person: dict[str, list[Credential]] = field(default_factory=dict)

    async def of(self, acl: AccessList) -> dict[str, list[Credential]]:
        if (id(acl), acl.version) != (self.acl_id, self.version):
            by_person: dict[str, list[Credential]] = {}
            everything = list(acl.credentials.values())
            for start in range(0, len(everything), SLICE):
                for credential in everything[start : start + SLICE]:
                    by_person.setdefault(credential.person_id, []).append(credential)
                await asyncio.sleep(0)  # let the doors in between slices
            self.acl_id, self.version, self.by_person = id(acl), acl.version, by_person
        return self.by_person


@router.get("/people")
async def people(
    _: SessionDep,
    console: ConsoleDep,
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = "",
) -> list[PersonOut]:
    """People on the access list, at most 50: `q` matches the name, the unit (e.g. 'A-1201') or the last digits
    of a card or phone key (at least 3)."""
    acl = _acl(console)
    wanted = q.casefold()
    index = console.caches.setdefault("credentials", CredentialIndex())
    assert isinstance(index, CredentialIndex)
    by_person = await index.of(acl)
    suffix_ids: set[str] = set()
    if len(q) >= MIN_SUFFIX:

        def has_suffix(item: tuple[str, list[Credential]]) -> bool:
            return any(
                c.kind in (CredentialKind.CARD, CredentialKind.BLE) and c.value.endswith(q) for c in item[1]
            )

        suffix_ids = {pid for pid, _ in await scan(list(by_person.items()), has_suffix, MAX_ROWS)}

    def keep(person: Person) -> bool:
        return (
            not wanted
            or wanted in person.name.casefold()
            or wanted in (unit_of(person) or "").casefold()
            or person.id in suffix_ids
        )

    found = await scan(list(acl.people.values()), keep, MAX_ROWS)
    return [_out(p, by_person.get(p.id, [])) for p in found]


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
