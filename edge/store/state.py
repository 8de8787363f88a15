"""A small key/value table for gateway state that must survive a restart.

Door modes, visitor pass use counters, the last-known-good time: each is a handful of values written rarely,
so one table of JSON text is enough and later features need no migration to add a key. Values are stored as
canonical JSON, so they come back as plain JSON types (dicts, lists, str, int, float, bool, None); callers
convert to and from their own types. Writes use `transaction(db)`, so they compose into a caller's
transaction like the access list deltas do.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from edge.errors import StoreError
from edge.store.codec import canonical_json, dt_to_text
from edge.store.db import transaction


def put_state(db: sqlite_utils.Database, key: str, value: object) -> None:
    """Store `value` (anything JSON can hold) under `key`, replacing what was there."""
    try:
        text = canonical_json(value)
    except (TypeError, ValueError) as err:
        raise StoreError(f"state {key!r} is not JSON-serialisable: {err}") from err
    with transaction(db):
        db.conn.execute(
            "INSERT INTO state (key, value, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, text, dt_to_text(datetime.now(UTC))),
        )


def get_state(db: sqlite_utils.Database, key: str, default: Any = None) -> Any:
    """The value stored under `key`, or `default` if there is none."""
    row = db.conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    if row is None:
        return default
    return json.loads(row[0])


def delete_state(db: sqlite_utils.Database, key: str) -> bool:
    with transaction(db):
        return db.conn.execute("DELETE FROM state WHERE key = ?", (key,)).rowcount > 0
