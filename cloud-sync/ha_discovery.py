"""What Home Assistant is told about the doors: MQTT discovery configs, topics and state payloads.

Pure functions and tables, no I/O; cloud_sync.homeassistant publishes them. Field names follow Home Assistant's
MQTT integration (discovery topic `<discovery_prefix>/<component>/[<node_id>/]<object_id>/config`, the MQTT lock
and binary sensor platforms, `availability_topic`, the `device` and `origin` maps).

Each door is one Home Assistant device with up to four entities:

    lock           the lock relay: LOCKED / UNLOCKED; its command topic takes LOCK / UNLOCK
    contact        binary_sensor, device_class door: ON = open          (doors with a contact input)
    alarm          binary_sensor, device_class problem: ON while forced open, held open or tampered
    tamper         binary_sensor, device_class tamper: ON while the tamper input is active (doors wired for it)

All of them share the gateway's availability topic (retained online, with a retained offline as the MQTT will),
so a gateway that stops or vanishes shows its doors unavailable rather than frozen in their last state.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.door import DoorMachine
from edge.model import Door

ONLINE = b"online"
OFFLINE = b"offline"
LOCK = "LOCK"
UNLOCK = "UNLOCK"
LOCKED = "LOCKED"
UNLOCKED = "UNLOCKED"
ON = "ON"
OFF = "OFF"
MANUFACTURER = "menwei"


@dataclass(frozen=True, slots=True)
class DoorView:
    """One door as Home Assistant sees it, read from its door machine."""

    unlocked: bool  # the lock relay is released
    open: bool  # the door contact is open
    forced: bool
    held: bool
    tamper: bool
    state: str  # edge.events.DoorState value
    mode: str  # effective mode (a site lockdown included)

    @classmethod
    def of(cls, machine: DoorMachine) -> DoorView:
        return cls(
            unlocked=machine.relay_unlocked,
            open=machine.contact_open,
            forced=machine.forced_alarm,
            held=machine.held_alarm,
            tamper=machine.tamper_alarm,
            state=machine.state.value,
            mode=machine.mode.value,
        )

    @property
    def alarms(self) -> list[str]:
        flags = (("door_forced", self.forced), ("door_held", self.held), ("tamper", self.tamper))
        return [name for name, active in flags if active]


@dataclass(frozen=True, slots=True)
class HaTopics:
    """Topic names for one gateway. `base` is `<topic_prefix>/<site>/<gateway>`."""

    discovery_prefix: str
    base: str
    node_id: str  # the discovery topic's node level and the prefix of every unique id

    @classmethod
    def build(cls, discovery_prefix: str, topic_prefix: str, site: str, gateway: str) -> HaTopics:
        return cls(discovery_prefix, f"{topic_prefix}/{site}/{gateway}", f"menwei-{site}-{gateway}")

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth and last-will topic (its default): `online` asks for discovery again."""
        return f"{self.discovery_prefix}/status"

    @property
    def command_filter(self) -> str:
        return f"{self.base}/doors/+/lock/set"

    def command(self, door_id: str) -> str:
        return f"{self.base}/doors/{door_id}/lock/set"

    def state(self, door_id: str, key: str) -> str:
        return f"{self.base}/doors/{door_id}/{key}"

    def attributes(self, door_id: str) -> str:
        return f"{self.base}/doors/{door_id}/attributes"

    def config(self, component: str, door_id: str, key: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node_id}/{door_id}-{key}/config"

    def door_of_command(self, topic: str) -> str | None:
        """The door id in a command topic, or None if the topic is not one."""
        head, tail = f"{self.base}/doors/", "/lock/set"
        if not (topic.startswith(head) and topic.endswith(tail)):
            return None
        door_id = topic[len(head) : -len(tail)]
        return door_id if door_id and "/" not in door_id else None


@dataclass(frozen=True, slots=True)
class EntityKind:
    """One entity of a door: how it is declared to Home Assistant and where its value comes from."""

    key: str
    component: str  # Home Assistant platform: "lock" or "binary_sensor"
    name: str
    device_class: str | None
    applies: Callable[[Door], bool]
    value: Callable[[DoorView], str]
    with_attributes: bool = False


def _on(flag: bool) -> str:
    return ON if flag else OFF


ENTITIES: tuple[EntityKind, ...] = (
    EntityKind(
        "lock", "lock", "Lock", None, lambda d: True, lambda v: UNLOCKED if v.unlocked else LOCKED, True
    ),
    EntityKind(
        "contact",
        "binary_sensor",
        "Door",
        "door",
        lambda d: d.contact_input is not None,
        lambda v: _on(v.open),
    ),
    EntityKind(
        "alarm",
        "binary_sensor",
        "Alarm",
        "problem",
        lambda d: d.contact_input is not None or d.tamper_input is not None,
        lambda v: _on(bool(v.alarms)),
        True,
    ),
    EntityKind(
        "tamper",
        "binary_sensor",
        "Tamper",
        "tamper",
        lambda d: d.tamper_input is not None,
        lambda v: _on(v.tamper),
    ),
)


def device(topics: HaTopics, door: Door, software: str) -> dict[str, Any]:
    return {
        "identifiers": [f"{topics.node_id}-{door.id}"],
        "name": door.name,
        "manufacturer": MANUFACTURER,
        "model": f"door ({door.lock_type.value})",
        "sw_version": software,
    }


def discovery_config(topics: HaTopics, door: Door, kind: EntityKind, software: str) -> dict[str, Any]:
    """The retained discovery payload of one entity of one door."""
    config: dict[str, Any] = {
        "name": kind.name,
        "unique_id": f"{topics.node_id}-{door.id}-{kind.key}",
        "state_topic": topics.state(door.id, kind.key),
        "availability_topic": topics.availability,
        "payload_available": ONLINE.decode(),
        "payload_not_available": OFFLINE.decode(),
        "qos": 1,
        "device": device(topics, door, software),
        "origin": {"name": MANUFACTURER, "sw_version": software},
    }
    if kind.device_class is not None:
        config["device_class"] = kind.device_class
    if kind.with_attributes:
        config["json_attributes_topic"] = topics.attributes(door.id)
    if kind.component == "lock":
        config |= {
            "command_topic": topics.command(door.id),
            "payload_lock": LOCK,
            "payload_unlock": UNLOCK,
            "state_locked": LOCKED,
            "state_unlocked": UNLOCKED,
            "optimistic": False,
            "retain": False,  # a retained command would replay on every reconnect: never ask for one
        }
    else:
        config |= {"payload_on": ON, "payload_off": OFF}
    return config


def discovery_messages(topics: HaTopics, doors: list[Door], software: str) -> list[tuple[str, bytes]]:
    """Every door's discovery configs. An entity a door has no input for gets an empty payload, which removes
    it from Home Assistant should an earlier config have declared it."""
    out: list[tuple[str, bytes]] = []
    for door in doors:
        for kind in ENTITIES:
            topic = topics.config(kind.component, door.id, kind.key)
            payload = json.dumps(discovery_config(topics, door, kind, software)) if kind.applies(door) else ""
            out.append((topic, payload.encode()))
    return out


def state_messages(topics: HaTopics, door: Door, view: DoorView) -> list[tuple[str, bytes]]:
    """The door's retained states: one per entity it has, and the JSON attributes."""
    out = [(topics.state(door.id, k.key), k.value(view).encode()) for k in ENTITIES if k.applies(door)]
    attributes = {"state": view.state, "mode": view.mode, "alarms": view.alarms}
    out.append((topics.attributes(door.id), json.dumps(attributes).encode()))
    return out
