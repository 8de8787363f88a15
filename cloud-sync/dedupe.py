"""The backend's idempotent-consumer store: each gateway event is handled once, and lost events show up.

MQTT QoS 1 is at-least-once: a batch is delivered again after a reconnect, a gateway re-sends a batch whose
PUBACK it never saw, and two consumers sharing one subscription may each get one copy. So the backend does not
count on delivery being exact; it makes processing idempotent. One SQLite table is keyed by
(site, gateway, seq) and every batch is handled in one `BEGIN IMMEDIATE` transaction:

    INSERT OR IGNORE the (site, gateway, seq) row  ->  inserted: call the handler  ->  COMMIT

`BEGIN IMMEDIATE` takes SQLite's write lock first, so two consumer *processes* on one file cannot both see a
seq as new: the second waits for the first to commit and then finds the row. The handler gets the same
connection (`ReceivedEvent.db`); what it writes there commits or rolls back together with the dedupe row,
which makes the whole thing exactly-once. Side effects elsewhere (an HTTP call) are at-least-once: they run
again if the process dies between the handler and COMMIT.

The store also checks what it is given. seq is per gateway, strictly increasing and never reused, so the rows
seen tell which seqs are missing (`gaps`), and each event's hash is recomputed and linked to its neighbours'
(the gateway's hash chain, see edge/store/event_log.py). Problems are recorded as `Issue`s, never silently
dropped; undecodable messages are kept in `rejected_messages`.

synchronous=FULL: the consumer acknowledges a message to the broker only after COMMIT returns, so a commit
that a power cut could undo would lose an event the broker has already forgotten.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cloud_sync.messages import EventBatch, UploadedEvent

__all__ = [
    "GENESIS_HASH",
    "BatchResult",
    "DedupeStore",
    "EventHandler",
    "Issue",
    "IssueKind",
    "ReceivedEvent",
    "Rejected",
    "event_hash",
]

GENESIS_HASH = "0" * 64  # prev_hash of a gateway's first event ever (seq 1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_events (
    site TEXT NOT NULL,
    gateway TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    hash TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (site, gateway, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event_issues (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    site TEXT NOT NULL,
    gateway TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    at TEXT NOT NULL,
    UNIQUE (site, gateway, seq, kind)
);
CREATE TABLE IF NOT EXISTS rejected_messages (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    error TEXT NOT NULL,
    payload BLOB NOT NULL,
    at TEXT NOT NULL
);
"""


def event_hash(prev_hash: str, event_id: str, seq: int, record: dict[str, Any]) -> str:
    """The gateway's chain hash of an uploaded event.

    The gateway hashes the exact stored payload text, which is the record as canonical JSON (sorted keys, no
    spaces, UTF-8 kept); re-serialising the uploaded record the same way gives back that text. Kept here,
    not imported from the gateway's store, so a backend needs only this package's cloud side; a test checks
    that both definitions agree.
    """
    payload = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(f"{prev_hash}\n{event_id}\n{seq:d}\n{payload}".encode()).hexdigest()


class IssueKind(StrEnum):
    BAD_HASH = "bad_hash"  # the event's hash does not match its content
    CHAIN_BREAK = "chain_break"  # prev_hash does not match the hash of the event before it
    SEQ_REUSED = "seq_reused"  # a seq already seen came with another event id (gateway store reset?)


@dataclass(frozen=True, slots=True)
class Issue:
    site: str
    gateway: str
    seq: int
    kind: IssueKind
    detail: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Rejected:
    topic: str
    error: str
    payload: bytes
    at: datetime


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """One new event, as the handler sees it. `db` is the store's connection inside the open transaction:
    writes made through it commit together with the dedupe row (do not commit or roll back yourself)."""

    site: str
    gateway: str
    uploaded: UploadedEvent
    hash_ok: bool
    db: sqlite3.Connection

    @property
    def seq(self) -> int:
        return self.uploaded.seq

    @property
    def id(self) -> str:
        return self.uploaded.id

    @property
    def record(self) -> dict[str, Any]:
        return self.uploaded.event


