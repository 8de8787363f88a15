"""Online backups: taken while the event writer keeps committing, checked, complete under their final name,
the newest K kept; a damaged backup is skipped when looking for one to restore."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.errors import StoreError
from edge.store import EventLog, verify_chain
from edge.store.backup import (
    backup_time,
    check_database,
    list_backups,
    newest_good_backup,
    take_backup,
)

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def _record(n: int) -> dict[str, object]:
    return {"type": "decision", "at": datetime.now(UTC).isoformat(), "n": n, "pad": "x" * 500}


def _count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        count: int = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        return count


def test_a_backup_taken_during_writes_is_a_consistent_checked_copy(tmp_path: Path) -> None:
    db = tmp_path / "menwei.db"
    stop = threading.Event()
    written: list[int] = []
    with EventLog(db) as log:
        for f in log.append_many(_record(i) for i in range(3000)):
            f.result()

        def writer() -> None:
            n = 0
            while not stop.is_set():
                log.append(_record(n)).result()
                n += 1
            written.append(n)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            # Small steps with pauses: many commits land between two steps of the copy.
            backup = take_backup(db, tmp_path / "backups", keep=3, now=T0, pages=8, pause=0.002)
        finally:
            stop.set()
            thread.join()
    assert written[0] > 0
    assert backup.name == "menwei-20260301T020000Z.db" and backup_time(backup) == T0
    assert check_database(backup, full=True) is None
    assert verify_chain(backup).ok  # one snapshot: no half-copied batch, the chain is whole
    assert 3000 <= _count(backup) <= _count(db)
    assert not list((tmp_path / "backups").glob("*.tmp"))
    with sqlite3.connect(backup) as conn:  # one self-contained file
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_only_the_newest_k_backups_are_kept_and_leftover_temp_files_go(tmp_path: Path) -> None:
    db = tmp_path / "menwei.db"
    EventLog(db).close()
    directory = tmp_path / "backups"
    directory.mkdir()
    leftover = directory / "menwei-20260101T000000Z.db.tmp"  # a power cut during an earlier backup
    leftover.write_bytes(b"half")
    unrelated = directory / "notes.txt"
    unrelated.write_text("kept")
    taken = [take_backup(db, directory, keep=3, now=T0 + timedelta(days=d)) for d in range(5)]
    assert list_backups(directory) == taken[:1:-1]  # newest first: days 4, 3, 2
    assert not leftover.exists() and unrelated.exists()


def test_newest_good_backup_skips_a_damaged_one(tmp_path: Path) -> None:
    db = tmp_path / "menwei.db"
    with EventLog(db) as log:
        for f in log.append_many(_record(i) for i in range(400)):
            f.result()
    directory = tmp_path / "backups"
    older = take_backup(db, directory, keep=5, now=T0)
    newer = take_backup(db, directory, keep=5, now=T0 + timedelta(hours=24))
    with newer.open("r+b") as out:  # garbage over a page in the middle of the file
        out.seek(newer.stat().st_size // 2)
        out.write(b"\xa5" * 4096)
    assert check_database(newer, full=True) is not None
    assert newest_good_backup(directory) == older
    assert newer.exists()  # a bad backup is reported, never deleted


def test_a_backup_of_a_missing_database_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="backup of"):
        take_backup(tmp_path / "nope.db", tmp_path / "backups", keep=2)
    assert list_backups(tmp_path / "backups") == []
