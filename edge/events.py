"""Events and the in-process event bus.

Everything that happens at the gate is a small frozen dataclass published on the bus: decisions, alarms, door
state changes, mode changes, relay commands. Handlers registered with `subscribe` run synchronously on the event
loop inside `publish` and must be quick (they enqueue, they do not wait); consumers that may be slow read from a
bounded `stream()` instead.

Events with `persist = True` are written to the durable event log; `to_record()` gives their JSON-able payload.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from edge.decision import Decision
from edge.model import DoorMode

log = logging.getLogger(__name__)


class AlarmKind(StrEnum):
    DOOR_FORCED = "door_forced"
    DOOR_HELD = "door_held"
    TAMPER = "tamper"
    DEVICE_OFFLINE = "device_offline"
    OUTBOX_OVERFLOW = "outbox_overflow"
    FIRE_ALARM = "fire_alarm"  # a fire-alarm input is active: its egress doors are held released
    # A face camera saw someone linger unmatched, or a face that never showed liveness (drivers/face). Momentary:
    # never cleared. The detail names the snapshot kept on the gateway; the picture itself is never in an event.
    FACE_UNKNOWN = "face_unknown"
    FACE_SPOOF = "face_spoof"
    # The database failed its boot check and was restored from a backup or started empty (edge/store/recovery.py);
    # the detail says which, and which event seqs are not on the gateway. Momentary: never cleared.
    STORE_RESTORED = "store_restored"


class DoorState(StrEnum):
    LOCKED = "locked"  # relay says locked, contact closed
    UNLOCKED = "unlocked"  # relay released (grant, exit request, mode unlocked), contact closed
    OPEN = "open"  # contact open with a reason (grant or exit)
    FORCED = "forced"  # contact open without a grant
    HELD = "held"  # open longer than its held time


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Event:
    persist: ClassVar[bool] = True
    type: ClassVar[str] = "event"
    at: datetime

    def to_record(self) -> dict[str, Any]:
        """The event's JSON payload, as stored in the event log and sent upstream."""
        return {"type": self.type, "at": _iso(self.at)}


@dataclass(frozen=True, slots=True)
class DecisionEvent(Event):
    type: ClassVar[str] = "decision"
    decision: Decision

    def to_record(self) -> dict[str, Any]:
        d = self.decision
        return {
            "type": self.type,
            "at": _iso(d.at),
            "granted": d.granted,
            "reason": d.reason.value,
            "reader": d.reader_id,
            "door": d.door_id,
            "direction": d.direction.value if d.direction else None,
            "credential_kind": d.kind.value,
            "credential": d.credential,
            "person": d.person_id,
            "pass": d.pass_id,
            "apb_violation": d.apb_violation,
        }


