"""The Home Assistant discovery tables without a broker: which entities a door gets (and the empty configs that
remove the others), state payloads from a door machine, and command topics parsed strictly."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from cloud_sync.ha_discovery import DoorView, HaTopics, discovery_messages, state_messages

from edge.door import DoorMachine
from edge.model import Door, DoorMode, LockType

TOPICS = HaTopics.build("homeassistant", "menwei", "lotus-garden", "gw-1")
AT = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def door(door_id: str, *, contact: int | None = None, tamper: int | None = None) -> Door:
    return Door(
        id=door_id,
        name=door_id.title(),
        controller="c1",
        output=1,
        lock_type=LockType.FAIL_SAFE,
        contact_input=contact,
        tamper_input=tamper,
    )


def test_a_door_without_inputs_is_a_lock_and_its_sensors_are_removed() -> None:
    messages = dict(discovery_messages(TOPICS, [door("gate")], "9.9"))
    base = "homeassistant/{}/menwei-lotus-garden-gw-1/gate-{}/config"
    lock = json.loads(messages[base.format("lock", "lock")])
    assert lock["device"]["model"] == "door (fail-safe)"
    for key in ("contact", "alarm", "tamper"):
        assert messages[base.format("binary_sensor", key)] == b""  # an empty retained config deletes it


def test_a_door_with_a_contact_but_no_tamper_input() -> None:
    messages = dict(discovery_messages(TOPICS, [door("lobby", contact=1)], "9.9"))
    base = "homeassistant/binary_sensor/menwei-lotus-garden-gw-1/lobby-{}/config"
    assert json.loads(messages[base.format("contact")])["device_class"] == "door"
    assert json.loads(messages[base.format("alarm")])["device_class"] == "problem"
    assert messages[base.format("tamper")] == b""


def test_states_follow_the_door_machine() -> None:
    d = door("lobby", contact=1, tamper=2)
    machine = DoorMachine.for_door(d)
    machine.start(AT)
    machine.contact(True, AT, 1.0)  # forced
    machine.tamper(True, AT)
    states = dict(state_messages(TOPICS, d, DoorView.of(machine)))
    prefix = "menwei/lotus-garden/gw-1/doors/lobby/"
    assert states[prefix + "lock"] == b"LOCKED"
    assert states[prefix + "contact"] == b"ON"
    assert states[prefix + "alarm"] == b"ON"
    assert states[prefix + "tamper"] == b"ON"
    assert json.loads(states[prefix + "attributes"]) == {
        "state": "forced",
        "mode": "normal",
        "alarms": ["door_forced", "tamper"],
    }
    machine.contact(False, AT, 2.0)
    machine.tamper(False, AT)
    machine.set_mode(DoorMode.UNLOCKED, AT)
    states = dict(state_messages(TOPICS, d, DoorView.of(machine)))
    assert (states[prefix + "lock"], states[prefix + "alarm"]) == (b"UNLOCKED", b"OFF")
    assert json.loads(states[prefix + "attributes"])["mode"] == "unlocked"


def test_command_topics_are_parsed_strictly() -> None:
    assert TOPICS.door_of_command("menwei/lotus-garden/gw-1/doors/lobby/lock/set") == "lobby"
    assert TOPICS.command_filter == "menwei/lotus-garden/gw-1/doors/+/lock/set"
    for topic in (
        "menwei/lotus-garden/gw-1/doors//lock/set",
        "menwei/lotus-garden/gw-1/doors/a/b/lock/set",
        "menwei/lotus-garden/gw-2/doors/lobby/lock/set",
        "menwei/lotus-garden/gw-1/doors/lobby/lock",
        "homeassistant/status",
    ):
        assert TOPICS.door_of_command(topic) is None, topic
