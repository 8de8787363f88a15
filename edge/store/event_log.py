"""The durable, hash-chained event log: every decision and alarm, in order, committed before it is reported.

Why a dedicated writer thread: the door must never wait on the SD card. `append` only queues the record and
returns a Future at once; one writer thread with its own SQLite connection drains the queue in batches (group
commit): everything queued, up to `max_batch` records, goes into one transaction, so a burst of events costs
one fsync instead of one each. Only after COMMIT returns are the batch's futures resolved with
StoredEvent(seq, id, hash). A resolved future therefore means the event is in the database; an event whose
future was not resolved when the box died may or may not be there, but no event is ever reported stored and
then lost (with synchronous=FULL, not even on power loss).

A record is checked and serialised in `append` (so the caller may reuse its dict, and a bad record fails its
own future at once without ever reaching a batch). The writer also outlives any database error: that batch's
futures get a StoreError and the next batch is tried afresh.

Columns: `seq` is the per-gateway sequence number, strictly increasing and never reused (AUTOINCREMENT keeps
the high-water mark in sqlite_sequence, even after pruning); `id` is a UUIDv7 made by the writer; `at`,
`type` and `door` are copied from the record ("at" and "type" are required, "door" optional) so they can be
queried; `payload` is the record as canonical JSON (see edge.store.codec); `sync_state` is 0 until the
outbox marks the event sent (1) at `synced_at`.

The hash chain, precisely:

    hash = sha256_hex(UTF-8 of prev_hash + "\\n" + id + "\\n" + str(seq) + "\\n" + payload)

where prev_hash is the hash of the event with seq - 1, and for the first event ever GENESIS_HASH (64 "0"s).
`str(seq)` is the decimal number without padding; the payload is the exact stored text. The separators make
the split unambiguous (canonical JSON never contains a raw newline). `at`, `type` and `door` are covered
through the payload: the verifier checks that they match it.

Pruning deletes the oldest *sent* events and records the hash and seq of the last one deleted in
`event_prunes`; the newest row there is the chain anchor, and verification (edge.store.audit) starts from it.
At the outbox's disk cap, `drop_oldest` deletes the oldest events whether sent or not, anchored the same way;
the outbox then logs an alarm event saying how many unsent events were lost.

The chain detects edits and deletions made with ordinary database access; someone who rewrites every hash
after the edit is caught only against hashes already sent upstream.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlite_utils
import uuid6

from edge.errors import StoreError
from edge.store.codec import canonical_json, dt_to_text, text_to_dt
from edge.store.db import Synchronous, open_db, rollback, transaction

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
MAX_BATCH = 500


def chain_hash(prev_hash: str, event_id: str, seq: int, payload: str) -> str:
    """The hash of one event, as defined in the module docstring."""
    data = f"{prev_hash}\n{event_id}\n{seq:d}\n{payload}".encode()
    return hashlib.sha256(data).hexdigest()


class BadRecordError(StoreError, ValueError):
    """An event record cannot be stored: not a dict, missing 'type' or 'at', or not JSON-serialisable."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """What a resolved append reports: the event is committed under this seq, id and hash."""

    seq: int
    id: str
    hash: str


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event read back from the log (for the outbox), with its payload as the exact stored JSON text."""

    seq: int
    id: str
    hash: str
    prev_hash: str
    at: str
    type: str
    door: str | None
    payload: str

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(self.payload)
        return record


@dataclass(frozen=True, slots=True)
class _Pending:
    future: Future[StoredEvent]
    at: str
    type: str
    door: str | None
    payload: str


@dataclass(frozen=True, slots=True)
class _Barrier:
    future: Future[None]


class _Stop:
    pass


_Item = list[_Pending] | _Barrier | _Stop
# A committed batch, in seq order: (seq, payload as the exact stored JSON text) per event.
CommitListener = Callable[[list[tuple[int, str]]], None]

