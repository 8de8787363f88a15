"""open_db pragmas, schema migrations and the transaction helper."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from edge.errors import MigrationError, StoreError
from edge.model import AccessList
from edge.store import (
    SCHEMA_VERSION,
    access_list_version,
    load_access_list,
    migrate,
    open_db,
    save_access_list,
    transaction,
)
from edge.store.migrations import MIGRATIONS, Migration


def _user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        return version
    finally:
        conn.close()


def test_open_db_configures_wal_and_safety_pragmas(db: sqlite_utils.Database) -> None:
    conn = db.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 2000
    assert conn.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY


def test_synchronous_normal_is_honoured(db_path: Path) -> None:
    db = open_db(db_path, synchronous="normal")
    try:
        assert db.conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    finally:
        db.close()


def test_bad_synchronous_value_is_refused(db_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        open_db(db_path, synchronous="off")  # type: ignore[arg-type]


def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        open_db(tmp_path / "no-such-dir" / "gateway.db")


def test_fresh_database_reaches_the_latest_schema(db: sqlite_utils.Database, db_path: Path) -> None:
    assert SCHEMA_VERSION == len(MIGRATIONS) == 9
    assert _user_version(db_path) == SCHEMA_VERSION
    tables = set(db.table_names())
    assert {
        "meta",
        "groups",
        "schedules",
        "rules",
        "people",
        "person_groups",
        "credentials",
        "passes",
        "holidays",
        "state",
        "events",
        "event_prunes",
        "pass_use_counts",
    } <= tables


def test_migrations_are_numbered_one_by_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_reopening_is_a_no_op(db_path: Path, sample_acl: AccessList) -> None:
    db = open_db(db_path)
    save_access_list(db, sample_acl)
    db.close()
    again = open_db(db_path)
    try:
        assert load_access_list(again).people == sample_acl.people
        assert migrate(again) == SCHEMA_VERSION
    finally:
        again.close()


def test_database_from_an_older_version_is_upgraded_with_its_data(
    db_path: Path, sample_acl: AccessList
) -> None:
    old = sqlite_utils.Database(sqlite3.connect(db_path))
    assert migrate(old, target=1) == 1
    assert "events" not in old.table_names()
    old.conn.execute("PRAGMA foreign_keys = ON")
    save_access_list(old, sample_acl)  # version 1 already holds the access list
    old.close()
    assert _user_version(db_path) == 1

    db = open_db(db_path)
    try:
        assert _user_version(db_path) == SCHEMA_VERSION
        assert {"state", "events", "event_prunes"} <= set(db.table_names())
        loaded = load_access_list(db)
        assert loaded.version == sample_acl.version
        assert loaded.credentials == sample_acl.credentials
    finally:
        db.close()


def test_database_newer_than_the_code_is_refused_and_left_alone(db_path: Path) -> None:
    open_db(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()

    with pytest.raises(
        MigrationError, match=rf"version {SCHEMA_VERSION + 5} is newer .*latest {SCHEMA_VERSION}"
    ):
        open_db(db_path)
    assert _user_version(db_path) == SCHEMA_VERSION + 5


def test_a_failing_step_rolls_back_only_itself(db_path: Path) -> None:
    steps = (
        Migration(1, "one", ("CREATE TABLE a (x)",)),
        Migration(2, "two", ("CREATE TABLE b (x)", "THIS IS NOT SQL")),
    )
    db = sqlite_utils.Database(sqlite3.connect(db_path))
    try:
        with pytest.raises(MigrationError, match=r"migration 2 \(two\) failed"):
            migrate(db, steps=steps)
        assert _user_version(db_path) == 1
        assert db.table_names() == ["a"]  # b was created inside the failed step's transaction
    finally:
        db.close()


def test_misnumbered_steps_are_refused(db_path: Path) -> None:
    steps = (Migration(1, "one", ()), Migration(3, "three", ()))
    db = sqlite_utils.Database(sqlite3.connect(db_path))
    try:
        with pytest.raises(MigrationError, match="numbered 3, expected 2"):
            migrate(db, steps=steps)
        assert _user_version(db_path) == 0
    finally:
        db.close()


def test_migrating_to_an_unknown_target_is_refused(db: sqlite_utils.Database) -> None:
    with pytest.raises(MigrationError, match="cannot migrate to version 99"):
        migrate(db, target=99)


def test_transaction_commits_on_success(db: sqlite_utils.Database, db_path: Path) -> None:
    with transaction(db):
        db.conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
    other = sqlite3.connect(db_path)
    try:
        assert other.execute("SELECT value FROM meta WHERE key = 'k'").fetchone() == ("v",)
    finally:
        other.close()


def test_transaction_rolls_back_on_error_and_nests_as_savepoints(db: sqlite_utils.Database) -> None:
    def outer_fails() -> None:
        with transaction(db):
            db.conn.execute("INSERT INTO meta (key, value) VALUES ('a', '1')")
            with transaction(db):
                db.conn.execute("INSERT INTO meta (key, value) VALUES ('b', '2')")
            raise RuntimeError("boom")

    def inner_fails() -> None:
        with transaction(db):
            db.conn.execute("INSERT INTO meta (key, value) VALUES ('b', '2')")
            raise RuntimeError("inner only")

    with pytest.raises(RuntimeError, match="boom"):
        outer_fails()
    assert db.conn.execute("SELECT count(*) FROM meta").fetchone()[0] == 0
    assert not db.conn.in_transaction

    with transaction(db):
        db.conn.execute("INSERT INTO meta (key, value) VALUES ('a', '1')")
        with pytest.raises(RuntimeError, match="inner only"):
            inner_fails()
    rows = db.conn.execute("SELECT key FROM meta ORDER BY key").fetchall()
    assert rows == [("a",)]
    assert access_list_version(db) == 0