EventHandler = Callable[[ReceivedEvent], None]


@dataclass(frozen=True, slots=True)
class BatchResult:
    new: int
    duplicates: int


class DedupeStore:
    """One SQLite file, shared by any number of consumers and processes.

    Thread-safe: one connection per object, its use serialised by a lock. Open one object per process (or
    per consumer); several processes may open the same file.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 60.0) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves; Python's implicit BEGIN is DEFERRED.
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._use_wal(busy_timeout)
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._transaction() as conn:
                # One statement at a time: executescript() would COMMIT our BEGIN IMMEDIATE first.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
        except BaseException:
            self._conn.close()
            raise

    def _use_wal(self, busy_timeout: float) -> None:
        """Put the file in WAL mode (it stays so). Switching needs the file to itself, and SQLite answers
        "database is locked" at once rather than through the busy timeout when another connection opens the
        new file at the same moment (two consumers starting together): so retry until the timeout."""
        deadline = time.monotonic() + busy_timeout
        while self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> DedupeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # --- processing ----------------------------------------------------------------------------------------

    def process(self, batch: EventBatch, handler: EventHandler) -> BatchResult:
        """Hand each event of the batch not seen before to `handler`, in one transaction.

        If the handler raises, the whole batch is rolled back (nothing of it counts as seen) and the error
        propagates: the caller retries the batch later, and the events handled before the failure are
        handled again then. Raises sqlite3.OperationalError if the write lock is not had within busy_timeout.
        """
        new = duplicates = 0
        now = _now_text()
        with self._transaction() as conn:
            for ev in batch.events:
                inserted = conn.execute(
                    "INSERT OR IGNORE INTO seen_events (site, gateway, seq, id, hash, prev_hash, processed_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (batch.site, batch.gateway, ev.seq, ev.id, ev.hash, ev.prev_hash, now),
                ).rowcount
                if not inserted:
                    duplicates += 1
                    self._check_same_event(conn, batch, ev, now)
                    continue
                hash_ok = event_hash(ev.prev_hash, ev.id, ev.seq, ev.event) == ev.hash
                if not hash_ok:
                    _issue(conn, batch, ev.seq, IssueKind.BAD_HASH, "hash does not match the event", now)
                self._check_links(conn, batch, ev, now)
                handler(ReceivedEvent(batch.site, batch.gateway, ev, hash_ok, conn))
                new += 1
        return BatchResult(new, duplicates)

    def _check_same_event(
        self, conn: sqlite3.Connection, batch: EventBatch, ev: UploadedEvent, now: str
    ) -> None:
        row = conn.execute(
            "SELECT id FROM seen_events WHERE site = ? AND gateway = ? AND seq = ?",
            (batch.site, batch.gateway, ev.seq),
        ).fetchone()
        if row is not None and row[0] != ev.id:
            detail = f"seq {ev.seq} was event {row[0]}, now {ev.id}: the gateway's event store was reset?"
            _issue(conn, batch, ev.seq, IssueKind.SEQ_REUSED, detail, now)

    def _check_links(self, conn: sqlite3.Connection, batch: EventBatch, ev: UploadedEvent, now: str) -> None:
        if ev.seq == 1 and ev.prev_hash != GENESIS_HASH:
            _issue(conn, batch, 1, IssueKind.CHAIN_BREAK, "first event does not start the chain", now)
        key = (batch.site, batch.gateway)
        before = conn.execute(
            "SELECT hash FROM seen_events WHERE site = ? AND gateway = ? AND seq = ?", (*key, ev.seq - 1)
        ).fetchone()
        if before is not None and before[0] != ev.prev_hash:
            _issue(
                conn, batch, ev.seq, IssueKind.CHAIN_BREAK, f"prev_hash is not the hash of {ev.seq - 1}", now
            )
        after = conn.execute(
            "SELECT prev_hash FROM seen_events WHERE site = ? AND gateway = ? AND seq = ?", (*key, ev.seq + 1)
        ).fetchone()
        if after is not None and after[0] != ev.hash:
            _issue(
                conn, batch, ev.seq + 1, IssueKind.CHAIN_BREAK, f"prev_hash is not the hash of {ev.seq}", now
            )

    def reject(self, topic: str, payload: bytes, error: str) -> None:
        """Keep a message that cannot be processed (not JSON, wrong schema, wrong source) for inspection."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO rejected_messages (topic, error, payload, at) VALUES (?, ?, ?, ?)",
                (topic, error[:2000], payload, _now_text()),
            )

    # --- reading -------------------------------------------------------------------------------------------

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def seen(self, site: str, gateway: str, seq: int) -> bool:
        rows = self._query(
            "SELECT 1 FROM seen_events WHERE site = ? AND gateway = ? AND seq = ?", (site, gateway, seq)
        )
        return bool(rows)

    def count(self, site: str, gateway: str) -> int:
        rows = self._query("SELECT count(*) FROM seen_events WHERE site = ? AND gateway = ?", (site, gateway))
        return int(rows[0][0])

    def high(self, site: str, gateway: str) -> int | None:
        """The highest seq seen from the gateway, None if none yet."""
        rows = self._query("SELECT max(seq) FROM seen_events WHERE site = ? AND gateway = ?", (site, gateway))
        return None if rows[0][0] is None else int(rows[0][0])

    def gaps(self, site: str, gateway: str) -> list[tuple[int, int]]:
        """The seqs below the highest seen that have not been seen, as inclusive (first, last) ranges.

        A gap can be transient (a batch still in flight, or being handled by another consumer) or a loss (the
        gateway dropped unsent events at its outbox disk cap; it then also reports an outbox_overflow alarm).
        seqs start at 1, so events before the first one seen count as missing too.
        """
        rows = self._query(
            "SELECT seq + 1, next - 1 FROM ("
            "  SELECT seq, lead(seq) OVER (ORDER BY seq) AS next FROM seen_events"
            "  WHERE site = ? AND gateway = ?"
            ") WHERE next > seq + 1 ORDER BY seq",
            (site, gateway),
        )
        gaps = [(int(a), int(b)) for a, b in rows]
        low = self._query("SELECT min(seq) FROM seen_events WHERE site = ? AND gateway = ?", (site, gateway))
        if low[0][0] is not None and low[0][0] > 1:
            gaps.insert(0, (1, int(low[0][0]) - 1))
        return gaps

    def gateways(self) -> list[tuple[str, str]]:
        """(site, gateway) pairs seen so far."""
        rows = self._query("SELECT DISTINCT site, gateway FROM seen_events ORDER BY site, gateway")
        return [(str(s), str(g)) for s, g in rows]

    def issues(self, site: str | None = None, gateway: str | None = None) -> list[Issue]:
        rows = self._query(
            "SELECT site, gateway, seq, kind, detail, at FROM event_issues"
            " WHERE (?1 IS NULL OR site = ?1) AND (?2 IS NULL OR gateway = ?2) ORDER BY n",
            (site, gateway),
        )
        return [Issue(s, g, q, IssueKind(k), d, datetime.fromisoformat(a)) for s, g, q, k, d, a in rows]

    def rejected(self) -> list[Rejected]:
        rows = self._query("SELECT topic, error, payload, at FROM rejected_messages ORDER BY n")
        return [Rejected(t, e, bytes(p), datetime.fromisoformat(a)) for t, e, p, a in rows]


def _issue(
    conn: sqlite3.Connection, batch: EventBatch, seq: int, kind: IssueKind, detail: str, now: str
) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO event_issues (site, gateway, seq, kind, detail, at) VALUES (?, ?, ?, ?, ?, ?)",
        (batch.site, batch.gateway, seq, kind.value, detail, now),
    )


def _now_text() -> str:
    return datetime.now(UTC).isoformat()
