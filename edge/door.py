"""The door state machine.

`DoorMachine` is pure: every input (a grant, an exit request, the door contact, tamper, a mode change, the passage
of time) is a method call with the current time, and it returns the events that follow (relay commands, state
changes, alarms). It never sleeps and never reads a clock, so tests drive it with exact times.

    grant / exit request -> relay unlocks for unlock_seconds -> relay locks again (timer, or the door closing)
    contact opens while unlocked         -> OPEN;  still open after held_seconds -> HELD + "door held" alarm
    contact opens while locked           -> FORCED + "door forced" alarm
    contact closes                       -> relay locks at once (no second person on the same grant),
                                            held/forced alarms clear
    tamper input                         -> "tamper" alarm while active
    mode UNLOCKED                        -> relay unlocked until the mode changes; no held alarm
    mode LOCKED / LOCKDOWN               -> relay locks now; exit requests still release the door (egress)

`DoorRunner` puts a machine on the event loop: it feeds it bus events and wakes it at its next deadline.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from edge.clock import Clock
from edge.events import (
    AlarmEvent,
    AlarmKind,
    DecisionEvent,
    DoorState,
    DoorStateEvent,
    Event,
    EventBus,
    ExitRequestEvent,
    ModeEvent,
    RelayCommand,
)
from edge.model import Door, DoorMode


@dataclass(slots=True)
class DoorMachine:
    door: Door
    mode: DoorMode = DoorMode.NORMAL
    state: DoorState = DoorState.LOCKED
    contact_open: bool = False
    relay_unlocked: bool = False
    unlock_until: float | None = None  # monotonic deadline of a timed unlock
    opened_at: float | None = None  # monotonic time the contact opened
    authorised_open: bool = False  # the current opening followed a grant, exit request or unlocked mode
    held_alarm: bool = False
    forced_alarm: bool = False
    tamper_alarm: bool = False

    @classmethod
    def for_door(cls, door: Door) -> DoorMachine:
        return cls(door=door, mode=door.mode)

    def start(self, at: datetime) -> list[Event]:
        """Drive the relay to the state the start-up mode asks for (whatever it was before a restart)."""
        self.relay_unlocked = self.mode is DoorMode.UNLOCKED
        self.state = DoorState.UNLOCKED if self.relay_unlocked else DoorState.LOCKED
        return [RelayCommand(at=at, door_id=self.door.id, unlock=self.relay_unlocked)]

    # --- inputs ----------------------------------------------------------------------------------------------

    def grant(self, at: datetime, mono: float) -> list[Event]:
        """A credential was granted: release the lock for the door's unlock time."""
        return self._timed_unlock(at, mono)

    def exit_request(self, at: datetime, mono: float) -> list[Event]:
        """Request-to-exit: egress is always allowed, in every mode (life safety)."""
        return [ExitRequestEvent(at=at, door_id=self.door.id), *self._timed_unlock(at, mono)]

    def contact(self, is_open: bool, at: datetime, mono: float) -> list[Event]:
        if is_open == self.contact_open:
            return []
        self.contact_open = is_open
        out: list[Event] = []
        if is_open:
            self.opened_at = mono
            self.authorised_open = self.relay_unlocked
            if self.authorised_open:
                out += self._to(DoorState.OPEN, at)
            else:
                out += self._to(DoorState.FORCED, at)
                self.forced_alarm = True
                out.append(self._alarm(AlarmKind.DOOR_FORCED, True, at))
            return out
        # closed
        self.opened_at = None
        if self.held_alarm:
            self.held_alarm = False
            out.append(self._alarm(AlarmKind.DOOR_HELD, False, at))
        if self.forced_alarm:
            self.forced_alarm = False
            out.append(self._alarm(AlarmKind.DOOR_FORCED, False, at))
        if self.mode is not DoorMode.UNLOCKED and self.relay_unlocked:
            self.unlock_until = None
            out += self._set_relay(False, at)
        out += self._to(DoorState.UNLOCKED if self.relay_unlocked else DoorState.LOCKED, at)
        return out

    def tamper(self, active: bool, at: datetime) -> list[Event]:
        if active == self.tamper_alarm:
            return []
        self.tamper_alarm = active
        return [self._alarm(AlarmKind.TAMPER, active, at)]

    def set_mode(self, mode: DoorMode, at: datetime) -> list[Event]:
        if mode is self.mode:
            return []
        self.mode = mode
        self.unlock_until = None
        out = self._set_relay(mode is DoorMode.UNLOCKED, at)
        if not self.contact_open:
            out += self._to(DoorState.UNLOCKED if self.relay_unlocked else DoorState.LOCKED, at)
        return out

    def tick(self, at: datetime, mono: float) -> list[Event]:
        """Let time pass: end a timed unlock, raise the held alarm."""
        out: list[Event] = []
        if self.unlock_until is not None and mono >= self.unlock_until:
            self.unlock_until = None
            if self.mode is not DoorMode.UNLOCKED:
                out += self._set_relay(False, at)
                if not self.contact_open:
                    out += self._to(DoorState.LOCKED, at)
        held_deadline = self._held_deadline()
        if held_deadline is not None and mono >= held_deadline:
            self.held_alarm = True
            out += self._to(DoorState.HELD, at)
            out.append(self._alarm(AlarmKind.DOOR_HELD, True, at))
        return out

    def next_deadline(self) -> float | None:
        """The monotonic time at which tick() has something to do, if any."""
        times = [t for t in (self.unlock_until, self._held_deadline()) if t is not None]
        return min(times) if times else None

    # --- helpers ---------------------------------------------------------------------------------------------

    def _held_deadline(self) -> float | None:
        if (
            self.opened_at is None
            or self.held_alarm
            or not self.authorised_open
            or self.mode is DoorMode.UNLOCKED
        ):
            return None
        return self.opened_at + self.door.held_seconds

    def _timed_unlock(self, at: datetime, mono: float) -> list[Event]:
        self.unlock_until = mono + self.door.unlock_seconds
        out = self._set_relay(True, at, seconds=self.door.unlock_seconds)
        if self.contact_open:
            # Someone inside opened the door a moment before the exit button: the opening is now authorised.
            self.authorised_open = True
        elif self.state is DoorState.LOCKED:
            out += self._to(DoorState.UNLOCKED, at)
        return out

    def _set_relay(self, unlock: bool, at: datetime, *, seconds: float | None = None) -> list[Event]:
        # A repeated grant re-sends the pulse so a controller that times the unlock itself extends it.
        if unlock == self.relay_unlocked and seconds is None:
            return []
        self.relay_unlocked = unlock
        return [RelayCommand(at=at, door_id=self.door.id, unlock=unlock, seconds=seconds)]

    def _to(self, state: DoorState, at: datetime) -> list[Event]:
        if state is self.state:
            return []
        previous, self.state = self.state, state
        return [DoorStateEvent(at=at, door_id=self.door.id, state=state, previous=previous)]

    def _alarm(self, kind: AlarmKind, active: bool, at: datetime) -> AlarmEvent:
        return AlarmEvent(at=at, kind=kind, active=active, door_id=self.door.id)


