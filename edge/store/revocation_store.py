"""The visitor-pass revocation list in SQLite (table pass_revocations, migration 5).

Why a list apart from the access list: a signed QR pass is verified from the token itself and is usually not
in the access list, so "revoke pass X" has no access-list entry to mark. Its id is kept here until the pass
would have expired anyway (`forget_after`), and a scan of the token is refused. Being outside the access list,
a revocation also survives the next snapshot: an older copy of the list can never bring a revoked pass back.

Rows are written inside the delta's own transaction (the revocation is stored exactly when the delta's new
version is), and removed by the pass runtime's housekeeping once the trusted time is past `forget_after`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import sqlite_utils

from edge.store.db import transaction

_UPSERT = (
    "INSERT INTO pass_revocations (pass_id, forget_after) VALUES (?, ?)"
    " ON CONFLICT (pass_id) DO UPDATE SET forget_after = max(forget_after, excluded.forget_after)"
)


def put_revocations(db: sqlite_utils.Database, revocations: Mapping[str, datetime]) -> None:
    """Add revoked pass ids; an id already listed keeps the later of its two times."""
    with transaction(db):
        db.conn.executemany(_UPSERT, ((pid, _seconds(t)) for pid, t in revocations.items()))


def load_revocations(db: sqlite_utils.Database) -> dict[str, datetime]:
    rows = db.conn.execute("SELECT pass_id, forget_after FROM pass_revocations")
    return {pid: datetime.fromtimestamp(t, UTC) for pid, t in rows}


def forget_revocations(db: sqlite_utils.Database, pass_ids: Iterable[str], before: datetime) -> int:
    """Remove the given ids whose time is before `before` (one revoked again meanwhile, for longer, stays)."""
    cutoff = _seconds(before)
    with transaction(db):
        return sum(
            db.conn.execute(
                "DELETE FROM pass_revocations WHERE pass_id = ? AND forget_after < ?", (pid, cutoff)
            ).rowcount
            for pid in pass_ids
        )


def _seconds(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("a revocation time must be timezone-aware")
    return int(t.timestamp())
