"""The boot check: before the gateway opens its database, make sure it is sound; if not, restore, never wipe.

What `boot_check` does, in order:
1. No database file: a first start, nothing to check.
2. PRAGMA quick_check (or integrity_check) on the file. "ok": done.
3. Otherwise (a check failure, or a file SQLite cannot open at all): salvage what the numbering needs (the
   highest event seq, if the damaged file still yields it), then move the file and its -wal / -shm into
   `<data_dir>/corrupt-<time>/`. They are never deleted: a support engineer may get more out of them.
4. Copy the newest backup that passes PRAGMA integrity_check into place (copy, fsync, rename). With none, the
   gateway starts on a fresh, empty store: an empty access list denies everyone and the doors stay locked.
5. Keep seq numbers unique: the cloud de-duplicates events by (gateway, seq), so seqs written after the
   backup must never be handed out again. The event counter is moved past the salvaged seq, or, when the
   damaged file gave nothing, `SEQ_JUMP` past the backup's last seq. The seqs skipped show up as a gap in
   the cloud's gap report; the store_restored alarm names them and, as the first event after the jump,
   chained onto the last one before it, lets `menwei audit verify` accept exactly that gap (edge.store.audit).

The caller (the gateway) then logs an error, records a store_restored alarm event (so it is synced and shown)
and asks the cloud for a fresh snapshot at the next connect (reason "restored"). Door modes and a site lockdown
come back with the restored database; a fresh store starts every door in its configured mode.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from edge.store.backup import backup_time, check_database, newest_good_backup
from edge.store.db import Synchronous, open_db, transaction

log = logging.getLogger(__name__)

SIDE_FILES = ("-wal", "-shm", "-journal")
# Seqs skipped when the damaged file yields no seq: more events than a gateway writes between two backups.
SEQ_JUMP = 100_000_000


@dataclass(frozen=True, slots=True)
class Recovery:
    """What the boot check did about a damaged database."""

    problem: str  # what the check found
    moved_to: Path  # the corrupt-<time> directory holding the damaged files
    restored_from: Path | None  # the backup now in place, None: a fresh empty store
    backup_taken_at: datetime | None
    seq_resumes_after: int  # the next event gets this + 1
    last_backup_seq: int  # the highest seq the restored store holds (0 for a fresh store)

    def describe(self) -> str:
        if self.restored_from is None:
            source = "no good backup: started on an empty store (everyone denied until the cloud resends)"
        else:
            taken = self.backup_taken_at.isoformat(timespec="seconds") if self.backup_taken_at else "?"
            source = f"restored backup {self.restored_from.name} taken {taken}"
        skipped = (
            f"; events seq {self.last_backup_seq + 1}..{self.seq_resumes_after} are not on this gateway"
            if self.seq_resumes_after > self.last_backup_seq
            else ""
        )
        return f"database was damaged ({self.problem}); kept in {self.moved_to}; {source}{skipped}"


def boot_check(
    db_path: Path,
    backup_dir: Path,
    *,
    full: bool = False,
    synchronous: Synchronous = "full",
    now: datetime | None = None,
) -> Recovery | None:
    """Check `db_path`; None if it is sound (or absent), else restore it and say how. Blocking."""
    if not db_path.exists():
        return None
    problem = check_database(db_path, full=full)
    if problem is None:
        return None
    log.error("database %s failed its boot check: %s", db_path, problem)
    salvaged = _salvage_seq(db_path)
    now = now or datetime.now(UTC)
    moved_to = _move_aside(db_path, now)
    backup = newest_good_backup(backup_dir)
    if backup is not None:
        _restore(backup, db_path)
    db = open_db(db_path, synchronous=synchronous)  # migrates a fresh store, or an older backup
    try:
        last = _last_seq(db.conn)
        resume = max(last, salvaged) if salvaged is not None else last + SEQ_JUMP
        _set_seq_counter(db, resume)
    finally:
        db.close()
    recovery = Recovery(problem, moved_to, backup, backup_time(backup) if backup else None, resume, last)
    log.error("%s", recovery.describe())
    return recovery


def _salvage_seq(db_path: Path) -> int | None:
    """The highest event seq the damaged file still yields, read from a copy (the file is never written)."""
    try:
        conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        found = [0]
        for sql in (
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
            "SELECT max(seq) FROM events",
            "SELECT max(through_seq) FROM event_prunes",
        ):
            try:
                row = conn.execute(sql).fetchone()
            except sqlite3.Error:
                continue
            if row is not None and isinstance(row[0], int):
                found.append(row[0])
        return max(found) if len(found) > 1 else None
    finally:
        conn.close()


def _move_aside(db_path: Path, now: datetime) -> Path:
    target = db_path.parent / f"corrupt-{now.astimezone(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    target.mkdir(mode=0o700)
    for path in (db_path, *(db_path.with_name(db_path.name + s) for s in SIDE_FILES)):
        if path.exists():
            os.replace(path, target / path.name)
    _fsync_dir(target)
    _fsync_dir(db_path.parent)
    log.error("damaged database moved to %s", target)
    return target


def _restore(backup: Path, db_path: Path) -> None:
    tmp = db_path.with_name(db_path.name + ".restore")
    shutil.copyfile(backup, tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, db_path)
    _fsync_dir(db_path.parent)


def _last_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),"
        " coalesce((SELECT max(seq) FROM events), 0),"
        " coalesce((SELECT max(through_seq) FROM event_prunes), 0))"
    ).fetchone()
    return int(row[0])


def _set_seq_counter(db: sqlite_utils.Database, seq: int) -> None:
    with transaction(db):
        conn = db.conn
        if conn.execute("SELECT 1 FROM sqlite_sequence WHERE name = 'events'").fetchone() is None:
            conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)", (seq,))
        else:
            conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'events'", (seq,))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
