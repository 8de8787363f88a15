"""Visitor pass use counts in SQLite (table pass_use_counts, migration 9): one row per (pass, gateway).

Why rows and not one JSON value: a site with ~100 visitor passes a day holds tens of thousands of counts, and
the gateway lives on an SD card. A use changes one (pass, gateway) count, so it upserts that one row; the
write does not grow with the ledger. Counts only grow (edge.passes.uses), so an upsert keeps the larger of
the stored and the new count, and an expiry or last-seen time only moves later: a write that lands after a
newer one (it cannot here, the pass runtime writes from one flush, but the rule costs nothing) changes
nothing. Times are Unix seconds, so SQL can compare them.

Before migration 9 the ledger was a JSON value in `state` (`pass_use_ledger`, plus the totals in
`pass_uses`); `load_legacy` reads them and `move_legacy` writes their rows and deletes both keys in one
transaction, so a crash in between leaves the JSON in place and the move is done again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import sqlite_utils

from edge.passes.uses import STATE_KEY, TOTALS_KEY, Row, UseLedger
from edge.store.db import transaction
from edge.store.state import get_state

_UPSERT = (
    "INSERT INTO pass_use_counts (pass_id, gateway_id, count, seen_at, expires) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (pass_id, gateway_id) DO UPDATE SET count = max(count, excluded.count),"
    " seen_at = max(coalesce(seen_at, 0), coalesce(excluded.seen_at, 0)),"
    " expires = CASE WHEN excluded.expires IS NULL THEN expires"
    " WHEN expires IS NULL THEN excluded.expires ELSE max(expires, excluded.expires) END"
)


def load_use_rows(db: sqlite_utils.Database) -> list[Row]:
    """Every stored count, oldest-seen first (the order local_counts announces in)."""
    rows = db.conn.execute(
        "SELECT pass_id, gateway_id, count, seen_at, expires FROM pass_use_counts"
        " ORDER BY coalesce(seen_at, 0), pass_id, gateway_id"
    )
    return [(p, g, int(n), _time(seen), _time(exp)) for p, g, n, seen, exp in rows]


def save_use_rows(db: sqlite_utils.Database, rows: Iterable[Row], forgotten: Iterable[str] = ()) -> int:
    """Delete the forgotten passes' rows, then upsert `rows`; the number of rows changed."""
    conn = db.conn
    before = conn.total_changes
    with transaction(db):
        conn.executemany("DELETE FROM pass_use_counts WHERE pass_id = ?", ((p,) for p in forgotten))
        conn.executemany(_UPSERT, ((p, g, n, _seconds(seen), _seconds(exp)) for p, g, n, seen, exp in rows))
    return conn.total_changes - before


def load_legacy(db: sqlite_utils.Database) -> tuple[dict[str, dict[str, int]], dict[str, int]] | None:
    """The JSON ledger and totals stored before migration 9, or None if neither key is there."""
    ledger, totals = get_state(db, STATE_KEY), get_state(db, TOTALS_KEY)
    if ledger is None and totals is None:
        return None
    parsed: dict[str, int] = {}
    if isinstance(totals, dict):
        parsed = {str(k): v for k, v in totals.items() if type(v) is int and v >= 0}
    return UseLedger.from_state(ledger), parsed


def move_legacy(db: sqlite_utils.Database, rows: Iterable[Row]) -> int:
    """Store the migrated rows and delete the JSON keys, in one transaction; rows changed."""
    with transaction(db):
        changed = save_use_rows(db, rows)
        db.conn.execute("DELETE FROM state WHERE key IN (?, ?)", (STATE_KEY, TOTALS_KEY))
    return changed


def _seconds(t: datetime | None) -> int | None:
    if t is None:
        return None
    if t.tzinfo is None:
        raise ValueError("a use-count time must be timezone-aware")
    return int(t.timestamp())


def _time(value: int | None) -> datetime | None:
    return None if value is None or value == 0 else datetime.fromtimestamp(value, UTC)
