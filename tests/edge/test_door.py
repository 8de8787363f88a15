"""The door state machine, driven with exact times: grants, exit, forced, held, tamper, modes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from edge.clock import ManualClock
from edge.decision import Decision, Reason
from edge.door import DoorMachine, DoorRunner
from edge.events import (
    AlarmEvent,
    AlarmKind,
    DecisionEvent,
    DoorState,
    DoorStateEvent,
    Event,
    EventBus,
    ModeEvent,
    RelayCommand,
)
from edge.model import CredentialKind, Door, DoorMode

T = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DOOR = Door("d1", "Lobby", "c1", 1, unlock_seconds=5, held_seconds=30)


def relays(events: list[Event]) -> list[bool]:
    return [e.unlock for e in events if isinstance(e, RelayCommand)]


def alarms(events: list[Event]) -> list[tuple[AlarmKind, bool]]:
    return [(e.kind, e.active) for e in events if isinstance(e, AlarmEvent)]


def states(events: list[Event]) -> list[DoorState]:
    return [e.state for e in events if isinstance(e, DoorStateEvent)]


@pytest.fixture
def m() -> DoorMachine:
    machine = DoorMachine.for_door(DOOR)
    assert relays(machine.start(T)) == [False]
    return machine


def test_grant_unlocks_then_relocks_after_unlock_time(m: DoorMachine) -> None:
    ev = m.grant(T, 0.0)
    assert relays(ev) == [True] and states(ev) == [DoorState.UNLOCKED]
    assert next(e for e in ev if isinstance(e, RelayCommand)).seconds == 5
    assert m.next_deadline() == 5.0
    assert m.tick(T, 4.99) == []
    ev = m.tick(T, 5.0)
    assert relays(ev) == [False] and states(ev) == [DoorState.LOCKED]
    assert m.next_deadline() is None


def test_walk_through_relocks_on_close_without_alarm(m: DoorMachine) -> None:
    m.grant(T, 0.0)
    assert states(m.contact(True, T, 1.0)) == [DoorState.OPEN]
    ev = m.contact(False, T, 3.0)
    assert relays(ev) == [False]  # relock on close: no second person on the same grant
    assert states(ev) == [DoorState.LOCKED]
    assert alarms(ev) == []
    assert m.tick(T, 5.0) == []  # the unlock timer was cancelled


def test_open_without_grant_is_forced(m: DoorMachine) -> None:
    ev = m.contact(True, T, 0.0)
    assert states(ev) == [DoorState.FORCED]
    assert alarms(ev) == [(AlarmKind.DOOR_FORCED, True)]
    assert m.next_deadline() is None  # a forced door does not also raise "held"
    ev = m.contact(False, T, 10.0)
    assert alarms(ev) == [(AlarmKind.DOOR_FORCED, False)]
    assert states(ev) == [DoorState.LOCKED]


def test_open_too_long_is_held(m: DoorMachine) -> None:
    m.grant(T, 0.0)
    m.contact(True, T, 1.0)
    assert relays(m.tick(T, 5.0)) == [False]  # lock re-arms while the door stands open
    assert m.state is DoorState.OPEN
    assert m.next_deadline() == 31.0
    ev = m.tick(T, 31.0)
    assert alarms(ev) == [(AlarmKind.DOOR_HELD, True)] and states(ev) == [DoorState.HELD]
    assert m.tick(T, 60.0) == []  # raised once
    ev = m.contact(False, T, 70.0)
    assert alarms(ev) == [(AlarmKind.DOOR_HELD, False)] and states(ev) == [DoorState.LOCKED]


def test_exit_request_unlocks_and_is_logged(m: DoorMachine) -> None:
    ev = m.exit_request(T, 0.0)
    assert ev[0].type == "exit_request"
    assert relays(ev) == [True]
    m.contact(True, T, 1.0)
    assert m.state is DoorState.OPEN


def test_exit_button_after_door_opened_from_inside_clears_forced(m: DoorMachine) -> None:
    # Pushing the bar opens the contact a moment before the exit sensor fires: no held timer is running yet.
    m.contact(True, T, 0.0)
    assert m.forced_alarm
    m.exit_request(T, 0.2)
    assert m.authorised_open
    ev = m.contact(False, T, 2.0)
    assert (AlarmKind.DOOR_FORCED, False) in alarms(ev)


def test_regrant_extends_the_unlock(m: DoorMachine) -> None:
    m.grant(T, 0.0)
    ev = m.grant(T, 3.0)
    assert relays(ev) == [True]  # re-sent so a self-timing controller extends its pulse
    assert m.tick(T, 5.0) == []
    assert relays(m.tick(T, 8.0)) == [False]


def test_tamper_alarm_raises_and_clears_once(m: DoorMachine) -> None:
    assert alarms(m.tamper(True, T)) == [(AlarmKind.TAMPER, True)]
    assert m.tamper(True, T) == []
    assert alarms(m.tamper(False, T)) == [(AlarmKind.TAMPER, False)]


def test_unlocked_mode_holds_relay_and_suppresses_held(m: DoorMachine) -> None:
    ev = m.set_mode(DoorMode.UNLOCKED, T)
    assert relays(ev) == [True] and states(ev) == [DoorState.UNLOCKED]
    m.contact(True, T, 0.0)
    assert m.state is DoorState.OPEN and not m.forced_alarm
    assert m.next_deadline() is None
    ev = m.contact(False, T, 100.0)
    assert relays(ev) == [] and states(ev) == [DoorState.UNLOCKED]
    ev = m.set_mode(DoorMode.NORMAL, T)
    assert relays(ev) == [False] and states(ev) == [DoorState.LOCKED]


def test_lockdown_relocks_at_once_but_exit_still_works(m: DoorMachine) -> None:
    m.grant(T, 0.0)
    ev = m.set_mode(DoorMode.LOCKDOWN, T)
    assert relays(ev) == [False] and m.next_deadline() is None
    ev = m.exit_request(T, 1.0)
    assert relays(ev) == [True]
    assert relays(m.tick(T, 6.0)) == [False]


def test_start_in_unlocked_mode_drives_relay_open() -> None:
    machine = DoorMachine.for_door(Door("d2", "Gym", "c1", 2, mode=DoorMode.UNLOCKED))
    assert relays(machine.start(T)) == [True]
    assert machine.state is DoorState.UNLOCKED


async def test_runner_relocks_by_itself_on_the_loop() -> None:
    clock = ManualClock(T)
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(Event, seen.append)
    door = Door("d1", "Lobby", "c1", 1, unlock_seconds=0.05, held_seconds=0.1)
    runner = DoorRunner(door, bus, clock)
    runner.start()
    grant = Decision(Reason.GRANTED, "r1", "d1", CredentialKind.CARD, "1001", T, person_id="p1")
    bus.publish(DecisionEvent(at=T, decision=grant))
    assert relays(seen) == [False, True]
    clock.advance(0.05)
    await asyncio.sleep(0.2)  # the loop's timer fires; the machine reads the manual clock
    assert relays(seen) == [False, True, False]
    assert runner.machine.state is DoorState.LOCKED
    runner.close()


async def test_runner_site_lockdown_returns_each_door_to_its_own_mode() -> None:
    clock = ManualClock(T)
    bus = EventBus()
    runner = DoorRunner(Door("d1", "Lobby", "c1", 1), bus, clock)
    runner.start()

    def after(event: ModeEvent) -> tuple[DoorMode, bool]:
        bus.publish(event)
        return runner.machine.mode, runner.machine.relay_unlocked

    assert after(ModeEvent(at=T, mode=DoorMode.UNLOCKED, door_id="d1")) == (DoorMode.UNLOCKED, True)
    assert after(ModeEvent(at=T, mode=DoorMode.LOCKDOWN)) == (DoorMode.LOCKDOWN, False)
    # Lifting the lockdown returns the door to its own mode, not to "normal".
    assert after(ModeEvent(at=T, mode=DoorMode.NORMAL)) == (DoorMode.UNLOCKED, True)
    assert after(ModeEvent(at=T, mode=DoorMode.LOCKED, door_id="other")) == (DoorMode.UNLOCKED, True)
    runner.close()
