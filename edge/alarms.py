"""Alarms that wait until a guard acknowledges them, kept by the gateway itself in SQLite (the console_alarms
table, named for the console that shows them) so that none is lost while the console is down or restarting,
on a gateway without a console, or across a restart of the gateway.

Gateway.start() starts the recorder right after the boot check, before any device, reader or the cloud link
can raise an alarm; Gateway.stop() flushes it when the bus stops being persisted. The console only reads the
list and acknowledges through the gateway's store (edge/console/api_alarms.py); the metrics and `menwei status`
count what is still unacknowledged.

Every active AlarmEvent on the bus (door forced or held, tamper, device offline, outbox overflow, fire
alarm, unknown face, store restored, ...) opens an alarm; a repeat of one not yet acknowledged (same kind,
door and device, cleared or not) counts up and is active again instead of piling up rows, so a flapping
reader stays one line. The clearing event (the door closed again, the controller back online) marks it
cleared, but it stays until acknowledged: the guard must have seen it.

Writes run in worker threads, one at a time and in bus order (one writer task), never on the loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from edge.events import AlarmEvent, Event, EventBus
from edge.store.db import open_db

log = logging.getLogger(__name__)

KEEP_ACKNOWLEDGED = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Alarm:
    id: int
    at: str
    kind: str
    door_id: str | None
    device_id: str | None
    detail: str
    count: int
    last_at: str
    cleared: bool
    acknowledged: bool


_COLUMNS = "id, at, kind, door, device, detail, count, last_at, cleared_at, acknowledged_at"


def _alarm(row: tuple[Any, ...]) -> Alarm:
    return Alarm(
        id=row[0],
        at=row[1],
        kind=row[2],
        door_id=row[3],
        device_id=row[4],
        detail=row[5],
        count=row[6],
        last_at=row[7],
        cleared=row[8] is not None,
        acknowledged=row[9] is not None,
    )


class AlarmStore:
    """The console_alarms table of one database file. Blocking: call from a worker thread."""

    def __init__(self, db_path: Path, synchronous: Literal["full", "normal"] = "full") -> None:
        self.db_path = db_path
        self.synchronous = synchronous

    def record(self, event: AlarmEvent) -> None:
        at = event.at.isoformat(timespec="microseconds")
        db = open_db(self.db_path, synchronous=self.synchronous)
        try:
            with db.conn:
                # Fixed SQL text: the values go in as parameters.
                same = "kind = ? AND door IS ? AND device IS ? AND acknowledged_at IS NULL"
                key = (event.kind.value, event.door_id, event.device_id)
                if not event.active:
                    db.conn.execute(
                        f"UPDATE console_alarms SET cleared_at = ? WHERE {same} AND cleared_at IS NULL",  # noqa: S608
                        (at, *key),
                    )
                    return
                updated = db.conn.execute(
                    f"UPDATE console_alarms SET count = count + 1, last_at = ?, detail = ?, cleared_at = NULL WHERE {same}",  # noqa: S608, E501
                    (at, event.detail, *key),
                ).rowcount
                if not updated:
                    db.conn.execute(
                        "INSERT INTO console_alarms (at, kind, door, device, detail, last_at)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (at, *key, event.detail, at),
                    )
        finally:
            db.close()

    def open_count(self) -> int:
        """How many alarms nobody has acknowledged yet (cleared ones included)."""
        db = open_db(self.db_path, synchronous=self.synchronous)
        try:
            count: int = db.conn.execute(
                "SELECT count(*) FROM console_alarms WHERE acknowledged_at IS NULL"
            ).fetchone()[0]
        finally:
            db.close()
        return count

    def open_alarms(self) -> list[Alarm]:
        """Unacknowledged alarms, oldest first."""
        db = open_db(self.db_path, synchronous=self.synchronous)
        try:
            rows = db.conn.execute(
                f"SELECT {_COLUMNS} FROM console_alarms WHERE acknowledged_at IS NULL ORDER BY id"  # noqa: S608
            ).fetchall()
        finally:
            db.close()
        return [_alarm(r) for r in rows]

    def acknowledge(self, alarm_id: int, by: str, note: str, at: datetime) -> tuple[Alarm | None, bool]:
        """(the alarm, True) if this call acknowledged it; (alarm, False) if it was already; (None, False) if
        there is no such alarm."""
        db = open_db(self.db_path, synchronous=self.synchronous)
        try:
            with db.conn:
                changed = db.conn.execute(
                    "UPDATE console_alarms SET acknowledged_at = ?, acknowledged_by = ?, note = ?"
                    " WHERE id = ? AND acknowledged_at IS NULL",
                    (at.isoformat(timespec="microseconds"), by, note, alarm_id),
                ).rowcount
                row = db.conn.execute(
                    f"SELECT {_COLUMNS} FROM console_alarms WHERE id = ?",  # noqa: S608
                    (alarm_id,),
                ).fetchone()
                # Acknowledged alarms are history, which the event log keeps (the ack is audited there): the
                # table holds them a week, then lets them go, so it stays small.
                db.conn.execute(
                    "DELETE FROM console_alarms WHERE acknowledged_at IS NOT NULL AND acknowledged_at < ?",
                    ((at - KEEP_ACKNOWLEDGED).isoformat(timespec="microseconds"),),
                )
        finally:
            db.close()
        return (_alarm(row) if row else None), bool(changed)


class AlarmRecorder:
    """Subscribes to the bus (from construction on) and writes alarms in order from one background task."""

    def __init__(self, store: AlarmStore, bus: EventBus) -> None:
        self.store = store
        self._queue: asyncio.Queue[AlarmEvent] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe = bus.subscribe(AlarmEvent, self._on_alarm)

    def _on_alarm(self, event: Event) -> None:
        assert isinstance(event, AlarmEvent)
        self._queue.put_nowait(event)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while not self._queue.empty():
            event = self._queue.get_nowait()
            try:
                await asyncio.to_thread(self.store.record, event)
            except Exception:  # a task boundary: the alarm is still in the event log
                log.exception("could not record the %s alarm for acknowledgement", event.kind)

    async def flush(self) -> None:
        """Wait until every alarm published so far is written (tests, shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Stop recording and write what is queued. Safe to call twice."""
        unsubscribe, self._unsubscribe = self._unsubscribe, lambda: None
        unsubscribe()
        await self.flush()
