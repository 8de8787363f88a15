"""The visitor-pass trust list and its version in SQLite (table pass_keys, migration 4).

Why a table and not a state value: keys are looked up, updated and retired one at a time as the cloud sends
changes, and a retired key is kept for good (edge.passes.trust); a row per key says that plainly.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlite_utils

from edge.passes.trust import TrustedKey
from edge.store.codec import dt_to_text_or_none, text_to_dt_or_none
from edge.store.db import transaction
from edge.store.state import get_state, put_state

VERSION_KEY = "pass_trust_version"

_UPSERT = (
    "INSERT INTO pass_keys (kid, public_key, issuer, retired_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (kid) DO UPDATE SET public_key = excluded.public_key, issuer = excluded.issuer,"
    " retired_at = excluded.retired_at"
)


def load_trusted_keys(db: sqlite_utils.Database) -> tuple[list[TrustedKey], int]:
    """The stored keys and the trust list version (0 if none was ever stored)."""
    rows = db.conn.execute("SELECT kid, public_key, issuer, retired_at FROM pass_keys ORDER BY kid")
    keys = [
        TrustedKey(kid=bytes(kid), public_key=bytes(pub), issuer=issuer, retired_at=text_to_dt_or_none(ret))
        for kid, pub, issuer, ret in rows
    ]
    return keys, int(get_state(db, VERSION_KEY, 0))


def save_trusted_keys(db: sqlite_utils.Database, keys: Iterable[TrustedKey], version: int) -> None:
    """Store the whole list (as TrustList.replace returned it) and its version in one transaction."""
    with transaction(db):
        db.conn.execute("DELETE FROM pass_keys")
        db.conn.executemany(_UPSERT, (_row(k) for k in keys))
        put_state(db, VERSION_KEY, version)


def upsert_trusted_key(db: sqlite_utils.Database, key: TrustedKey) -> None:
    """Store one key as TrustList.merge returned it."""
    with transaction(db):
        db.conn.execute(_UPSERT, _row(key))


def _row(key: TrustedKey) -> tuple[bytes, bytes, str, str | None]:
    return (key.kid, key.public_key, key.issuer, dt_to_text_or_none(key.retired_at))
