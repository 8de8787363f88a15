"""The console's event endpoints: the stored log (newest first), the live feed as server-sent events, and the
face snapshot an event refers to."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import StreamingResponse

from edge.console.api import ConsoleDep, SessionDep
from edge.console.snapshots import snapshot_name, snapshot_path, with_snapshot
from edge.console.stream import sse_events
from edge.gateway import Gateway
from edge.store.db import open_db

router = APIRouter(prefix="/api")


@router.get("/events")
async def events(_: SessionDep, console: ConsoleDep, limit: int = 100) -> list[dict[str, Any]]:
    """The most recent stored events, newest first (at most 1000)."""
    if not 1 <= limit <= 1000:
        raise HTTPException(422, "limit must be 1..1000")
    return await asyncio.to_thread(_recent, console.gateway, limit)


def _recent(gw: Gateway, limit: int) -> list[dict[str, Any]]:
    db = open_db(gw.db_path, synchronous=gw.config.store.synchronous)
    try:
        rows = db.conn.execute(
            "SELECT seq, payload FROM events ORDER BY seq DESC LIMIT ?", (limit,)
        ).fetchall()
    finally:
        db.close()
    return [{"seq": seq, "event": with_snapshot(json.loads(payload))} for seq, payload in rows]


@router.get(
    "/events/{seq}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "The face snapshot (JPEG)."}},
)
async def thumbnail(seq: int, session: SessionDep, console: ConsoleDep) -> Response:
    """The face snapshot an event refers to (an unknown face or a spoof attempt); 404 if it has none or the
    picture has been deleted by retention. Logged-in staff only; never cached by the browser."""
    picture = await asyncio.to_thread(_snapshot_of, console.gateway, seq)
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


def _snapshot_of(gw: Gateway, seq: int) -> bytes | None:
    db = open_db(gw.db_path, synchronous=gw.config.store.synchronous)
    try:
        row = db.conn.execute("SELECT payload FROM events WHERE seq = ?", (seq,)).fetchone()
    finally:
        db.close()
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
