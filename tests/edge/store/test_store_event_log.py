"""EventLog: group commit through one writer thread, the hash chain, bad records, outbox reads, pruning."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import edge.store.event_log as event_log_module
from edge.errors import StoreError
from edge.events import AlarmEvent, AlarmKind, ModeEvent
from edge.model import DoorMode
from edge.store import GENESIS_HASH, BadRecordError, EventLog, StoredEvent, verify_chain

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _record(n: int, door: str | None = "gate-n") -> dict[str, Any]:
    return {
        "type": "decision",
        "at": (T0 + timedelta(seconds=n)).isoformat(timespec="microseconds"),
        "door": door,
        "n": n,
        "granted": n % 2 == 0,
    }


def _rows(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT seq, id, at, type, door, payload, prev_hash, hash, sync_state, synced_at"
            " FROM events ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


def _sha(prev: str, event_id: str, seq: int, payload: str) -> str:
    """The chain hash as documented, written out independently of the module."""
    return hashlib.sha256(
        (prev + "\n" + event_id + "\n" + str(seq) + "\n" + payload).encode("utf-8")
    ).hexdigest()


@pytest.fixture
def log(db_path: Path) -> Iterator[EventLog]:
    event_log = EventLog(db_path)
    yield event_log
    event_log.close()


def test_append_resolves_with_seq_id_and_hash_once_stored(log: EventLog, db_path: Path) -> None:
    futures = [log.append(_record(n)) for n in range(5)]
    stored = [f.result(timeout=10) for f in futures]

    assert [s.seq for s in stored] == [1, 2, 3, 4, 5]
    assert all(uuid.UUID(s.id).version == 7 for s in stored)
    assert len({s.id for s in stored}) == 5
    rows = _rows(db_path)
    assert [(r[0], r[1], r[7]) for r in rows] == [(s.seq, s.id, s.hash) for s in stored]


def test_rows_hold_canonical_payload_columns_and_the_chain(log: EventLog, db_path: Path) -> None:
    record = {
        "type": "alarm",
        "at": "2026-03-01T08:00:00.000000+08:00",
        "door": None,
        "detail": "门 forced",
        "z": 1,
    }
    first = log.append(record).result(timeout=10)
    second = log.append(_record(1, door="lobby-a")).result(timeout=10)

    (seq1, id1, at1, type1, door1, payload1, prev1, hash1, sync1, synced1), row2 = _rows(db_path)
    assert (
        payload1
        == '{"at":"2026-03-01T08:00:00.000000+08:00","detail":"门 forced","door":null,"type":"alarm","z":1}'
    )
    assert (seq1, at1, type1, door1, sync1, synced1) == (1, record["at"], "alarm", None, 0, None)
    assert prev1 == GENESIS_HASH == "0" * 64
    assert hash1 == _sha(GENESIS_HASH, id1, 1, payload1) == first.hash
    assert row2[4] == "lobby-a"
    assert row2[6] == hash1
    assert row2[7] == _sha(hash1, row2[1], 2, row2[5]) == second.hash
    assert json.loads(row2[5]) == _record(1, door="lobby-a")


def test_domain_events_are_stored_through_to_record(log: EventLog, db_path: Path) -> None:
    alarm = AlarmEvent(at=T0, kind=AlarmKind.DOOR_FORCED, door_id="gate-n", detail="contact open")
    mode = ModeEvent(at=T0 + timedelta(seconds=1), mode=DoorMode.LOCKDOWN, by="console", reason="drill")
    for future in log.append_many([alarm.to_record(), mode.to_record()]):
        future.result(timeout=10)
    rows = _rows(db_path)
    assert [(r[3], r[4]) for r in rows] == [("alarm", "gate-n"), ("mode", None)]
    assert json.loads(rows[0][5]) == alarm.to_record()
    assert json.loads(rows[1][5]) == mode.to_record()


def test_a_future_resolves_only_after_its_event_is_committed(log: EventLog, db_path: Path) -> None:
    """The done-callback looks from a separate connection: a resolved event must already be visible there."""
    seen: list[bool] = []

    def check(future: Future[StoredEvent]) -> None:
        conn = sqlite3.connect(db_path)
        try:
            found = conn.execute("SELECT 1 FROM events WHERE id = ?", (future.result().id,)).fetchone()
            seen.append(found is not None)
        finally:
            conn.close()

    futures = [log.append(_record(n)) for n in range(50)]
    for future in futures:
        future.add_done_callback(check)
    log.flush(timeout=10)
    assert len(seen) == 50
    assert all(seen)


def test_queued_events_are_group_committed_in_capped_batches(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real_commit = event_log_module._commit

    def recording_commit(conn: sqlite3.Connection, batch: list[Any]) -> list[StoredEvent]:
        sizes.append(len(batch))
        return real_commit(conn, batch)

    monkeypatch.setattr(event_log_module, "_commit", recording_commit)
    event_log = EventLog(db_path, max_batch=100)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: the writer waits in its first batch
        futures = [event_log.append(_record(n)) for n in range(250)]
        blocker.execute("COMMIT")
        stored = [f.result(timeout=20) for f in futures]
    finally:
        blocker.close()
        event_log.close()
    assert [s.seq for s in stored] == list(range(1, 251))
    assert sum(sizes) == 250
    assert max(sizes) == 100  # everything queued behind the lock went in full batches
    assert len(sizes) < 250


def test_appends_from_many_threads_get_strictly_increasing_seqs(log: EventLog, db_path: Path) -> None:
    results: dict[int, list[StoredEvent]] = {}

    def worker(t: int) -> None:
        futures = [log.append({**_record(i), "thread": t}) for i in range(200)]
        results[t] = [f.result(timeout=20) for f in futures]

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for stored in results.values():  # each thread's events keep the order it appended them in
        seqs = [s.seq for s in stored]
        assert seqs == sorted(seqs)
    all_seqs = sorted(s.seq for stored in results.values() for s in stored)
    assert all_seqs == list(range(1, 801))
    assert verify_chain(db_path).ok


def test_append_many_gets_consecutive_seqs(log: EventLog) -> None:
    log.append(_record(0)).result(timeout=10)
    stored = [f.result(timeout=10) for f in log.append_many(_record(n) for n in range(1, 11))]
    assert [s.seq for s in stored] == list(range(2, 12))


def test_bad_records_fail_alone_and_the_writer_carries_on(log: EventLog, db_path: Path) -> None:
    good1 = log.append(_record(1))
    not_json = log.append({**_record(2), "blob": object()})
    nan = log.append({**_record(3), "x": float("nan")})
    no_at = log.append({"type": "decision"})
    naive_at = log.append({"type": "decision", "at": "2026-03-01T08:00:00"})
    bad_door = log.append({**_record(4), "door": 7})
    not_a_dict = log.append(["type", "at"])  # type: ignore[arg-type]
    batch = log.append_many([_record(5), {"type": "", "at": _record(6)["at"]}, _record(7)])
    good2 = log.append(_record(8))

    for future, match in [
        (not_json, "not JSON-serialisable"),
        (nan, "not JSON-serialisable"),
        (no_at, "'at'"),
        (naive_at, "UTC offset"),
        (bad_door, "'door'"),
        (not_a_dict, "must be a dict"),
        (batch[1], "'type'"),
    ]:
        with pytest.raises(BadRecordError, match=match):
            future.result(timeout=10)
    assert isinstance(not_json.exception(), StoreError)
    stored = [f.result(timeout=10) for f in (good1, batch[0], batch[2], good2)]
    assert [s.seq for s in stored] == [1, 2, 3, 4]
    assert [json.loads(r[5])["n"] for r in _rows(db_path)] == [1, 5, 7, 8]
    assert log.append(_record(9)).result(timeout=10).seq == 5


def test_a_failed_batch_fails_its_futures_and_the_next_batch_is_stored(
    log: EventLog, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_commit = event_log_module._commit
    calls = 0

    def failing_once(conn: sqlite3.Connection, batch: list[Any]) -> list[StoredEvent]:
        nonlocal calls
        calls += 1
        if calls == 1:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO events (seq, id, at, type, payload, prev_hash, hash)"
                " VALUES (1000, 'x', '', '', '', '', '')"
            )
            raise sqlite3.OperationalError("disk I/O error")
        return real_commit(conn, batch)

    log.append(_record(0)).result(timeout=10)
    monkeypatch.setattr(event_log_module, "_commit", failing_once)
    failed = log.append(_record(1))
    with pytest.raises(StoreError, match="event not stored: disk I/O error"):
        failed.result(timeout=10)
    # The writer rolled back the transaction the failure left open; the garbage row is gone.
    assert log.append(_record(2)).result(timeout=10).seq == 2
    assert verify_chain(db_path).ok


def test_close_drains_the_queue_and_is_idempotent(db_path: Path) -> None:
    event_log = EventLog(db_path)
    futures = event_log.append_many(_record(n) for n in range(300))
    futures.append(event_log.append(_record(300)))
    event_log.close()
    event_log.close()
    assert event_log.closed
    assert all(f.done() for f in futures)
    assert [f.result().seq for f in futures] == list(range(1, 302))
    assert len(_rows(db_path)) == 301
    with pytest.raises(StoreError, match="closed"):
        event_log.append(_record(0))
    with pytest.raises(StoreError, match="closed"):
        event_log.flush()
    with pytest.raises(StoreError, match="closed"):
        event_log.pending()


def test_context_manager_closes(db_path: Path) -> None:
    with EventLog(db_path) as event_log:
        future = event_log.append(_record(0))
    assert event_log.closed
    assert future.result(timeout=0).seq == 1


def test_accepted_events_cannot_be_cancelled(log: EventLog) -> None:
    future = log.append(_record(0))
    assert future.cancel() is False
    assert future.result(timeout=10).seq == 1


def test_numbering_and_chain_continue_after_reopening(db_path: Path) -> None:
    with EventLog(db_path) as first:
        last = [f.result(timeout=10) for f in first.append_many(_record(n) for n in range(3))][-1]
    with EventLog(db_path) as second:
        assert second.last_seq() == 3
        nxt = second.append(_record(3)).result(timeout=10)
    assert nxt.seq == 4
    assert _rows(db_path)[3][6] == last.hash
    assert verify_chain(db_path).ok


def test_outbox_reads_pending_oldest_first_and_marks_sent(log: EventLog, db_path: Path) -> None:
    assert log.depth() == 0
    assert log.pending() == []
    assert log.oldest_pending_at() is None
    for future in log.append_many(_record(n, door=f"d{n % 2}") for n in range(10)):
        future.result(timeout=10)

    batch = log.pending(limit=4)
    assert [e.seq for e in batch] == [1, 2, 3, 4]
    assert batch[0].record() == _record(0, door="d0")
    assert batch[1].door == "d1"
    assert batch[1].prev_hash == batch[0].hash
    assert log.depth() == 10
    assert log.oldest_pending_at() == T0

    sent_at = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert log.mark_sent([e.seq for e in batch], at=sent_at) == 4
    assert log.mark_sent([1, 2, 99]) == 0  # already sent, or no such event
    assert log.depth() == 6
    assert [e.seq for e in log.pending(limit=100)] == [5, 6, 7, 8, 9, 10]
    assert log.oldest_pending_at() == T0 + timedelta(seconds=4)
    rows = _rows(db_path)
    assert [(r[8], r[9]) for r in rows[:5]] == [(1, sent_at.isoformat())] * 4 + [(0, None)]


def test_prune_deletes_only_sent_events_and_keeps_the_chain_verifiable(log: EventLog, db_path: Path) -> None:
    stored = [f.result(timeout=10) for f in log.append_many(_record(n) for n in range(20))]
    log.mark_sent(range(1, 13))
    log.mark_sent([15])  # sent out of order: pruning must stop at the first unsent event (13)

    assert log.prune(through_seq=16) == 12
    assert [r[0] for r in _rows(db_path)] == list(range(13, 21))
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("SELECT through_seq, hash, count FROM event_prunes").fetchall() == [
            (12, stored[11].hash, 12)
        ]
    finally:
        conn.close()
    report = verify_chain(db_path)
    assert report.ok, report.detail
    assert report.anchor_seq == 12
    assert report.checked == 8
    assert log.prune(through_seq=16) == 0  # 13 is still unsent


def test_seqs_are_never_reused_after_pruning_everything(db_path: Path) -> None:
    with EventLog(db_path) as event_log:
        for future in event_log.append_many(_record(n) for n in range(5)):
            future.result(timeout=10)
        event_log.mark_sent(range(1, 6))
        assert event_log.prune(through_seq=5) == 5
        assert event_log.depth() == 0
        assert event_log.last_seq() == 5
    with EventLog(db_path) as event_log:
        again = event_log.append(_record(5)).result(timeout=10)
    assert again.seq == 6
    assert _rows(db_path)[0][6] != GENESIS_HASH  # chained onto the pruned event 5, not a new genesis
    assert verify_chain(db_path).ok


def test_writer_that_cannot_open_the_database_fails_the_constructor(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        EventLog(tmp_path / "missing-dir" / "events.db")
