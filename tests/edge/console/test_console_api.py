"""The console's door, site and event endpoints for each role, refusals included, and the live event stream."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import httpx
import pytest

from edge.console.stream import FIRST_FRAME, sse_events, sse_frame
from edge.events import ExitRequestEvent
from edge.gateway import Gateway
from edge.model import DoorMode


def stored(gw: Gateway, kind: str) -> list[dict[str, Any]]:
    assert gw.events is not None
    gw.events.flush()
    with sqlite3.connect(gw.db_path) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE type = ? ORDER BY seq", (kind,)).fetchall()
    return [json.loads(p) for (p,) in rows]


def in_lockdown(gw: Gateway) -> bool:
    assert gw.engine is not None
    return gw.engine.state.lockdown


def a_door(gw: Gateway) -> str:
    return next(iter(gw.site.doors))


async def test_doors_are_tiles_with_mode_state_and_controller(
    guard: httpx.AsyncClient, gateway: Gateway
) -> None:
    response = await guard.get("/api/doors")
    assert response.status_code == 200
    tiles = response.json()
    assert [t["id"] for t in tiles] == list(gateway.site.doors)
    first = tiles[0]
    assert first["mode"] == "normal" and first["state"] == "locked"
    assert first["controller"] == "sim-1" and first["controller_online"] is True


async def test_guard_and_admin_open_a_door_with_a_reason(
    guard: httpx.AsyncClient, admin: httpx.AsyncClient, gateway: Gateway
) -> None:
    door = a_door(gateway)
    for client in (guard, admin):
        response = await client.post(f"/api/doors/{door}/open", json={"reason": "courier at the gate"})
        assert response.status_code == 200, response.text
        assert response.json() == {"ok": True}
    opens = stored(gateway, "remote_open")
    assert [(o["door"], o["by"], o["reason"]) for o in opens] == [
        (door, "console:guard1", "courier at the gate"),
        (door, "console:admin", "courier at the gate"),
    ]


async def test_opening_needs_a_reason(guard: httpx.AsyncClient, gateway: Gateway) -> None:
    door = a_door(gateway)
    for body in ({}, {"reason": ""}, {"reason": "   "}):
        response = await guard.post(f"/api/doors/{door}/open", json=body)
        assert response.status_code == 422
        assert response.json()["detail"]
    assert stored(gateway, "remote_open") == []


async def test_opening_an_unknown_door_is_404(guard: httpx.AsyncClient) -> None:
    response = await guard.post("/api/doors/no-such-door/open", json={"reason": "x"})
    assert response.status_code == 404
    assert response.json() == {"detail": "no door 'no-such-door'"}


async def test_admin_locks_down_and_lifts_it(admin: httpx.AsyncClient, gateway: Gateway) -> None:
    door = a_door(gateway)
    assert (await admin.post("/api/site/lockdown", json={"reason": "intruder"})).status_code == 200
    assert in_lockdown(gateway)
    tiles = (await admin.get("/api/doors")).json()
    assert {t["mode"] for t in tiles} == {"lockdown"}
    refused = await admin.post(f"/api/doors/{door}/open", json={"reason": "let me out"})
    assert refused.status_code == 409
    assert (await admin.post("/api/site/normal", json={"reason": "all clear"})).status_code == 200
    assert not in_lockdown(gateway)
    modes = [(m["mode"], m["by"], m["reason"]) for m in stored(gateway, "mode") if m["door"] is None]
    assert modes == [("lockdown", "console:admin", "intruder"), ("normal", "console:admin", "all clear")]
    refusals = [e for e in stored(gateway, "console") if e["action"] == "open_door"]
    assert refusals[0]["ok"] is False and refusals[0]["door"] == door


async def test_a_guard_cannot_lock_down_or_lift_it(guard: httpx.AsyncClient, gateway: Gateway) -> None:
    for path in ("/api/site/lockdown", "/api/site/normal"):
        response = await guard.post(path, json={"reason": "curious"})
        assert response.status_code == 403
        assert response.json() == {"detail": "admin only"}
    assert not in_lockdown(gateway)
    forbidden = [e for e in stored(gateway, "console") if e["action"] == "forbidden"]
    assert [e["by"] for e in forbidden] == ["guard1", "guard1"]


async def test_lockdown_needs_a_reason(admin: httpx.AsyncClient, gateway: Gateway) -> None:
    assert (await admin.post("/api/site/lockdown", json={})).status_code == 422
    assert not in_lockdown(gateway)


async def test_recent_events_newest_first(guard: httpx.AsyncClient, gateway: Gateway) -> None:
    await guard.post(f"/api/doors/{a_door(gateway)}/open", json={"reason": "visitor"})
    assert gateway.events is not None
    gateway.events.flush()
    response = await guard.get("/api/events", params={"limit": 2})
    assert response.status_code == 200
    events = response.json()
    assert len(events) == 2 and events[0]["seq"] > events[1]["seq"]
    everything = (await guard.get("/api/events")).json()
    assert "remote_open" in {e["event"]["type"] for e in everything}
    assert (await guard.get("/api/events", params={"limit": 0})).status_code == 422


async def test_the_stream_sends_bus_events_as_sse(gateway: Gateway) -> None:
    gone = False

    async def disconnected() -> bool:
        return gone

    stream = sse_events(gateway.bus, disconnected, keepalive=0.05)
    assert await anext(stream) == FIRST_FRAME  # subscribed to the bus from here on
    event = ExitRequestEvent(at=gateway.clock.now(), door_id=a_door(gateway))
    gateway.bus.publish(event)
    frame = await anext(stream)
    assert frame == sse_frame(event)
    assert frame.startswith("event: exit_request\ndata: {") and frame.endswith("\n\n")
    assert await anext(stream) == ": keepalive\n\n"
    second = ExitRequestEvent(at=gateway.clock.now(), door_id=a_door(gateway))
    gateway.bus.publish(second)  # still subscribed after a keepalive
    assert await anext(stream) == sse_frame(second)
    gone = True
    await stream.aclose()  # type: ignore[attr-defined]
    gateway.bus.publish(ExitRequestEvent(at=gateway.clock.now(), door_id=a_door(gateway)))  # unsubscribed


async def test_the_stream_ends_when_the_console_closes(gateway: Gateway) -> None:
    async def connected() -> bool:
        return False

    closing = asyncio.Event()
    stream = sse_events(gateway.bus, connected, keepalive=60, closing=closing)
    assert await anext(stream) == FIRST_FRAME
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    closing.set()
    with pytest.raises(StopAsyncIteration):
        await waiting


async def test_the_stream_endpoint_is_for_logged_in_callers(guard: httpx.AsyncClient) -> None:
    # Only the refusal goes through HTTP: the in-process transport buffers a whole response, and a live
    # stream never ends. The SSE body is tested on the generator above.
    guard.headers.pop("X-CSRF-Token")
    guard.cookies.clear()
    assert (await guard.get("/api/events/stream")).status_code == 401


async def test_openapi_documents_every_endpoint(anon: httpx.AsyncClient) -> None:
    paths = (await anon.get("/openapi.json")).json()["paths"]
    for path in (
        "/api/setup",
        "/api/login",
        "/api/logout",
        "/api/session",
        "/api/accounts",
        "/api/doors",
        "/api/doors/{door_id}/open",
        "/api/site/lockdown",
        "/api/site/normal",
        "/api/events",
        "/api/events/stream",
        "/api/events/{seq}/thumbnail",
        "/api/site",
        "/api/health",
        "/api/alarms",
        "/api/alarms/{alarm_id}/ack",
        "/api/passes/check",
        "/api/passes/check-camera",
        "/api/passes/cameras",
        "/api/passes",
        "/api/visitors",
        "/api/people",
    ):
        assert path in paths


def test_modes_in_tiles_are_door_modes() -> None:
    assert DoorMode("lockdown") is DoorMode.LOCKDOWN
