"""The console's view of the event log: the most recent stored events in memory, older ones from SQLite.

GET /api/events is the console's most frequent request, and reading it from SQLite each time (a connection per
request, rows decoded in a worker thread holding the GIL the doors' loop needs) made a busy console slow the
doors (docs/benchmarks.md, "Guard console under load"). Instead:

- `RecentEvents` keeps the newest stored events (at least `capacity`, a little more between trims) as
  their response items, already JSON-encoded. It is filled once from SQLite when the console starts and then
  fed by the event log's writer thread right after each COMMIT (EventLog.on_commit), with the committed seq
  and the exact stored payload: it holds what `SELECT seq, payload FROM events ORDER BY seq DESC` returns,
  never an event that is not (yet) in the database. Rows only ever leave the log from the oldest end
  (retention, the outbox's disk cap), each time recording `event_prunes.through_seq`; the ring drops what
  lies at or below it, checked at most every FLOOR_SECONDS.
- `DbReader` is one long-lived read-only connection used from one worker thread, for what the ring cannot
  answer (paging further back with `before`, a face snapshot's event) and the ring's own start and checks.

Answers are the bytes of the JSON array (the items joined), cached per limit until the ring changes.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from edge.console.snapshots import with_snapshot
from edge.store.db import BUSY_TIMEOUT_MS
from edge.store.event_log import EventLog

log = logging.getLogger(__name__)

CAPACITY = 1000  # the largest `limit` GET /api/events accepts: any limit is answered from memory
TRIM_SLACK = 256  # trimmed in steps, not on every append
FLOOR_SECONDS = 10.0  # how often the ring checks which old events retention has deleted

T = TypeVar("T")


def encode_item(seq: int, payload: str) -> bytes:
    """One response item, {"seq": ..., "event": <the record, with its face snapshot's name>}, as JSON bytes
    encoded as FastAPI's JSONResponse encodes (compact, UTF-8)."""
    item = {"seq": seq, "event": with_snapshot(json.loads(payload))}
    return json.dumps(item, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def join_items(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


class DbReader:
    """One read-only connection to the gateway's database, opened on first use and only ever used from one
    worker thread: reads queue behind each other instead of each opening the database."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-db")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` in the reader's thread."""
        if self._closed:
            raise RuntimeError("the console's database reader is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            uri = f"{self.db_path.resolve().as_uri()}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        return work(self._conn)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=False)

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class RecentEvents:
    """The newest stored events as encoded response items, oldest first in `_items` (see the module doc).

    Changed by the event log's writer thread (new events) and the loop (start, floor checks), read on the
    loop: every access holds `_lock`, briefly."""

    def __init__(
        self, reader: DbReader, capacity: int = CAPACITY, floor_seconds: float = FLOOR_SECONDS
    ) -> None:
        self.reader = reader
        self.capacity = capacity
        self.floor_seconds = floor_seconds
        self._lock = threading.Lock()
        self._items: list[tuple[int, bytes]] = []  # (seq, encoded item), seq ascending
        self._below = 0  # the highest seq stored below the ring (0: the ring holds every stored event)
        self._buffer: list[tuple[int, bytes]] | None = None  # commits seen while filling
        self._version = 0  # changes whenever the items do
        self._answers: dict[int, tuple[int, bytes]] = {}  # limit -> (version, body)
        self._floor_checked = 0.0
        self._remove: Callable[[], None] | None = None

    async def start(self, events: EventLog) -> None:
        """Listen to the event log's commits, then fill from SQLite; commits that race the fill are merged by
        seq (each event once)."""
        with self._lock:
            self._buffer = []
        self._remove = events.on_commit(self._committed)
        limit = self.capacity + 1  # one more tells whether older events remain in the database
        rows = await self.reader.run(lambda conn: _newest(conn, limit))
        with self._lock:
            buffered, self._buffer = self._buffer or [], None
            if len(rows) > self.capacity:
                self._below = rows[-1][0]
                rows = rows[: self.capacity]
            items = rows[::-1]
            head = items[-1][0] if items else 0
            items += [item for item in buffered if item[0] > head]
            self._items = items
            self._version += 1
        self._floor_checked = time.monotonic()

    def stop(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None

    def _committed(self, batch: list[tuple[int, str]]) -> None:
        # On the event log's writer thread, right after COMMIT. Encoded here, outside the lock.
        items = [(seq, encode_item(seq, payload)) for seq, payload in batch]
        with self._lock:
            if self._buffer is not None:
                self._buffer.extend(items)
                return
            self._items.extend(items)
            if len(self._items) > self.capacity + TRIM_SLACK:
                cut = len(self._items) - self.capacity
                self._below = self._items[cut - 1][0]
                del self._items[:cut]
            self._version += 1

    async def page(self, limit: int, before: int | None = None) -> bytes:
        """The JSON array of the newest `limit` stored events (with seq < `before` if given), newest first."""
        if time.monotonic() - self._floor_checked >= self.floor_seconds:
            await self._check_floor()
        with self._lock:
            if before is None:
                cached = self._answers.get(limit)
                if cached is not None and cached[0] == self._version:
                    return cached[1]
                end = len(self._items)
            else:
                end = bisect.bisect_left(self._items, before, key=lambda item: item[0])
            if end >= limit or self._below == 0:  # the ring holds every event the answer needs
                body = join_items([item for _, item in reversed(self._items[max(0, end - limit) : end])])
                if before is None:
                    if len(self._answers) > 16:
                        self._answers.clear()
                    self._answers[limit] = (self._version, body)
                return body
        # Reaching below the ring: from the database.
        return await self.reader.run(lambda conn: join_items(_older(conn, before, limit)))

    async def _check_floor(self) -> None:
        self._floor_checked = time.monotonic()
        floor = await self.reader.run(_pruned_through)
        with self._lock:
            if floor >= self._below:
                self._below = 0
            if self._items and self._items[0][0] <= floor:
                keep = bisect.bisect_right(self._items, floor, key=lambda item: item[0])
                del self._items[:keep]
                self._version += 1


def _newest(conn: sqlite3.Connection, limit: int) -> list[tuple[int, bytes]]:
    rows = conn.execute("SELECT seq, payload FROM events ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
    return [(seq, encode_item(seq, payload)) for seq, payload in rows]


def _older(conn: sqlite3.Connection, before: int | None, limit: int) -> list[bytes]:
    rows = conn.execute(
        "SELECT seq, payload FROM events WHERE seq < ? ORDER BY seq DESC LIMIT ?",
        (before if before is not None else 2**63 - 1, limit),
    ).fetchall()
    return [encode_item(seq, payload) for seq, payload in rows]


def _pruned_through(conn: sqlite3.Connection) -> int:
    """Every event with a seq at or below this has been deleted (retention, the outbox's disk cap)."""
    floor: int | None = conn.execute("SELECT max(through_seq) FROM event_prunes").fetchone()[0]
    return floor or 0
