"""Torn writes: what a power cut can leave in the WAL, and what SQLite and the event log make of it.

A WAL is a header and a run of frames (a 24-byte frame header, then one page). Each frame's checksum covers
every frame before it, and a transaction counts only once its commit frame (a header whose "database size"
field is non-zero) is in the file with a valid checksum. So a frame cut short, or one whose bytes the card
garbled, ends the log right there: SQLite keeps the transactions committed before it and nothing after.

The tests copy the database and its WAL while the event log is open (before the last connection closes and
checkpoints the WAL away), damage the copy's WAL as a power cut could, open it, and check:
- PRAGMA quick_check passes and the hash chain verifies;
- the events are exactly the original's seq 1..m (same ids and hashes), the m of the last intact commit;
- "garbled from frame k on" gives the same database as "the WAL cut cleanly before frame k".
A garbled page of the main database file is a different matter (no checksum there): the boot check catches
it and restores a backup (tests/edge/store/test_store_recovery.py).
"""

from __future__ import annotations

import random
import sqlite3
import struct
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.store import EventLog, verify_chain
from edge.store.db import Synchronous

WAL_HEADER = 32
FRAME_HEADER = 24


def _record(n: int) -> dict[str, object]:
    return {"type": "decision", "at": datetime.now(UTC).isoformat(), "door": "d1", "n": n, "pad": "x" * 300}


def _commit_frames(wal: bytes) -> tuple[int, list[int]]:
    """(frame size, indexes of the frames that end a transaction)."""
    page_size = struct.unpack(">I", wal[8:12])[0]
    frame = FRAME_HEADER + page_size
    count = (len(wal) - WAL_HEADER) // frame
    commits = [
        i
        for i in range(count)
        if struct.unpack(">I", wal[WAL_HEADER + i * frame + 4 : WAL_HEADER + i * frame + 8])[0] != 0
    ]
    return frame, commits


def _snapshot(db: Path) -> tuple[bytes, bytes]:
    """The main file and the WAL as they are on disk right now (no -shm: it is rebuilt on open)."""
    main = db.read_bytes()
    return main, Path(f"{db}-wal").read_bytes()


def _open(directory: Path, main: bytes, wal: bytes) -> list[tuple[int, str, str]]:
    """Put a copy in its own directory, open it, check it, return its events (seq, id, hash)."""
    directory.mkdir()
    copy = directory / "menwei.db"
    copy.write_bytes(main)
    Path(f"{copy}-wal").write_bytes(wal)
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT seq, id, hash FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()
    report = verify_chain(copy)
    assert report.ok, report.detail
    assert report.checked == len(rows)
    return rows


def _events(db: Path) -> list[tuple[int, str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT seq, id, hash FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_a_torn_or_garbled_wal_tail_loses_only_the_transactions_after_it(
    tmp_path: Path, synchronous: Synchronous
) -> None:
    db = tmp_path / "menwei.db"
    rng = random.Random(7)
    with EventLog(db, synchronous=synchronous) as log:
        for batch in range(40):  # 40 transactions (group commits) of 15 events, all still in the WAL
            for f in log.append_many(_record(batch * 15 + i) for i in range(15)):
                f.result()
        main, wal = _snapshot(db)
        original = _events(db)
    assert len(original) == 600
    frame, commits = _commit_frames(wal)
    assert len(commits) >= 40, "the test needs every transaction still in the WAL (no checkpoint yet)"

    # The intact copy has everything.
    assert _open(tmp_path / "intact", main, wal) == original

    # Cut in the middle of a frame of the last transaction: that transaction is gone, the rest stays.
    torn_at = WAL_HEADER + (commits[-2] + 1) * frame + rng.randrange(1, frame)
    assert _open(tmp_path / "torn", main, wal[:torn_at]) == original[: 600 - 15]

    # Garble bytes of a frame in the middle (and cut the tail mid-frame too): everything from that frame on
    # is ignored, exactly as if the WAL ended cleanly just before it.
    k = rng.randrange(commits[5], commits[-5])
    garbled = bytearray(wal[: len(wal) - frame // 2])
    at = WAL_HEADER + k * frame + FRAME_HEADER + rng.randrange(0, frame - FRAME_HEADER - 8)
    garbled[at : at + 8] = bytes(b ^ 0x5A for b in garbled[at : at + 8])
    got = _open(tmp_path / "garbled", main, bytes(garbled))
    assert got == _open(tmp_path / "clean-cut", main, wal[: WAL_HEADER + k * frame])
    assert got == original[: len(got)] and 0 < len(got) < 600


def test_copies_taken_while_the_writer_runs_open_consistent(tmp_path: Path) -> None:
    db = tmp_path / "menwei.db"
    stop = threading.Event()
    with EventLog(db) as log:
        for f in log.append_many(_record(i) for i in range(50)):
            f.result()

        def writer() -> None:
            n = 0
            while not stop.is_set():
                log.append(_record(n)).result()
                n += 1

        thread = threading.Thread(target=writer)
        thread.start()
        # An open read transaction keeps the WAL from being restarted (rewritten from its start) between
        # reading the main file and reading the WAL; appends and checkpoints go on as usual.
        pin = sqlite3.connect(db, isolation_level=None)
        pin.execute("BEGIN")
        pin.execute("SELECT count(*) FROM events").fetchone()
        try:  # the WAL is read while frames are being appended: its tail may be a partial frame
            copies = [_snapshot(db) for _ in range(5)]
        finally:
            stop.set()
            thread.join()
            pin.close()
        original = _events(db)
    previous = 50
    for i, (main, wal) in enumerate(copies):
        rows = _open(tmp_path / f"live-{i}", main, wal)
        assert rows == original[: len(rows)]  # a prefix of what was committed, chain intact
        assert len(rows) >= previous
        previous = len(rows)
