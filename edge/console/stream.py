"""Live events for the console as server-sent events.

SSE rather than a WebSocket: one-way is all the console needs, it goes through proxies as plain HTTP, and
the browser's EventSource reconnects by itself. Each client has its own bounded queue, filled by a bus
subscription: a slow browser drops its oldest events and never holds up the doors.

The subscription is made before the first frame is sent (a `retry:` line telling EventSource how soon to
reconnect), so once a client has read that frame it misses no event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from edge.console.snapshots import with_snapshot
from edge.events import Event, EventBus

KEEPALIVE_SECONDS = 15.0
RETRY_MS = 3000
QUEUE_SIZE = 1000
FIRST_FRAME = f"retry: {RETRY_MS}\n\n"


def sse_frame(event: Event) -> str:
    """One event as an SSE message: its type as the event name, its stored record as the data (with the
    name of a face snapshot it refers to, edge.console.snapshots)."""
    record = with_snapshot(event.to_record())
    return f"event: {event.type}\ndata: {json.dumps(record, separators=(',', ':'))}\n\n"


async def sse_events(
    bus: EventBus,
    disconnected: Callable[[], Awaitable[bool]],
    keepalive: float = KEEPALIVE_SECONDS,
    closing: asyncio.Event | None = None,
) -> AsyncIterator[str]:
    """SSE text for every event on the bus until the client goes away or `closing` is set (the server is
    stopping); a comment line as keepalive when quiet, so proxies keep the connection and a vanished client
    is noticed."""
    queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)

    def put(event: Event) -> None:  # on the loop, inside bus.publish: must be cheap and never raise
        if queue.full():
            queue.get_nowait()  # a slow reader loses the oldest, never blocks the door
        queue.put_nowait(event)

    unsubscribe = bus.subscribe(Event, put)
    closed = asyncio.ensure_future((closing or asyncio.Event()).wait())
    getting: asyncio.Future[Event] | None = None
    try:
        yield FIRST_FRAME
        while not closed.done() and not await disconnected():
            if getting is None:  # a quiet spell leaves the read pending: it is awaited again, not replaced
                getting = asyncio.ensure_future(queue.get())
            waiting: set[asyncio.Future[Any]] = {getting, closed}
            done, _ = await asyncio.wait(waiting, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED)
            if getting in done:
                event, getting = getting.result(), None
                yield sse_frame(event)
            elif not done:
                yield ": keepalive\n\n"
    finally:
        unsubscribe()
        for pending in (getting, closed):
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
