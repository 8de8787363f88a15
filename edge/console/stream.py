"""Live events for the console as server-sent events.

SSE rather than a WebSocket: one-way is all the console needs, it goes through proxies as plain HTTP, and
the browser's EventSource reconnects by itself. Each client reads its own bounded `EventBus.stream()`, so a
slow browser drops its oldest events and never holds up the doors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

from edge.events import Event, EventBus

KEEPALIVE_SECONDS = 15.0


def sse_frame(event: Event) -> str:
    """One event as an SSE message: its type as the event name, its stored record as the data."""
    return f"event: {event.type}\ndata: {json.dumps(event.to_record(), separators=(',', ':'))}\n\n"


async def sse_events(
    bus: EventBus,
    disconnected: Callable[[], Awaitable[bool]],
    keepalive: float = KEEPALIVE_SECONDS,
) -> AsyncIterator[str]:
    """SSE text for every event on the bus until the client goes away; a comment line as keepalive when
    quiet, so proxies keep the connection and a vanished client is noticed."""
    stream = bus.stream()
    # The next event is awaited in a task of its own, and a quiet spell only waits on it: cancelling the read
    # at each keepalive would close the bus stream.
    reading: asyncio.Future[Event] | None = None
    try:
        while not await disconnected():
            if reading is None:
                reading = asyncio.ensure_future(anext(stream))
            done, _ = await asyncio.wait({reading}, timeout=keepalive)
            if not done:
                yield ": keepalive\n\n"
                continue
            event, reading = reading.result(), None
            yield sse_frame(event)
    finally:
        if reading is not None:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
        await stream.aclose()  # type: ignore[attr-defined]