class DoorRunner:
    """Runs one DoorMachine on the event loop: grants and mode changes arrive from the bus, inputs from the
    controller adapter, and a timer wakes the machine at its next deadline."""

    def __init__(self, door: Door, bus: EventBus, clock: Clock) -> None:
        self.machine = DoorMachine.for_door(door)
        self._own_mode = door.mode  # this door's mode; a site lockdown overrides it while it lasts
        self._site_lockdown = False
        self._bus = bus
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._unsubscribe = [
            bus.subscribe(DecisionEvent, self._on_decision),
            bus.subscribe(ModeEvent, self._on_mode),
        ]

    @property
    def door(self) -> Door:
        return self.machine.door

    def start(self) -> None:
        self._emit(self.machine.start(self._clock.now()))

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def contact(self, is_open: bool) -> None:
        self._emit(self.machine.contact(is_open, self._clock.now(), self._clock.monotonic()))

    def exit_request(self) -> None:
        self._emit(self.machine.exit_request(self._clock.now(), self._clock.monotonic()))

    def tamper(self, active: bool) -> None:
        self._emit(self.machine.tamper(active, self._clock.now()))

    def grant(self) -> None:
        """Release the door for its unlock time (a granted credential, or an operator's remote open)."""
        self._emit(self.machine.grant(self._clock.now(), self._clock.monotonic()))

    def _on_decision(self, event: Event) -> None:
        assert isinstance(event, DecisionEvent)
        d = event.decision
        if d.granted and d.door_id == self.door.id:
            self.grant()

    def _on_mode(self, event: Event) -> None:
        """A door-level event sets this door's own mode. A site-level event (door_id None) starts a lockdown
        (mode LOCKDOWN) or lifts it (any other mode), and each door returns to its own mode."""
        assert isinstance(event, ModeEvent)
        if event.door_id is None:
            self._site_lockdown = event.mode is DoorMode.LOCKDOWN
        elif event.door_id == self.door.id:
            self._own_mode = event.mode
        else:
            return
        effective = DoorMode.LOCKDOWN if self._site_lockdown else self._own_mode
        self._emit(self.machine.set_mode(effective, self._clock.now()))

    def _tick(self) -> None:
        self._timer = None
        self._emit(self.machine.tick(self._clock.now(), self._clock.monotonic()))

    def _emit(self, events: list[Event]) -> None:
        for event in events:
            self._bus.publish(event)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.machine.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - self._clock.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._tick)