_INSERT = (
    "INSERT INTO events (seq, id, at, type, door, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT = "SELECT seq, id, hash, prev_hash, at, type, door, payload FROM events"


class EventLog:
    """The event log of one database file. Thread-safe; create one per process and `close()` it.

    Future callbacks run on the writer thread and must be quick; an asyncio caller should
    `await asyncio.wrap_future(log.append(record))`. Accepted events cannot be cancelled: the futures are
    already running when `append` returns, and every accepted event is written.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "full",
        max_batch: int = MAX_BATCH,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.path = os.fspath(path)
        self._max_batch = max_batch
        self._reader = open_db(self.path, synchronous=synchronous, check_same_thread=False)  # migrates
        self._read_lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._put_lock = threading.Lock()
        self._closed = False
        self._listeners: list[CommitListener] = []
        started: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(synchronous, started), name="event-log-writer", daemon=True
        )
        self._thread.start()
        try:
            started.result()
        except BaseException:
            self._reader.close()
            raise
        atexit.register(self.close)  # a clean interpreter exit still drains the queue

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing -----------------------------------------------------------------------------------------

    def append(self, record: Mapping[str, Any]) -> Future[StoredEvent]:
        """Queue one event record (e.g. `Event.to_record()`); the future resolves once it is committed.

        A bad record's future fails with BadRecordError at once. Raises StoreError if the log is closed.
        """
        pending = _prepare(record)
        if not pending.future.done():
            self._put([pending])
        return pending.future

    def append_many(self, records: Iterable[Mapping[str, Any]]) -> list[Future[StoredEvent]]:
        """Queue several records; the good ones get consecutive seqs and are committed together."""
        prepared = [_prepare(r) for r in records]
        good = [p for p in prepared if not p.future.done()]
        if good:
            self._put(good)
        return [p.future for p in prepared]

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything appended before this call is committed (or has failed)."""
        barrier: Future[None] = Future()
        self._put(_Barrier(barrier))
        barrier.result(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Write everything queued, stop the writer and close the connections. Safe to call again."""
        with self._put_lock:
            first = not self._closed
            if first:
                self._closed = True
                self._queue.put(_Stop())
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if first:
            atexit.unregister(self.close)
            with self._read_lock:
                self._reader.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def on_commit(self, listener: CommitListener) -> Callable[[], None]:
        """Call `listener` with the (seq, payload) of every batch committed from now on, on the writer thread,
        right after COMMIT and before the batch's futures resolve; returns a function that removes it. It must
        be quick and thread-safe; an exception from it is logged and changes nothing else (the console's
        recent-events ring: edge/console/recent.py)."""
        with self._put_lock:
            self._listeners = [*self._listeners, listener]

        def remove() -> None:
            with self._put_lock:
                self._listeners = [f for f in self._listeners if f is not listener]

        return remove

    def _put(self, item: _Item) -> None:
        with self._put_lock:
            if self._closed:
                raise StoreError(f"event log {self.path} is closed")
            self._queue.put(item)

    # --- the writer thread -------------------------------------------------------------------------------

    def _run(self, synchronous: Synchronous, started: Future[None]) -> None:
        db: sqlite_utils.Database | None = None
        try:
            db = open_db(self.path, synchronous=synchronous)
        except (StoreError, sqlite3.Error) as err:  # reported to the constructor, which re-raises it
            started.set_exception(err)
            return
        finally:
            if db is None and not started.done():  # anything else: the constructor must not wait forever
                started.set_exception(StoreError(f"event log writer for {self.path} failed to start"))
        started.set_result(None)
        try:
            while True:
                batch, barriers, stop = self._take(self._queue.get())
                if batch:
                    self._write(db.conn, batch)
                for barrier in barriers:
                    barrier.set_result(None)
                if stop:
                    return
        finally:
            db.close()

    def _take(self, first: _Item) -> tuple[list[_Pending], list[Future[None]], bool]:
        """Everything queued right now, up to max_batch records (an append_many is never split)."""
        batch: list[_Pending] = []
        barriers: list[Future[None]] = []
        item = first
        while True:
            if isinstance(item, _Stop):
                return batch, barriers, True  # nothing is queued after the stop: close() refuses puts first
            if isinstance(item, _Barrier):
                barriers.append(item.future)
            else:
                batch.extend(item)
            if len(batch) >= self._max_batch:
                return batch, barriers, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, barriers, False

    def _write(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        try:
            stored = _commit(conn, batch)
        except Exception as err:  # the writer thread's boundary: report the failure, keep running
            log.exception("event log: a batch of %d events was not stored", len(batch))
            _rollback_quietly(conn)
            for pending in batch:
                failure = StoreError(f"event not stored: {err}")
                failure.__cause__ = err
                pending.future.set_exception(failure)
            return
        listeners = self._listeners  # replaced, never changed in place: no lock needed to read it
        if listeners:
            committed = [(event.seq, pending.payload) for pending, event in zip(batch, stored, strict=True)]
            for listener in listeners:
                try:
                    listener(committed)
                except Exception:
                    log.exception("event log: a commit listener failed")
        for pending, event in zip(batch, stored, strict=True):
            pending.future.set_result(event)

    # --- reading (the outbox) ----------------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[sqlite_utils.Database]:
        """The reader connection, one thread at a time (it is shared by the outbox, console and tools)."""
        with self._read_lock:
            if self._closed:
                raise StoreError(f"event log {self.path} is closed")
            yield self._reader

    def pending(self, limit: int = 100, *, after: int = 0) -> list[LoggedEvent]:
        """Unsent events with seq > after, oldest (lowest seq) first.

        `after` lets the outbox read on past batches it has published but that are not acknowledged yet (they
        stay unsent until the broker acknowledges them)."""
        with self._reading() as db:
            rows = db.conn.execute(
                f"{_SELECT} WHERE sync_state = 0 AND seq > ? ORDER BY seq LIMIT ?", (after, limit)
            ).fetchall()
        return [LoggedEvent(*row) for row in rows]

    def mark_sent(self, seqs: Iterable[int], at: datetime | None = None) -> int:
        """Mark events as delivered upstream; returns how many changed state."""
        when = dt_to_text(at or datetime.now(UTC))
        with self._reading() as db, transaction(db):
            cursor = db.conn.executemany(
                "UPDATE events SET sync_state = 1, synced_at = ? WHERE seq = ? AND sync_state = 0",
                ((when, seq) for seq in sorted(set(seqs))),
            )
            changed: int = cursor.rowcount
        return changed

    def depth(self) -> int:
        """How many events wait to be sent."""
        with self._reading() as db:
            count: int = db.conn.execute("SELECT count(*) FROM events WHERE sync_state = 0").fetchone()[0]
        return count

    def oldest_pending_at(self) -> datetime | None:
        """The event time of the oldest (lowest seq) unsent event, or None if nothing waits."""
        with self._reading() as db:
            row = db.conn.execute(
                "SELECT at FROM events WHERE sync_state = 0 ORDER BY seq LIMIT 1"
            ).fetchone()
        return None if row is None else text_to_dt(row[0])

    def last_seq(self) -> int:
        """The highest seq ever committed (0 for a new log), pruned or not."""
        with self._reading() as db:
            return _chain_head(db.conn)[0]

    def prune(self, through_seq: int) -> int:
        """Delete sent events with seq <= through_seq, stopping before the first unsent one; returns how many.

        The hash and seq of the last deleted event become the chain anchor, so verification still works.
        """
        with self._reading() as db:
            return prune_events(db, through_seq)

    def seq_range(self) -> tuple[int, int] | None:
        """(lowest, highest) seq stored, sent or not; None if the log holds no rows.

        Rows only ever leave from the oldest end (prune, drop_oldest), so highest - lowest + 1 is the number
        of rows: two index look-ups instead of a count(*) that reads the whole table."""
        with self._reading() as db:
            low, high = db.conn.execute(
                "SELECT (SELECT min(seq) FROM events), (SELECT max(seq) FROM events)"
            ).fetchone()
        return None if low is None else (low, high)

    def drop_oldest(self, through_seq: int) -> DroppedEvents | None:
        """Delete every event with seq <= through_seq, sent or not; None if there was none.

        The outbox's last resort at its disk cap, after `prune` freed what it could. The chain stays
        verifiable: like a prune, the hash and seq of the last deleted event become the chain anchor. The
        caller reports the unsent events it dropped (an alarm event), so the loss is itself on record.
        """
        with self._reading() as db:
            return drop_events(db, through_seq)


def prune_events(db: sqlite_utils.Database, through_seq: int) -> int:
    """`EventLog.prune` on any connection to the database (for maintenance tools)."""
    conn: sqlite3.Connection = db.conn
    with transaction(db):
        first_unsent = conn.execute("SELECT min(seq) FROM events WHERE sync_state = 0").fetchone()[0]
        limit = through_seq if first_unsent is None else min(through_seq, first_unsent - 1)
        last = conn.execute(
            "SELECT seq, hash FROM events WHERE seq <= ? ORDER BY seq DESC LIMIT 1", (limit,)
        ).fetchone()
        if last is None:
            return 0
        count: int = conn.execute("DELETE FROM events WHERE seq <= ?", (last[0],)).rowcount
        conn.execute(
            "INSERT INTO event_prunes (through_seq, hash, pruned_at, count) VALUES (?, ?, ?, ?)",
            (last[0], last[1], dt_to_text(datetime.now(UTC)), count),
        )
    log.info("event log: pruned %d sent events through seq %d", count, last[0])
    return count


@dataclass(frozen=True, slots=True)
class DroppedEvents:
    """What `drop_oldest` deleted: `count` rows through `through_seq`, of which `unsent` had not been sent,
    with seqs first_unsent..last_unsent (None when every dropped row had been sent)."""

    count: int
    through_seq: int
    unsent: int
    first_unsent: int | None
    last_unsent: int | None


def drop_events(db: sqlite_utils.Database, through_seq: int) -> DroppedEvents | None:
    """`EventLog.drop_oldest` on any connection to the database."""
    conn: sqlite3.Connection = db.conn
    with transaction(db):
        last = conn.execute(
            "SELECT seq, hash FROM events WHERE seq <= ? ORDER BY seq DESC LIMIT 1", (through_seq,)
        ).fetchone()
        if last is None:
            return None
        unsent, first_unsent, last_unsent = conn.execute(
            "SELECT count(*), min(seq), max(seq) FROM events WHERE sync_state = 0 AND seq <= ?", (last[0],)
        ).fetchone()
        count: int = conn.execute("DELETE FROM events WHERE seq <= ?", (last[0],)).rowcount
        conn.execute(
            "INSERT INTO event_prunes (through_seq, hash, pruned_at, count) VALUES (?, ?, ?, ?)",
            (last[0], last[1], dt_to_text(datetime.now(UTC)), count),
        )
    log.warning("event log: dropped %d events through seq %d, %d of them never sent", count, last[0], unsent)
    return DroppedEvents(count, last[0], unsent, first_unsent, last_unsent)


def _prepare(record: object) -> _Pending:
    """Check and serialise a record now; a bad one comes back with its future already failed."""
    future: Future[StoredEvent] = Future()
    future.set_running_or_notify_cancel()  # from here on the event is committed to being written
    try:
        if not isinstance(record, Mapping):
            raise BadRecordError(f"an event record must be a dict, not {type(record).__name__}")
        kind = record.get("type")
        at = record.get("at")
        door = record.get("door")
        if not isinstance(kind, str) or not kind:
            raise BadRecordError(f"event record needs a 'type' string, got {kind!r}")
        if not isinstance(at, str):
            raise BadRecordError(f"event record needs an 'at' ISO-8601 string, got {at!r}")
        try:
            text_to_dt(at)
        except (ValueError, StoreError) as err:
            raise BadRecordError(f"event 'at' {at!r} is not an ISO-8601 time with a UTC offset") from err
        if door is not None and not isinstance(door, str):
            raise BadRecordError(f"event 'door' must be a string or None, got {door!r}")
        try:
            payload = canonical_json(record)
        except (TypeError, ValueError) as err:
            raise BadRecordError(f"event record is not JSON-serialisable: {err}") from err
    except BadRecordError as err:
        future.set_exception(err)
        return _Pending(future, "", "", None, "")
    return _Pending(future, at, kind, door, payload)


def _commit(conn: sqlite3.Connection, batch: list[_Pending]) -> list[StoredEvent]:
    """Chain and insert a batch in one transaction; the seqs and hashes are fixed under the write lock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        seq, prev = _chain_head(conn)
        rows = []
        stored = []
        for pending in batch:
            seq += 1
            event_id = str(uuid6.uuid7())
            digest = chain_hash(prev, event_id, seq, pending.payload)
            rows.append(
                (seq, event_id, pending.at, pending.type, pending.door, pending.payload, prev, digest)
            )
            stored.append(StoredEvent(seq, event_id, digest))
            prev = digest
        conn.executemany(_INSERT, rows)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return stored


def _rollback_quietly(conn: sqlite3.Connection) -> None:
    """After a failure, leave the writer's connection outside any transaction, whatever state it is in."""
    try:
        rollback(conn)
    except sqlite3.Error:
        log.exception("event log: rollback after a failed batch failed too")


def _chain_head(conn: sqlite3.Connection) -> tuple[int, str]:
    """(seq, hash) the next event chains onto: the newest row, else the prune anchor, else genesis.

    If sqlite_sequence is ahead of the newest row, rows were deleted from the end; numbering continues above
    the high-water mark (seqs are never reused) and the gap stays visible to the verifier.
    """
    head: tuple[int, str] = (0, GENESIS_HASH)
    for row in (
        conn.execute(
            "SELECT through_seq, hash FROM event_prunes ORDER BY through_seq DESC LIMIT 1"
        ).fetchone(),
        conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone(),
    ):
        if row is not None and row[0] >= head[0]:
            head = (row[0], row[1])
    counter = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    if counter is not None and counter[0] > head[0]:
        log.warning(
            "event log: events %d..%d are missing (deleted?); numbering continues after %d",
            head[0] + 1,
            counter[0],
            counter[0],
        )
        return counter[0], head[1]
    return head
