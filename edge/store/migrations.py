"""Schema migrations: a numbered list of small steps, tracked in `PRAGMA user_version`.

Why this shape: the gateway is upgraded in the field, sometimes by swapping the SD card into a box with an
older or newer image. Each step runs in its own IMMEDIATE transaction together with the user_version bump,
so a power cut leaves the database at a whole version, never between two; the version is re-read inside the
transaction, so two processes opening the same file at once (the event log writer and the main loop) apply
each step once.

A database whose user_version is higher than the last step here was written by newer code; it is refused
with MigrationError instead of being used with a schema this code does not know.

To add a feature: append a Migration with the next number. Never edit a step that has shipped. A step that
rebuilds a table (the 12-step ALTER dance) must turn foreign keys off itself before the transaction, which
this runner does not do for it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

import sqlite_utils

from edge.errors import MigrationError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "access list",
        (
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE groups (id TEXT PRIMARY KEY, name TEXT NOT NULL)",
            # weekly: JSON list of 7 lists of 'HH:MM-HH:MM'; holidays: JSON list of 'HH:MM-HH:MM'.
            "CREATE TABLE schedules (id TEXT PRIMARY KEY, name TEXT NOT NULL, weekly TEXT NOT NULL,"
            " holidays TEXT NOT NULL)",
            "CREATE TABLE rules (id TEXT PRIMARY KEY, group_id TEXT NOT NULL REFERENCES groups(id),"
            " door_ids TEXT NOT NULL, schedule_id TEXT REFERENCES schedules(id))",
            "CREATE INDEX rules_group ON rules(group_id)",
            "CREATE INDEX rules_schedule ON rules(schedule_id)",
            "CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, building TEXT,"
            " unit TEXT, status TEXT NOT NULL, valid_from TEXT, valid_until TEXT,"
            " face_consent INTEGER NOT NULL, responder INTEGER NOT NULL)",
            # position keeps the order of Person.group_ids.
            "CREATE TABLE person_groups (person_id TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,"
            " position INTEGER NOT NULL, group_id TEXT NOT NULL REFERENCES groups(id),"
            " PRIMARY KEY (person_id, position)) WITHOUT ROWID",
            "CREATE INDEX person_groups_group ON person_groups(group_id)",
            "CREATE TABLE credentials (kind TEXT NOT NULL, value TEXT NOT NULL,"
            " person_id TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE, status TEXT NOT NULL,"
            " valid_from TEXT, valid_until TEXT, format TEXT, PRIMARY KEY (kind, value)) WITHOUT ROWID",
            "CREATE INDEX credentials_person ON credentials(person_id)",
            # host_person_id is deliberately not a foreign key: a pass outlives its host's record.
            "CREATE TABLE passes (id TEXT PRIMARY KEY, door_ids TEXT NOT NULL, valid_from TEXT NOT NULL,"
            " valid_until TEXT NOT NULL, max_uses INTEGER, host_person_id TEXT, host_unit TEXT,"
            " label TEXT NOT NULL, status TEXT NOT NULL)",
            "CREATE TABLE holidays (day TEXT PRIMARY KEY) WITHOUT ROWID",
        ),
    ),
    Migration(
        2,
        "key/value state",
        ("CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)",),
    ),
    Migration(
        3,
        "event log",
        (
            # AUTOINCREMENT: sqlite_sequence keeps the highest seq ever used; pruning never frees a number.
            "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
            " at TEXT NOT NULL, type TEXT NOT NULL, door TEXT, payload TEXT NOT NULL,"
            " prev_hash TEXT NOT NULL, hash TEXT NOT NULL, sync_state INTEGER NOT NULL DEFAULT 0,"
            " synced_at TEXT)",
            "CREATE INDEX events_pending ON events(seq) WHERE sync_state = 0",
            "CREATE INDEX events_door ON events(door, seq) WHERE door IS NOT NULL",
            # One row per prune; the row with the highest through_seq is the chain anchor.
            "CREATE TABLE event_prunes (through_seq INTEGER PRIMARY KEY, hash TEXT NOT NULL,"
            " pruned_at TEXT NOT NULL, count INTEGER NOT NULL)",
        ),
    ),
    Migration(
        4,
        "visitor pass trust list",
        (
            # Keys are never deleted, only retired (edge.passes.trust); retired_at NULL: active.
            "CREATE TABLE pass_keys (kid BLOB PRIMARY KEY, public_key BLOB NOT NULL, issuer TEXT NOT NULL,"
            " retired_at TEXT) WITHOUT ROWID",
        ),
    ),
    Migration(
        5,
        "visitor pass revocation list",
        (
            # Revoked passes the access list does not hold (signed QR passes), by id, until forget_after
            # (Unix seconds, so that SQL can compare and keep the later of two).
            "CREATE TABLE pass_revocations (pass_id TEXT PRIMARY KEY, forget_after INTEGER NOT NULL)"
            " WITHOUT ROWID",
        ),
    ),
    Migration(
        6,
        "guard console accounts",
        (
            # Local accounts of the guard console (edge.console); password_hash is an argon2id PHC string.
            "CREATE TABLE console_accounts (username TEXT PRIMARY KEY,"
            " role TEXT NOT NULL CHECK (role IN ('guard', 'admin')), password_hash TEXT NOT NULL,"
            " created_at TEXT NOT NULL) WITHOUT ROWID",
        ),
    ),
    Migration(
        7,
        "guard console alarms",
        (
            # Alarms the guard console shows until a guard acknowledges them (edge.alarms), so a
            # restart does not lose one. A repeat of an open alarm (same kind, door, device) counts up.
            "CREATE TABLE console_alarms (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL,"
            " kind TEXT NOT NULL, door TEXT, device TEXT, detail TEXT NOT NULL,"
            " count INTEGER NOT NULL DEFAULT 1, last_at TEXT NOT NULL, cleared_at TEXT,"
            " acknowledged_at TEXT, acknowledged_by TEXT, note TEXT)",
            "CREATE INDEX console_alarms_open ON console_alarms(id) WHERE acknowledged_at IS NULL",
        ),
    ),
    Migration(
        8,
        "guard console account status",
        (
            # When an account last logged in, and since when an admin has disabled it (NULL: enabled).
            # Disabled rather than deleted: the audit trail keeps naming the account.
            "ALTER TABLE console_accounts ADD COLUMN last_login_at TEXT",
            "ALTER TABLE console_accounts ADD COLUMN disabled_at TEXT",
        ),
    ),
    Migration(
        9,
        "visitor pass use counts as rows",
        (
            # One row per (pass, gateway) (edge.store.use_store), replacing the JSON state keys
            # pass_use_ledger and pass_uses (moved here by the pass runtime on its first start). Times are
            # Unix seconds: seen_at, when this gateway last learnt of a use; expires, the pass's expiry
            # (NULL: not known here). Rows are deleted once the pass can never be used again.
            "CREATE TABLE pass_use_counts (pass_id TEXT NOT NULL, gateway_id TEXT NOT NULL,"
            " count INTEGER NOT NULL, seen_at INTEGER, expires INTEGER,"
            " PRIMARY KEY (pass_id, gateway_id)) WITHOUT ROWID",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version


def schema_version(db: sqlite_utils.Database) -> int:
    version: int = db.conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(
    db: sqlite_utils.Database, *, target: int | None = None, steps: Sequence[Migration] = MIGRATIONS
) -> int:
    """Bring the schema to `target` (default: the latest); return the version reached.

    Raises MigrationError if the database is newer than `steps` know, or a step fails (that step is rolled
    back; the steps before it stay applied).
    """
    _check_numbering(steps)
    latest = steps[-1].version if steps else 0
    goal = latest if target is None else target
    if not 0 <= goal <= latest:
        raise MigrationError(f"cannot migrate to version {goal}: known versions are 0..{latest}")
    current = schema_version(db)
    if current > latest:
        raise MigrationError(
            f"database schema version {current} is newer than this menwei understands (latest {latest}); "
            "it was written by a newer release - upgrade menwei, do not downgrade the database"
        )
    conn = db.conn
    if conn.in_transaction:
        raise MigrationError("migrate() must not be called inside a transaction")
    for step in steps:
        if step.version > goal:
            break
        if step.version <= current:
            continue
        try:
            applied = _apply(db, step)
        except sqlite3.Error as err:
            raise MigrationError(f"migration {step.version} ({step.name}) failed: {err}") from err
        if applied:
            log.info("database migrated to schema version %d (%s)", step.version, step.name)
    return schema_version(db)


def _apply(db: sqlite_utils.Database, step: Migration) -> bool:
    """Run one step and its user_version bump in one transaction; False if it was already applied."""
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        if schema_version(db) >= step.version:  # another process got here first
            conn.execute("ROLLBACK")
            return False
        for sql in step.statements:
            conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {step.version:d}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True


def _check_numbering(steps: Sequence[Migration]) -> None:
    for expected, step in enumerate(steps, start=1):
        if step.version != expected:
            raise MigrationError(f"migration {step.name!r} is numbered {step.version}, expected {expected}")
