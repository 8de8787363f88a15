"""Commands a backend sends to a gateway (docs/contract.md, "Commands"): each stamped with an id,
its issue time and an expiry, so that a gateway never executes one late or twice."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cloud_sync.messages import (
    EnrolFace,
    OpenDoor,
    Ping,
    Resync,
    SetMode,
)

from edge.model import DoorMode

DEFAULT_TTL = 30.0  # seconds a command stays valid


def _stamp(ttl: float) -> dict[str, Any]:
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    now = datetime.now(UTC)
    return {"id": str(uuid.uuid4()), "issued_at": now, "expires_at": now + timedelta(seconds=ttl)}


def open_door(door: str, *, operator: str, reason: str = "", ttl: float = DEFAULT_TTL) -> OpenDoor:
    """Release a door once (a pulse, like a granted credential)."""
    return OpenDoor(command="open_door", door=door, operator=operator, reason=reason, **_stamp(ttl))


def set_mode(
    mode: DoorMode, *, door: str | None = None, operator: str, reason: str = "", ttl: float = DEFAULT_TTL
) -> SetMode:
    """Set a door's mode, or with door=None the whole site's (e.g. lockdown)."""
    return SetMode(command="set_mode", door=door, mode=mode, operator=operator, reason=reason, **_stamp(ttl))


def ping(*, operator: str = "backend", ttl: float = DEFAULT_TTL) -> Ping:
    return Ping(command="ping", operator=operator, **_stamp(ttl))


def resync(*, operator: str, reason: str = "", ttl: float = DEFAULT_TTL) -> Resync:
    """Ask the gateway to request a fresh snapshot."""
    return Resync(command="resync", operator=operator, reason=reason, **_stamp(ttl))


def enrol_face(
    person: str,
    face_id: str,
    *,
    photo: bytes | None = None,
    embedding: list[float] | None = None,
    pack: str | None = None,
    operator: str,
    reason: str = "",
    ttl: float = 300.0,
) -> EnrolFace:
    """Enrol a consenting resident's face (docs/faces.md): a JPEG/PNG photo, or an embedding and the model pack
    that made it. The gateway answers when it is done (seconds), with the reason if it refused."""
    return EnrolFace(
        command="enrol_face",
        person=person,
        face_id=face_id,
        photo_b64=base64.b64encode(photo).decode("ascii") if photo is not None else None,
        embedding=embedding,
        pack=pack,
        operator=operator,
        reason=reason,
        **_stamp(ttl),
    )


AnyCommand = OpenDoor | SetMode | Resync | Ping | EnrolFace
