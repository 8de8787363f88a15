"""The key/value state table."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlite_utils

from edge.errors import StoreError
from edge.store import delete_state, get_state, open_db, put_state, transaction


def test_missing_key_gives_the_default(db: sqlite_utils.Database) -> None:
    assert get_state(db, "door_modes") is None
    assert get_state(db, "door_modes", {}) == {}


def test_values_round_trip_as_json(db: sqlite_utils.Database) -> None:
    put_state(db, "door_modes", {"gate-n": "locked", "lobby-a": "normal"})
    put_state(db, "pass_uses", {"v-1": 2})
    put_state(db, "lkg", "2026-03-01T08:00:00+00:00")
    put_state(db, "flags", [True, None, 1.5, "中"])
    assert get_state(db, "door_modes") == {"gate-n": "locked", "lobby-a": "normal"}
    assert get_state(db, "pass_uses") == {"v-1": 2}
    assert get_state(db, "lkg") == "2026-03-01T08:00:00+00:00"
    assert get_state(db, "flags") == [True, None, 1.5, "中"]


def test_put_replaces_and_delete_removes(db: sqlite_utils.Database) -> None:
    put_state(db, "pass_uses", {"v-1": 1})
    put_state(db, "pass_uses", {"v-1": 2})
    assert get_state(db, "pass_uses") == {"v-1": 2}
    assert db.conn.execute("SELECT count(*) FROM state").fetchone()[0] == 1
    assert delete_state(db, "pass_uses") is True
    assert delete_state(db, "pass_uses") is False
    assert get_state(db, "pass_uses", 0) == 0


def test_unserialisable_value_is_refused_and_nothing_changes(db: sqlite_utils.Database) -> None:
    put_state(db, "x", 1)
    with pytest.raises(StoreError, match="'x' is not JSON-serialisable"):
        put_state(db, "x", {"when": object()})
    with pytest.raises(StoreError):
        put_state(db, "x", float("nan"))
    assert get_state(db, "x") == 1


def test_state_survives_reopening(db_path: Path) -> None:
    db = open_db(db_path)
    put_state(db, "door_modes", {"gate-n": "unlocked"})
    db.close()
    again = open_db(db_path)
    try:
        assert get_state(again, "door_modes") == {"gate-n": "unlocked"}
    finally:
        again.close()


def test_state_writes_join_a_caller_transaction(db: sqlite_utils.Database) -> None:
    def write_then_fail() -> None:
        with transaction(db):
            put_state(db, "a", 1)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert get_state(db, "a") is None
