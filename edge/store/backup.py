"""Online backups of the gateway database, and finding the newest good one to restore.

How a backup is taken (`take_backup`), and why:
- SQLite's backup API (`sqlite3.Connection.backup`) copies pages `pages` at a time with a `pause` between
  steps, so the SD card is not saturated. The source connection holds one read transaction for the whole
  copy: in WAL mode a reader never blocks the event writer (commits go on appending to the WAL), and the copy
  is one consistent snapshot. Without that read transaction every commit by another connection would restart
  the copy from page 1, and on a busy gate a big file might never finish.
- The copy is written to `<name>.tmp`, switched to a rollback journal (one self-contained file), checked
  with PRAGMA quick_check, fsynced, then renamed to `menwei-YYYYmmddTHHMMSSZ.db` and the directory fsynced:
  a backup file with its final name is always complete and checked; a power cut leaves at most a .tmp,
  which the next run deletes.
- Only the newest `keep` backups are kept.

`newest_good_backup` walks the backups newest first and returns the first that passes PRAGMA
integrity_check (the full check: it is about to become the gateway's database).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from edge.errors import StoreError

log = logging.getLogger(__name__)

PREFIX = "menwei-"
SUFFIX = ".db"
STAMP = "%Y%m%dT%H%M%SZ"
PAGES_PER_STEP = 256  # 1 MiB at 4 KiB pages
STEP_PAUSE_SECONDS = 0.01


def backup_name(at: datetime) -> str:
    return f"{PREFIX}{at.astimezone(UTC).strftime(STAMP)}{SUFFIX}"


def backup_time(path: Path) -> datetime | None:
    """When a backup was taken, from its name; None for a file that is not a backup."""
    name = path.name
    if not (name.startswith(PREFIX) and name.endswith(SUFFIX)):
        return None
    try:
        return datetime.strptime(name[len(PREFIX) : -len(SUFFIX)], STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def list_backups(directory: Path) -> list[Path]:
    """The backups in `directory`, newest first."""
    if not directory.is_dir():
        return []
    found = [(t, p) for p in directory.iterdir() if p.is_file() and (t := backup_time(p)) is not None]
    return [p for _, p in sorted(found, reverse=True)]


def take_backup(
    db_path: Path,
    directory: Path,
    *,
    keep: int,
    now: datetime | None = None,
    pages: int = PAGES_PER_STEP,
    pause: float = STEP_PAUSE_SECONDS,
) -> Path:
    """Back `db_path` up into `directory`; return the new backup's path. Blocking: run it in a thread.

    Raises StoreError if the database cannot be read or the copy fails its check (the copy is then deleted;
    the backups already there are untouched).
    """
    now = now or datetime.now(UTC)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in directory.glob(f"{PREFIX}*{SUFFIX}.tmp"):  # left by a power cut during an earlier run
        stale.unlink(missing_ok=True)
    final = directory / backup_name(now)
    tmp = final.with_name(final.name + ".tmp")
    try:
        _copy(db_path, tmp, pages, pause)
        _fsync(tmp)
        os.replace(tmp, final)
        _fsync(directory)
    except (sqlite3.Error, OSError) as err:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"backup of {db_path} failed: {err}") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    size = final.stat().st_size
    removed = prune_backups(directory, keep)
    log.info("backup %s written (%.1f MiB); %d old backups removed", final, size / 2**20, len(removed))
    return final


def prune_backups(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups; return what was deleted."""
    doomed = list_backups(directory)[max(keep, 1) :]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def check_database(path: Path, *, full: bool) -> str | None:
    """None if the file at `path` opens as SQLite and passes the check; else what is wrong. Writes nothing
    itself; closing the connection lets SQLite checkpoint a WAL into the file, as any last connection does
    (frames whose checksums fail are not copied)."""
    pragma = "integrity_check" if full else "quick_check"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True)
    except sqlite3.Error as err:
        return f"cannot open: {err}"
    try:
        rows = conn.execute(f"PRAGMA {pragma}").fetchall()
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as err:
        return f"{pragma} failed: {err}"
    finally:
        conn.close()
    if rows != [("ok",)]:
        return f"{pragma}: " + "; ".join(str(r[0]) for r in rows[:5])
    return None


def newest_good_backup(directory: Path) -> Path | None:
    """The newest backup that passes PRAGMA integrity_check; bad ones are logged and skipped (not deleted)."""
    for path in list_backups(directory):
        problem = check_database(path, full=True)
        if problem is None:
            return path
        log.error("backup %s is not usable: %s", path, problem)
    return None


def _copy(db_path: Path, tmp: Path, pages: int, pause: float) -> None:
    source = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None)
    try:
        target = sqlite3.connect(tmp, isolation_level=None)
        try:
            # One read transaction over the whole copy: one snapshot, no restarts (see the module docstring).
            source.execute("BEGIN")
            source.execute("SELECT count(*) FROM sqlite_master").fetchone()
            # Connection.backup only sleeps after a busy step; the pause between steps is ours.
            source.backup(target, pages=pages, progress=lambda *_: time.sleep(pause) if pause else None)
            source.execute("COMMIT")
            target.execute("PRAGMA journal_mode = DELETE")
            rows = target.execute("PRAGMA quick_check").fetchall()
            if rows != [("ok",)]:
                raise sqlite3.DatabaseError(f"the copy fails quick_check: {rows[:3]}")
        finally:
            target.close()
    finally:
        source.close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
