"""The console's recent events in memory (edge/console/recent.py): GET /api/events answers exactly what the
event log in SQLite holds (same records, same seq, newest first), through trimming, paging back with
`before`, events committed while the ring fills, and retention deleting old events."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI

from edge.console.api import Console
from edge.console.api_events import RING, close_recent_events, recent_events
from edge.console.recent import DbReader, RecentEvents
from edge.console.snapshots import with_snapshot
from edge.events import AlarmEvent, AlarmKind, ConsoleEvent
from edge.gateway import Gateway
from edge.store.db import open_db
from edge.store.event_log import EventLog, prune_events

T = TypeVar("T")
SNAPSHOT = "000001700000000-unknown-face-1.jpg"


@pytest.fixture
async def app(app: FastAPI) -> AsyncIterator[FastAPI]:
    """conftest's app; its ring (if a test started one) stopped and its connection closed afterwards."""
    yield app
    await close_recent_events(app.state.console)


def in_db(gateway: Gateway, before: int | None = None, limit: int = 10**9) -> list[dict[str, Any]]:
    """What the event log in SQLite holds, as GET /api/events shows it, newest first."""
    with sqlite3.connect(gateway.db_path) as conn:
        rows = conn.execute(
            "SELECT seq, payload FROM events WHERE seq < ? ORDER BY seq DESC LIMIT ?",
            (before if before is not None else 2**62, limit),
        ).fetchall()
    return [{"seq": seq, "event": with_snapshot(json.loads(payload))} for seq, payload in rows]


def publish(gateway: Gateway, count: int, start: int = 0) -> None:
    """`count` stored events: console actions, and every seventh an alarm naming a face snapshot."""
    for i in range(start, start + count):
        if i % 7 == 3:
            detail = f"stranger at the gate; snapshot {SNAPSHOT} kept on the gateway"
            gateway.bus.publish(
                AlarmEvent(at=gateway.clock.now(), kind=AlarmKind.FACE_UNKNOWN, detail=detail)
            )
        else:
            gateway.bus.publish(
                ConsoleEvent(at=gateway.clock.now(), action="open", by="guard", ok=True, detail=f"#{i} 门")
            )


async def flushed(gateway: Gateway) -> None:
    assert gateway.events is not None
    await asyncio.to_thread(gateway.events.flush)


def console_of(app: FastAPI) -> Console:
    console: Console = app.state.console
    return console


async def small_ring(app: FastAPI, gateway: Gateway, capacity: int) -> RecentEvents:
    """A ring of `capacity` events in place of the console's own (started on first use with 1000)."""
    console = console_of(app)
    await close_recent_events(console)
    ring = RecentEvents(DbReader(gateway.db_path), capacity=capacity, floor_seconds=0.0)
    assert gateway.events is not None
    await ring.start(gateway.events)
    console.caches[RING] = ring
    return ring


async def test_the_api_answers_what_sqlite_holds(guard: httpx.AsyncClient, gateway: Gateway) -> None:
    publish(gateway, 30)
    await flushed(gateway)
    first = (await guard.get("/api/events", params={"limit": 1000})).json()  # the ring starts and fills
    assert first == in_db(gateway) and len(first) > 30
    publish(gateway, 25, start=30)  # fed by the event log's commits from now on
    await flushed(gateway)
    for limit in (1, 7, 50, 100, 1000):
        response = await guard.get("/api/events", params={"limit": limit})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == in_db(gateway, limit=limit)
    alarms = [e for e in in_db(gateway) if e["event"]["type"] == "alarm" and "snapshot" in e["event"]]
    assert alarms and alarms[0]["event"]["snapshot"] == SNAPSHOT
    assert (await guard.get("/api/events")).json() == in_db(gateway, limit=100)  # the default limit


async def test_paging_back_reaches_below_the_ring(
    app: FastAPI, guard: httpx.AsyncClient, gateway: Gateway
) -> None:
    publish(gateway, 40)
    await flushed(gateway)
    await small_ring(app, gateway, capacity=10)
    publish(gateway, 300, start=40)  # trims the ring several times over
    await flushed(gateway)
    everything = in_db(gateway)
    assert len(everything) > 340
    newest = (await guard.get("/api/events", params={"limit": 8})).json()
    assert newest == everything[:8]
    assert (await guard.get("/api/events", params={"limit": 500})).json() == everything[
        :500
    ]  # beyond the ring
    # Page back through the whole log, 9 at a time: within the ring, across its end, then from SQLite.
    pages: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        params = {"limit": 9} | ({"before": before} if before is not None else {})
        page = (await guard.get("/api/events", params=params)).json()
        assert page == in_db(gateway, before=before, limit=9)
        if not page:
            break
        pages += page
        before = page[-1]["seq"]
    assert pages == everything
    assert (await guard.get("/api/events", params={"before": everything[-1]["seq"]})).json() == []


