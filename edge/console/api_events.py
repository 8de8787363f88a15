"""The console's event endpoints: the stored log (newest first), the live feed as server-sent events, and the
face snapshot an event refers to."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from edge.console.api import Console, ConsoleDep, SessionDep
from edge.console.recent import DbReader, RecentEvents
from edge.console.snapshots import snapshot_name, snapshot_path
from edge.console.stream import sse_events
from edge.gateway import Gateway

router = APIRouter(prefix="/api")

RING, RING_STARTING = "recent_events", "recent_events_starting"  # keys in Console.caches


@router.get("/events", response_model=list[dict[str, Any]])
async def events(
    _: SessionDep,
    console: ConsoleDep,
    limit: int = 100,
    before: Annotated[int | None, Query(description="Only events with a lower seq (paging back).")] = None,
) -> Response:
    """The most recent stored events, newest first (at most 1000); with `before`, those older than that seq.
    Each is {"seq": ..., "event": <the stored record>}. Answered from memory (edge/console/recent.py); only
    pages reaching further back than the latest ~1000 events read the database."""
    if not 1 <= limit <= 1000:
        raise HTTPException(422, "limit must be 1..1000")
    if before is not None and before < 1:
        raise HTTPException(422, "before must be a seq (1 or more)")
    ring = await recent_events(console)
    return Response(await ring.page(limit, before), media_type="application/json")


async def recent_events(console: Console) -> RecentEvents:
    """The console's ring of recent events, started (filled from SQLite, fed by the event log) on first use:
    at start-up by ConsoleServer, else by the first request."""
    ring = console.caches.get(RING)
    if isinstance(ring, RecentEvents):
        return ring
    starting = console.caches.get(RING_STARTING)
    if not isinstance(starting, asyncio.Task):
        starting = asyncio.get_running_loop().create_task(_start_ring(console))
        console.caches[RING_STARTING] = starting
    try:
        return await asyncio.shield(starting)
    finally:
        if starting.done():
            console.caches.pop(RING_STARTING, None)


async def _start_ring(console: Console) -> RecentEvents:
    events_log = console.gateway.events
    if events_log is None or events_log.closed:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the gateway's event log is not running")
    ring = RecentEvents(DbReader(console.gateway.db_path))
    try:
        await ring.start(events_log)
    except BaseException:
        ring.stop()
        await ring.reader.close()
        raise
    console.caches[RING] = ring
    return ring


async def close_recent_events(console: Console) -> None:
    """Stop the ring's feed and close its database connection (the console is stopping)."""
    ring = console.caches.pop(RING, None)
    if isinstance(ring, RecentEvents):
        ring.stop()
        await ring.reader.close()


@router.get(
    "/events/{seq}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "The face snapshot (JPEG)."}},
)
async def thumbnail(seq: int, session: SessionDep, console: ConsoleDep) -> Response:
    """The face snapshot an event refers to (an unknown face or a spoof attempt); 404 if it has none or the
    picture has been deleted by retention. Logged-in staff only; never cached by the browser."""
    ring = await recent_events(console)
    picture = await ring.reader.run(lambda conn: _snapshot_of(conn, console.gateway, seq))
    if picture is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no face snapshot for event {seq}")
    # Audited once per session and snapshot: the feed shows thumbnails again on every reload.
    viewed = console.caches.setdefault("snapshot_views", set())
    assert isinstance(viewed, set)
    if (session.token, seq) not in viewed:
        if len(viewed) >= 10_000:
            viewed.clear()
        viewed.add((session.token, seq))
        console.audit("view_snapshot", session.account.username, True, f"event {seq}")
    return Response(picture, media_type="image/jpeg")


def _snapshot_of(conn: sqlite3.Connection, gw: Gateway, seq: int) -> bytes | None:
    row = conn.execute("SELECT payload FROM events WHERE seq = ?", (seq,)).fetchone()
    name = snapshot_name(json.loads(row[0])) if row else None
    path = snapshot_path(gw.config.gateway.data_dir, name) if name else None
    try:
        return path.read_bytes() if path is not None else None
    except FileNotFoundError:
        return None


@router.get("/events/stream", response_class=StreamingResponse)
def event_stream(session: SessionDep, console: ConsoleDep, request: Request) -> StreamingResponse:
    """Live events as server-sent events (text/event-stream), one message per event, named by its type. The
    stream ends with its session (logout, or an admin disabled the account or changed its password or role):
    at the next event or keepalive."""

    async def gone() -> bool:
        return console.sessions.get(session.token) is None or await request.is_disconnected()

    return StreamingResponse(
        sse_events(console.gateway.bus, gone, closing=console.closing),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store"},
    )
