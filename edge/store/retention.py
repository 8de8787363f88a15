"""Retention: delete events the cloud already has once they are older than the configured age.

Why this shape: the event log is the gateway's audit trail and its outbox at once, so only events that are
both synced (sync_state = 1) and old go, and always from the oldest end through the existing anchored prune
(edge.store.event_log.prune_events): the hash and seq of the last deleted event become the chain anchor and
`menwei audit verify` still passes. The walk stops at the first event that is unsynced or not old enough,
even if older synced events follow it (a clock that jumped): never deleting a younger event matters more
than deleting every old one.

It runs off the event loop, on its own connection, in transactions of `batch_size` events with a short pause
between them, so the group-commit writer (which waits on the write lock with busy_timeout) gets the database
between two batches instead of waiting behind one long DELETE.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from edge.errors import StoreError
from edge.store.codec import text_to_dt
from edge.store.db import Synchronous, open_db
from edge.store.event_log import prune_events

log = logging.getLogger(__name__)

BATCH_PAUSE_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class RetentionResult:
    pruned: int  # events deleted
    through_seq: int | None  # the new chain anchor, None if nothing was deleted
    batches: int


def prune_synced_before(
    path: str | os.PathLike[str],
    cutoff: datetime,
    *,
    batch_size: int = 500,
    synchronous: Synchronous = "full",
    pause: float = BATCH_PAUSE_SECONDS,
    stop: threading.Event | None = None,
) -> RetentionResult:
    """Delete synced events whose time is before `cutoff`, oldest first, `batch_size` per transaction.

    Blocking (run it in a thread). `stop` ends the run between two batches. Raises StoreError if the
    database cannot be opened.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    db = open_db(path, synchronous=synchronous)
    pruned = batches = 0
    through: int | None = None
    try:
        while stop is None or not stop.is_set():
            limit = _prunable_through(db.conn, cutoff, batch_size)
            if limit is None:
                break
            count = prune_events(db, limit)
            if count == 0:  # an event became unsynced-looking between the read and the prune: stop
                break
            pruned += count
            batches += 1
            through = limit
            if pause:
                time.sleep(pause)
    finally:
        db.close()
    if pruned:
        log.info(
            "retention: deleted %d synced events older than %s through seq %d (%d batches)",
            pruned,
            cutoff.isoformat(timespec="seconds"),
            through,
            batches,
        )
    return RetentionResult(pruned, through, batches)


def _prunable_through(conn: sqlite3.Connection, cutoff: datetime, batch_size: int) -> int | None:
    """The highest seq among the oldest `batch_size` events such that it and every event before it is
    synced and older than `cutoff`; None if the oldest event is not."""
    rows = conn.execute(
        "SELECT seq, at, sync_state FROM events ORDER BY seq LIMIT ?", (batch_size,)
    ).fetchall()
    last: int | None = None
    for seq, at, sync_state in rows:
        if sync_state != 1:
            break
        try:
            when = text_to_dt(at)
        except (ValueError, StoreError):
            break  # an unreadable time is kept: the audit, not retention, deals with it
        if when >= cutoff:
            break
        last = seq
    return last