async def test_bad_paging_is_refused(guard: httpx.AsyncClient) -> None:
    for params in ({"before": 0}, {"before": -3}, {"before": "x"}, {"limit": 1001}):
        response = await guard.get("/api/events", params=params)
        assert response.status_code == 422, params
        assert "detail" in response.json()


class RacingReader(DbReader):
    """A reader whose queries race the event log's writer: events are committed (and so reach the ring's
    listener) just before its query reads the database and again just after, before the ring merges them."""

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway.db_path)
        self.gateway = gateway
        self.raced = False

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self.raced:
            return super()._call(work)
        self.raced = True  # the first query only: the ring's fill
        self.commit(3)  # in both the query's rows and the buffered commits
        result = super()._call(work)
        self.commit(4)  # buffered commits only
        return result

    def commit(self, count: int) -> None:
        log = self.gateway.events
        assert log is not None
        for i in range(count):
            record = ConsoleEvent(at=self.gateway.clock.now(), action="race", by="t", ok=True, detail=str(i))
            log.append(record.to_record())
        log.flush()


async def test_events_committed_while_the_ring_fills_appear_once(gateway: Gateway) -> None:
    publish(gateway, 50)
    await flushed(gateway)
    assert gateway.events is not None
    for capacity in (5, 40, 1000):
        reader = RacingReader(gateway)
        ring = RecentEvents(reader, capacity=capacity)
        await ring.start(gateway.events)
        try:
            assert reader.raced
            for limit in (1, 5, 40, 1000):
                assert json.loads(await ring.page(limit)) == in_db(gateway, limit=limit), (capacity, limit)
        finally:
            ring.stop()
            await ring.reader.close()


async def test_events_deleted_by_retention_leave_the_ring(
    app: FastAPI, guard: httpx.AsyncClient, gateway: Gateway
) -> None:
    publish(gateway, 60)
    await flushed(gateway)
    ring = await small_ring(app, gateway, capacity=1000)
    everything = in_db(gateway)
    assert (await guard.get("/api/events", params={"limit": 1000})).json() == everything
    through = everything[20]["seq"]  # the oldest ~40 events were sent and are then pruned
    assert gateway.events is not None
    gateway.events.mark_sent([e["seq"] for e in everything if e["seq"] <= through])
    db = open_db(gateway.db_path)  # as the upkeep task does: its own connection
    try:
        assert prune_events(db, through) > 0
    finally:
        db.close()
    assert in_db(gateway) == everything[:20]
    assert ring.floor_seconds == 0.0  # checked at every request here (every 10 s when served)
    assert (await guard.get("/api/events", params={"limit": 1000})).json() == everything[:20]
    page = (await guard.get("/api/events", params={"limit": 5, "before": everything[17]["seq"]})).json()
    assert page == everything[18:20]


async def test_the_first_requests_share_one_ring(app: FastAPI, gateway: Gateway) -> None:
    publish(gateway, 5)
    await flushed(gateway)
    console = console_of(app)
    rings = await asyncio.gather(*(recent_events(console) for _ in range(10)))
    assert all(ring is rings[0] for ring in rings)
    await close_recent_events(console)
    assert RING not in console.caches


def test_a_failing_commit_listener_is_logged_and_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[list[tuple[int, str]]] = []

    def broken(batch: list[tuple[int, str]]) -> None:
        raise RuntimeError("listener bug")

    with EventLog(tmp_path / "log.db", synchronous="normal") as log:
        remove = log.on_commit(broken)
        log.on_commit(seen.append)
        record = {"type": "test", "at": "2026-01-01T00:00:00+00:00"}
        with caplog.at_level(logging.ERROR, logger="edge.store.event_log"):
            first = log.append(record).result(5)
        assert "a commit listener failed" in caplog.text
        remove()
        second = log.append(record).result(5)
    assert [[seq for seq, _ in batch] for batch in seen] == [[first.seq], [second.seq]]
    with sqlite3.connect(tmp_path / "log.db") as conn:
        stored = conn.execute("SELECT seq, payload FROM events ORDER BY seq").fetchall()
    assert stored == [pair for batch in seen for pair in batch]
