"""Opening the gateway database: the pragmas that make SQLite safe and gentle on an SD card, then migrations.

Choices and why:
- WAL journal: readers (the console, the outbox) never block the event writer, and a commit appends to one
  file instead of rewriting pages in place.
- synchronous FULL by default: a commit is on the card before it is reported (WAL fsync per commit). The
  event log batches many events into one commit (group commit), so this costs one fsync per batch, not per
  event. NORMAL trades the last commits before a power cut for fewer fsyncs; the database stays consistent
  either way.
- wal_autocheckpoint of 2000 pages (~8 MiB): fewer, larger checkpoints, so a page rewritten many times in a
  burst reaches the main file once. journal_size_limit then trims the WAL file back after a big access list
  replace.
- temp_store MEMORY: sorts and temporary indexes do not write scratch files to the card.
- busy_timeout: the event writer, the access list replace and the outbox each hold their own connection; a
  writer waits for another instead of failing at once.
- foreign keys ON: the store itself refuses a credential of an unknown person or a rule for an unknown
  group.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import sqlite_utils

from edge.errors import StoreError
from edge.store.migrations import migrate

log = logging.getLogger(__name__)

Synchronous = Literal["normal", "full"]

BUSY_TIMEOUT_MS = 10_000
WAL_AUTOCHECKPOINT_PAGES = 2000
JOURNAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024
CACHE_SIZE_KIB = 8192


def open_db(
    path: str | os.PathLike[str],
    *,
    synchronous: Synchronous = "full",
    check_same_thread: bool = True,
) -> sqlite_utils.Database:
    """Open (creating if needed) the database at `path`, configure it and migrate it to the latest schema.

    Raises MigrationError if the file was written by a newer menwei, StoreError if it cannot be opened or put
    in WAL mode. `check_same_thread=False` lets the connection be handed between threads; the caller must then
    serialise its use (one thread at a time).
    """
    if synchronous not in ("normal", "full"):
        raise ValueError(f"synchronous must be 'normal' or 'full', not {synchronous!r}")
    name = os.fspath(path)
    try:
        conn = sqlite3.connect(name, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=check_same_thread)
    except sqlite3.Error as err:
        raise StoreError(f"cannot open database {name}: {err}") from err
    try:
        db = sqlite_utils.Database(conn)
        _configure(db, name, synchronous)
        migrate(db)
    except BaseException:
        conn.close()
        raise
    return db


def _configure(db: sqlite_utils.Database, name: str, synchronous: Synchronous) -> None:
    conn = db.conn
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
        db.enable_wal()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal" and name != ":memory:":
            raise StoreError(f"database {name} refused WAL mode (journal_mode is {mode!r})")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES:d}")
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES:d}")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute(f"PRAGMA cache_size = -{CACHE_SIZE_KIB:d}")
    except sqlite3.Error as err:
        raise StoreError(f"cannot configure database {name}: {err}") from err


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """One write transaction: commits on normal exit, rolls back on any exception.

    Outermost use runs BEGIN IMMEDIATE, taking the write lock up front, so a concurrent writer makes this
    wait (busy_timeout) instead of failing later when a read lock would have to be upgraded. Nested use
    (inside another `transaction` or `db.atomic()`) becomes a savepoint of the outer transaction, so store
    helpers that open their own transaction compose into the caller's.
    """
    conn = db.conn
    if conn.in_transaction:
        with db.atomic():
            yield db
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is open (an error may already have ended it)."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")
