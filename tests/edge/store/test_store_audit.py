"""verify_chain: an intact log verifies; each kind of tampering is found at the first broken link."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils

from edge.errors import AuditError, StoreError
from edge.store import EventLog, chain_hash, migrate, verify_chain

N = 20


def _fill(path: Path, n: int = N) -> None:
    with EventLog(path) as log:
        for future in log.append_many(
            {"type": "decision", "at": f"2026-03-01T08:00:{i:02d}+00:00", "door": "gate-n", "n": i}
            for i in range(n)
        ):
            future.result(timeout=10)


@pytest.fixture
def filled(db_path: Path) -> Path:
    _fill(db_path)
    return db_path


@pytest.fixture
def raw(filled: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection, as a tamperer would use (autocommit)."""
    conn = sqlite3.connect(filled, isolation_level=None)
    yield conn
    conn.close()


def test_intact_log_verifies(filled: Path) -> None:
    report = verify_chain(filled)
    assert report.ok
    assert report.checked == N
    assert report.first_broken_seq is None
    assert report.detail == f"{N} events verified from genesis to seq {N}"
    report.raise_if_broken()


def test_empty_log_verifies(db_path: Path) -> None:
    EventLog(db_path).close()
    report = verify_chain(db_path)
    assert (report.ok, report.checked) == (True, 0)


def test_edited_payload_is_named(filled: Path, raw: sqlite3.Connection) -> None:
    payload = raw.execute("SELECT payload FROM events WHERE seq = 7").fetchone()[0]
    raw.execute("UPDATE events SET payload = ? WHERE seq = 7", (payload.replace('"n":6', '"n":66'),))

    report = verify_chain(filled)
    assert not report.ok
    assert report.first_broken_seq == 7
    assert report.checked == 6
    assert "seq 7: hash does not match" in report.detail
    with pytest.raises(AuditError, match="seq 7"):
        report.raise_if_broken()


def test_edited_payload_with_recomputed_hash_breaks_the_next_link(
    filled: Path, raw: sqlite3.Connection
) -> None:
    seq, event_id, payload, prev = raw.execute(
        "SELECT seq, id, payload, prev_hash FROM events WHERE seq = 7"
    ).fetchone()
    forged = payload.replace('"n":6', '"n":66')
    raw.execute(
        "UPDATE events SET payload = ?, hash = ? WHERE seq = 7",
        (forged, chain_hash(prev, event_id, seq, forged)),
    )

    report = verify_chain(filled)
    assert report.first_broken_seq == 8
    assert "prev_hash does not match" in report.detail


def test_deleted_middle_row_is_named(filled: Path, raw: sqlite3.Connection) -> None:
    raw.execute("DELETE FROM events WHERE seq = 11")
    report = verify_chain(filled)
    assert not report.ok
    assert report.first_broken_seq == 11
    assert report.checked == 10
    assert "event(s) 11 missing" in report.detail


def test_deleted_range_is_named(filled: Path, raw: sqlite3.Connection) -> None:
    raw.execute("DELETE FROM events WHERE seq BETWEEN 4 AND 6")
    report = verify_chain(filled)
    assert report.first_broken_seq == 4
    assert "event(s) 4..6 missing" in report.detail


def test_deleted_first_row_is_found_without_an_anchor(filled: Path, raw: sqlite3.Connection) -> None:
    raw.execute("DELETE FROM events WHERE seq = 1")
    assert verify_chain(filled).first_broken_seq == 1


def test_deleted_tail_is_found_through_the_sequence_counter(filled: Path, raw: sqlite3.Connection) -> None:
    raw.execute(f"DELETE FROM events WHERE seq >= {N - 2}")
    report = verify_chain(filled)
    assert report.first_broken_seq == N - 2
    assert "missing at the end" in report.detail


def test_changed_hash_is_named(filled: Path, raw: sqlite3.Connection) -> None:
    raw.execute("UPDATE events SET hash = ? WHERE seq = 3", ("f" * 64,))
    report = verify_chain(filled)
    assert report.first_broken_seq == 3
    assert "hash does not match" in report.detail


