"""[[doors]], [[fire_alarms]] and [[anti_passback]]: what the site's doors are and how they are tied together."""

from __future__ import annotations

from pydantic import (
    Field,
)

from edge.config.fields import (
    AntiPassbackModeValue,
    DoorModeValue,
    InputNumber,
    LockTypeValue,
    Section,
    Slug,
    Text,
)
from edge.model import (
    AntiPassbackMode,
    DoorMode,
    LockType,
)


class DoorConfig(Section):
    """[[doors]]: one lock, its relay output and its optional inputs on a controller."""

    id: Slug = Field(description="Door id, a slug; readers and access rules refer to it.")
    name: Text = Field(description="Human-readable door name.")
    controller: Slug = Field(description="Id of the controller the lock is wired to.")
    output: int = Field(ge=1, le=64, description="Relay output driving the lock, from 1.")
    unlock_seconds: float = Field(
        default=5.0,
        ge=0.5,
        le=300,
        allow_inf_nan=False,
        description="Seconds the lock stays released on a grant.",
    )
    held_seconds: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        allow_inf_nan=False,
        description="Seconds the door may stand open before a door-held alarm.",
    )
    lock_type: LockTypeValue = Field(
        default=LockType.FAIL_SECURE,
        description=(
            "'fail-secure' (strike: stays locked without power) or "
            "'fail-safe' (maglock: opens without power)."
        ),
    )
    mode: DoorModeValue = Field(
        default=DoorMode.NORMAL,
        description="Mode at start-up: 'normal', 'locked', 'unlocked' or 'lockdown'.",
    )
    contact_input: InputNumber | None = Field(
        default=None, description="Input of the door contact (closed = door shut); omit if none."
    )
    rex_input: InputNumber | None = Field(
        default=None, description="Input of the request-to-exit button; omit if none."
    )
    tamper_input: InputNumber | None = Field(
        default=None, description="Input of the tamper switch; omit if none."
    )


class FireAlarmConfig(Section):
    """[[fire_alarms]]: a fire panel's output wired to a controller input. While it is active the egress
    doors listed are held unlocked, whatever their mode (a site lockdown included)."""

    controller: Slug = Field(description="Id of the controller the fire panel is wired to.")
    input: InputNumber = Field(description="Input number of the fire-alarm contact (active = fire).")
    doors: list[Slug] = Field(min_length=1, description="Ids of the egress doors to release.")


class AntiPassbackConfig(Section):
    """[[anti_passback]]: an area whose entries and exits must alternate."""

    area: Slug = Field(description="Area name, as used by readers' `area`.")
    mode: AntiPassbackModeValue = Field(
        default=AntiPassbackMode.HARD,
        description="'hard' denies an out-of-order pass; 'soft' grants it and flags the event.",
    )
    timeout_seconds: float = Field(
        default=600.0,
        gt=0,
        le=7 * 86400,
        allow_inf_nan=False,
        description="Seconds after which the same direction is allowed again.",
    )