@dataclass(frozen=True, slots=True)
class AlarmEvent(Event):
    type: ClassVar[str] = "alarm"
    kind: AlarmKind
    active: bool = True  # False: the alarm condition has cleared
    door_id: str | None = None
    device_id: str | None = None
    detail: str = ""

    def to_record(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "at": _iso(self.at),
            "alarm": self.kind.value,
            "active": self.active,
            "door": self.door_id,
            "device": self.device_id,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class DoorStateEvent(Event):
    type: ClassVar[str] = "door_state"
    door_id: str
    state: DoorState
    previous: DoorState

    def to_record(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "at": _iso(self.at),
            "door": self.door_id,
            "state": self.state.value,
            "previous": self.previous.value,
        }


@dataclass(frozen=True, slots=True)
class ModeEvent(Event):
    """A door's (or, with door_id None, the whole site's) mode changed."""

    type: ClassVar[str] = "mode"
    mode: DoorMode
    door_id: str | None = None
    by: str = "system"
    reason: str = ""

    def to_record(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "at": _iso(self.at),
            "mode": self.mode.value,
            "door": self.door_id,
            "by": self.by,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ExitRequestEvent(Event):
    """Request-to-exit (push button, PIR): the door unlocks for egress without a credential."""

    type: ClassVar[str] = "exit_request"
    door_id: str

    def to_record(self) -> dict[str, Any]:
        return {"type": self.type, "at": _iso(self.at), "door": self.door_id}


@dataclass(frozen=True, slots=True)
class RelayCommand(Event):
    """Drive a door's lock. Internal: the decision or state change that caused it is what gets logged."""

    persist: ClassVar[bool] = False
    type: ClassVar[str] = "relay"
    door_id: str
    unlock: bool
    seconds: float | None = None  # pulse length when the controller times it itself

    def to_record(self) -> dict[str, Any]:
        return {"type": self.type, "at": _iso(self.at), "door": self.door_id, "unlock": self.unlock}


@dataclass(frozen=True, slots=True)
class RemoteOpenEvent(Event):
    """An operator released a door without a credential at it (cloud command or console): who and why."""

    type: ClassVar[str] = "remote_open"
    door_id: str
    by: str
    reason: str = ""

    def to_record(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "at": _iso(self.at),
            "door": self.door_id,
            "by": self.by,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class CommandEvent(Event):
    """A remote command was carried out (ok) or refused (error: expired, replayed, invalid, unknown_door,
    failed). The audit trail of what the cloud asked the gateway to do."""

    type: ClassVar[str] = "command"
    command_id: str
    command: str
    by: str
    ok: bool
    error: str | None = None
    reason: str = ""
    door_id: str | None = None
    detail: str = ""

    def to_record(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "at": _iso(self.at),
            "command_id": self.command_id,
            "command": self.command,
            "by": self.by,
            "ok": self.ok,
            "error": self.error,
            "reason": self.reason,
            "door": self.door_id,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class SyncErrorEvent(Event):
    """A message from the cloud was refused (not JSON, wrong schema, wrong site, bad checksum, too large,
    ...). Nothing it carried was applied."""

    type: ClassVar[str] = "sync_error"
    topic: str
    error: str
    detail: str = ""

    def to_record(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "at": _iso(self.at),
            "topic": self.topic,
            "error": self.error,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class AccessListEvent(Event):
    """A new access list version came into force (source: snapshot or delta)."""

    type: ClassVar[str] = "access_list"
    version: int
    previous: int
    source: str

    def to_record(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "at": _iso(self.at),
            "version": self.version,
            "previous": self.previous,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class ConsoleEvent(Event):
    """A guard console action (login, failed login, lock-out, setup, account change, a refused command): who
    did what, and whether it was allowed. Opening a door and changing a mode are audited by their own events."""

    type: ClassVar[str] = "console"
    action: str
    by: str
    ok: bool
    detail: str = ""
    door_id: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "at": _iso(self.at),
            "action": self.action,
            "by": self.by,
            "ok": self.ok,
            "detail": self.detail,
            "door": self.door_id,
        }


Handler = Callable[[Event], None]


@dataclass(slots=True)
class _Stream:
    queue: asyncio.Queue[Event]
    dropped: int = 0


@dataclass(slots=True)
class EventBus:
    """Fan-out of events on one event loop. Not thread-safe: other threads hand events in with
    `loop.call_soon_threadsafe(bus.publish, event)`."""

    _handlers: list[tuple[type[Event], Handler]] = field(default_factory=list)
    _streams: list[tuple[type[Event], _Stream]] = field(default_factory=list)

    def subscribe(self, event_type: type[Event], handler: Handler) -> Callable[[], None]:
        entry = (event_type, handler)
        self._handlers.append(entry)
        return lambda: self._handlers.remove(entry)

    def publish(self, event: Event) -> None:
        for event_type, handler in tuple(self._handlers):
            if isinstance(event, event_type):
                try:
                    handler(event)
                except Exception:  # one broken subscriber must not stop the door
                    log.exception("event handler %r failed on %s", handler, event.type)
        for event_type, stream in self._streams:
            if isinstance(event, event_type):
                if stream.queue.full():
                    stream.queue.get_nowait()  # a slow reader loses the oldest, never blocks the door
                    stream.dropped += 1
                stream.queue.put_nowait(event)

    async def stream(self, event_type: type[Event] = Event, maxsize: int = 1000) -> AsyncIterator[Event]:
        s = _Stream(asyncio.Queue(maxsize))
        entry = (event_type, s)
        self._streams.append(entry)
        try:
            while True:
                yield await s.queue.get()
        finally:
            self._streams.remove(entry)