def test_changed_column_outside_the_payload_is_named(filled: Path, raw: sqlite3.Connection) -> None:
    raw.execute("UPDATE events SET door = 'back-door' WHERE seq = 9")
    report = verify_chain(filled)
    assert report.first_broken_seq == 9
    assert "column 'door' is 'back-door' but the payload says 'gate-n'" in report.detail


def test_later_events_after_a_tail_deletion_show_the_gap(filled: Path, raw: sqlite3.Connection) -> None:
    raw.execute(f"DELETE FROM events WHERE seq = {N}")
    _fill(filled, 2)  # the writer continues above the high-water mark, it never reuses seq N
    seqs = [r[0] for r in raw.execute("SELECT seq FROM events ORDER BY seq")]
    assert seqs[-3:] == [N - 1, N + 1, N + 2]
    report = verify_chain(filled)
    assert report.first_broken_seq == N
    assert f"event(s) {N} missing" in report.detail


def test_pruned_log_verifies_from_the_anchor_and_breaks_after_it(
    filled: Path, raw: sqlite3.Connection
) -> None:
    with EventLog(filled) as log:
        log.mark_sent(range(1, 9))
        assert log.prune(through_seq=8) == 8
    report = verify_chain(filled)
    assert report.ok, report.detail
    assert (report.anchor_seq, report.checked) == (8, N - 8)
    assert "from prune anchor at seq 8" in report.detail

    raw.execute("DELETE FROM events WHERE seq = 9")  # the first row after the anchor
    report = verify_chain(filled)
    assert report.first_broken_seq == 9


def test_forged_anchor_is_caught(filled: Path, raw: sqlite3.Connection) -> None:
    raw.execute(
        "INSERT INTO event_prunes (through_seq, hash, pruned_at, count) VALUES (5, ?, '', 5)", ("a" * 64,)
    )
    raw.execute("DELETE FROM events WHERE seq <= 5")
    report = verify_chain(filled)
    assert report.first_broken_seq == 6
    assert "prev_hash does not match" in report.detail


def test_rows_left_before_the_anchor_are_caught(filled: Path, raw: sqlite3.Connection) -> None:
    anchor = raw.execute("SELECT hash FROM events WHERE seq = 5").fetchone()[0]
    raw.execute(
        "INSERT INTO event_prunes (through_seq, hash, pruned_at, count) VALUES (5, ?, '', 5)", (anchor,)
    )
    raw.execute("DELETE FROM events WHERE seq <= 4")
    report = verify_chain(filled)
    assert report.first_broken_seq == 5
    assert "pruned" in report.detail


def test_non_json_payload_with_a_valid_hash_is_caught(filled: Path, raw: sqlite3.Connection) -> None:
    seq, event_id, prev = raw.execute(f"SELECT seq, id, prev_hash FROM events WHERE seq = {N}").fetchone()
    raw.execute(
        "UPDATE events SET payload = 'oops', hash = ? WHERE seq = ?",
        (chain_hash(prev, event_id, seq, "oops"), N),
    )
    report = verify_chain(filled)
    assert report.first_broken_seq == N
    assert "not JSON" in report.detail


def test_accepts_a_database_or_a_connection(filled: Path, raw: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(sqlite3.connect(filled))
    try:
        assert verify_chain(db).ok
    finally:
        db.close()
    assert verify_chain(raw).checked == N
    assert verify_chain(str(filled)).ok


def test_verifying_does_not_write(filled: Path) -> None:
    conn = sqlite3.connect(filled)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = filled.read_bytes()
    assert verify_chain(filled).ok
    assert filled.read_bytes() == before


def test_missing_file_or_log_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database"):
        verify_chain(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()
    old = sqlite_utils.Database(sqlite3.connect(tmp_path / "old.db"))
    migrate(old, target=2)
    old.close()
    with pytest.raises(StoreError, match="no event log"):
        verify_chain(tmp_path / "old.db")


def test_payload_order_in_db_is_canonical(filled: Path, raw: sqlite3.Connection) -> None:
    payload = raw.execute("SELECT payload FROM events WHERE seq = 1").fetchone()[0]
    assert payload == json.dumps(
        json.loads(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
