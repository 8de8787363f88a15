"""Field types, the strict base of every config model, and how a key's path is written in messages."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
)
from pydantic_core import PydanticCustomError

from edge.model import (
    AntiPassbackMode,
    Direction,
    DoorMode,
    LockType,
)
from edge.secrets import check_credential_name

DEFAULT_DATA_DIR = Path("/var/lib/menwei")
STATE_DIRECTORY = "STATE_DIRECTORY"  # set by systemd for StateDirectory=
MASK = "**********"

Loc = tuple[str | int, ...]

# --- field types -------------------------------------------------------------------------------------------

_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?")


def _slug(value: str) -> str:
    # Ids end up in event records, MQTT topics and URLs: keep them to a safe, case-free alphabet.
    if not _SLUG.fullmatch(value):
        raise PydanticCustomError(
            "slug",
            "{value} is not a valid id: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting and ending with a letter or digit",
            {"value": repr(value)},
        )
    return value


def _timezone(value: str) -> str:
    # Checked against the zone list rather than by opening the file: "Asia" (a directory) and "localtime"
    # (the host's zone file, not a zone: schedules would follow whatever the box is set to) are not zones.
    if value == "localtime" or value not in zoneinfo.available_timezones():
        raise PydanticCustomError(
            "timezone",
            "unknown time zone {value}: use an IANA name such as 'Asia/Shanghai'",
            {"value": repr(value)},
        )
    return value


def _credential_name(value: str) -> str:
    try:
        return check_credential_name(value)
    except ValueError as err:
        raise PydanticCustomError("credential_name", str(err)) from None


Slug = Annotated[str, AfterValidator(_slug)]
TimeZoneName = Annotated[str, AfterValidator(_timezone)]
CredentialName = Annotated[str, AfterValidator(_credential_name)]
Text = Annotated[str, Field(min_length=1, max_length=200)]
# Terminal numbers as printed on the controller, counting from 1.
InputNumber = Annotated[int, Field(ge=1, le=256)]
# Strict mode would demand enum and Path instances; TOML gives strings, so these fields alone are lax
# (an enum still accepts only its own values).
LaxPath = Annotated[Path, Field(strict=False)]
DirectionValue = Annotated[Direction, Field(strict=False)]
DoorModeValue = Annotated[DoorMode, Field(strict=False)]
LockTypeValue = Annotated[LockType, Field(strict=False)]
AntiPassbackModeValue = Annotated[AntiPassbackMode, Field(strict=False)]


class Section(BaseModel):
    """Base of every config model: unknown keys are errors, types are strict, values are read-only."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key_path(loc: Loc, data: object = None) -> str:
    """('doors', 1, 'unlock_secnds') -> 'doors[1].unlock_secnds'.

    With the parsed file as `data`, drops the tag pydantic puts in the path of a tagged union member
    (controllers[0].simulated.outputs is controllers[0].outputs in the file).
    """
    path = ""
    node = data
    for item in loc:
        if isinstance(item, int):
            path += f"[{item}]"
            node = node[item] if isinstance(node, list) and 0 <= item < len(node) else None
            continue
        if isinstance(node, Mapping) and item not in node and node.get("type") == item:
            continue
        part = item if _BARE_KEY.fullmatch(item) else f'"{item}"'
        path = _join(path, part)
        node = node.get(item) if isinstance(node, Mapping) else None
    return path


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
