"""The event bus: type filtering, a failing handler does not stop the others, slow streams drop the oldest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

import pytest

from edge.events import AlarmEvent, AlarmKind, DoorState, DoorStateEvent, Event, EventBus, RelayCommand

T = datetime(2026, 1, 5, tzinfo=UTC)


def alarm(n: int) -> AlarmEvent:
    return AlarmEvent(at=T, kind=AlarmKind.TAMPER, detail=str(n))


def test_handlers_get_only_their_type_and_can_unsubscribe() -> None:
    bus = EventBus()
    alarms: list[Event] = []
    everything: list[Event] = []
    off = bus.subscribe(AlarmEvent, alarms.append)
    bus.subscribe(Event, everything.append)
    bus.publish(alarm(1))
    bus.publish(DoorStateEvent(at=T, door_id="d", state=DoorState.OPEN, previous=DoorState.UNLOCKED))
    off()
    bus.publish(alarm(2))
    assert [a.detail for a in alarms if isinstance(a, AlarmEvent)] == ["1"]
    assert len(everything) == 3


def test_a_failing_handler_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    got: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(Event, broken)
    bus.subscribe(Event, got.append)
    bus.publish(alarm(1))
    assert len(got) == 1
    assert "subscriber bug" in caplog.text


async def test_slow_stream_drops_oldest_and_never_blocks_publish() -> None:
    bus = EventBus()
    stream = bus.stream(AlarmEvent, maxsize=3)
    assert isinstance(stream, AsyncGenerator)
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)  # the stream registers its queue
    for n in range(10):
        bus.publish(alarm(n))  # returns at once although nobody reads
    bus.publish(RelayCommand(at=T, door_id="d", unlock=True))  # filtered out by type
    received = [await first] + [await anext(stream) for _ in range(2)]
    details = [e.detail for e in received if isinstance(e, AlarmEvent)]
    assert details == ["7", "8", "9"]  # the newest three; 0..6 were dropped as the queue overflowed
    await stream.aclose()


def test_records_are_json_ready() -> None:
    rec = alarm(5).to_record()
    assert rec == {
        "type": "alarm",
        "at": "2026-01-05T00:00:00.000000+00:00",
        "alarm": "tamper",
        "active": True,
        "door": None,
        "device": None,
        "detail": "5",
    }
