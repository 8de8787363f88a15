"""Verifying the event log's hash chain (backs `menwei audit verify`).

Why a separate reader: an auditor must be able to check a database copied off a gateway, without the gateway
code writing to it. `verify_chain` never migrates or writes; it walks the rows in seq order, in constant
memory, and stops at the first broken link, because everything after a break is unproven anyway.

What is checked, from the chain anchor (the newest prune record) or, with none, from genesis (seq 1,
prev_hash = 64 "0"s):
- seqs are consecutive: a missing number is a deleted row (gaps are allowed only before the anchor, where
  rows were pruned), and no row at or before the anchor survives;
- each row's prev_hash is the previous row's hash (the anchor's for the first row);
- each row's hash is chain_hash(prev_hash, id, seq, payload) (see edge.store.event_log);
- the payload is JSON and the at / type / door columns match it;
- no events are missing after the last row (sqlite_sequence's high-water mark equals the last seq).

One gap is legitimate: after the boot check restored a damaged database (edge/store/recovery.py), numbering
resumes past every seq the lost file may have used, and the first event after the jump is the store_restored
alarm, chained onto the last event before it. A gap is accepted when, and only when, the row after it is such
an alarm whose prev_hash links to the row before it; it is listed in `gaps`. Forging that row means rewriting
every hash after it, which the hashes already sent upstream expose.

`first_broken_seq` is the lowest seq at which the log differs from an intact chain: the edited row, or the
first missing seq of a deletion.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from edge.errors import AuditError, StoreError
from edge.store.event_log import GENESIS_HASH, chain_hash


@dataclass(frozen=True, slots=True)
class AuditReport:
    ok: bool
    checked: int  # rows whose links were verified
    first_broken_seq: int | None
    detail: str
    anchor_seq: int = 0  # the chain was checked from this seq (0: from genesis)
    gaps: tuple[tuple[int, int], ...] = ()  # (first, last) missing seqs left by database restores

    def raise_if_broken(self) -> None:
        if not self.ok:
            raise AuditError(self.detail)


def verify_chain(source: str | os.PathLike[str] | sqlite_utils.Database | sqlite3.Connection) -> AuditReport:
    """Check the hash chain of the event log in `source` (a path, a Database or a sqlite3 connection).

    Returns a report; raises StoreError only if the database cannot be read or holds no event log.
    """
    with _connection(source) as conn:
        try:
            return _verify(conn)
        except sqlite3.Error as err:
            raise StoreError(f"cannot read the event log: {err}") from err


@contextmanager
def _connection(
    source: str | os.PathLike[str] | sqlite_utils.Database | sqlite3.Connection,
) -> Iterator[sqlite3.Connection]:
    if isinstance(source, sqlite3.Connection):
        yield source
        return
    if isinstance(source, sqlite_utils.Database):
        yield source.conn
        return
    path = Path(source)
    if not path.is_file():
        raise StoreError(f"no database at {path}")
    try:
        # mode=rw: never create a file; nothing here writes. (Not mode=ro: reading a WAL database whose
        # last writer crashed needs to rebuild the -shm index.)
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True)
    except sqlite3.Error as err:
        raise StoreError(f"cannot open {path}: {err}") from err
    try:
        yield conn
    finally:
        conn.close()


def _verify(conn: sqlite3.Connection) -> AuditReport:
    has_log = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone()
    if has_log is None:
        raise StoreError("the database holds no event log (schema too old or not a menwei database)")
    anchor = conn.execute(
        "SELECT through_seq, hash FROM event_prunes ORDER BY through_seq DESC LIMIT 1"
    ).fetchone()
    anchor_seq, prev = (0, GENESIS_HASH) if anchor is None else (anchor[0], anchor[1])

    gaps: list[tuple[int, int]] = []

    def broken(seq: int, detail: str, checked: int) -> AuditReport:
        return AuditReport(False, checked, seq, f"seq {seq}: {detail}", anchor_seq, tuple(gaps))

    stale = conn.execute("SELECT min(seq) FROM events WHERE seq <= ?", (anchor_seq,)).fetchone()[0]
    if stale is not None:
        return broken(stale, f"row present although events through seq {anchor_seq} were pruned", 0)

    expected = anchor_seq + 1
    checked = 0
    rows = conn.execute(
        "SELECT seq, id, at, type, door, payload, prev_hash, hash FROM events WHERE seq > ? ORDER BY seq",
        (anchor_seq,),
    )
    for seq, event_id, at, kind, door, payload, prev_hash, digest in rows:
        if seq > expected and prev_hash == prev and _is_restore_alarm(payload):
            gaps.append((expected, seq - 1))
            expected = seq
        if seq != expected:
            missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
            return broken(
                expected, f"event(s) {missing} missing (deleted); next present is seq {seq}", checked
            )
        if prev_hash != prev:
            return broken(seq, "prev_hash does not match the hash of the event before it", checked)
        if chain_hash(prev_hash, event_id, seq, payload) != digest:
            return broken(seq, "hash does not match the row (payload, id or seq changed)", checked)
        mismatch = _columns_mismatch(payload, at, kind, door)
        if mismatch:
            return broken(seq, mismatch, checked)
        prev = digest
        expected += 1
        checked += 1

    last = expected - 1
    counter = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    if counter is not None and counter[0] > last:
        return broken(
            expected,
            f"event(s) {expected}..{counter[0]} missing at the end (seq counter is {counter[0]})",
            checked,
        )
    origin = "genesis" if anchor is None else f"prune anchor at seq {anchor_seq}"
    restored = "".join(f"; seqs {a}..{b} lost with a restored database" for a, b in gaps)
    return AuditReport(
        True,
        checked,
        None,
        f"{checked} events verified from {origin} to seq {last}{restored}",
        anchor_seq,
        tuple(gaps),
    )


def _is_restore_alarm(payload: str) -> bool:
    try:
        record = json.loads(payload)
    except ValueError:
        return False
    return (
        isinstance(record, dict) and record.get("type") == "alarm" and record.get("alarm") == "store_restored"
    )


def _columns_mismatch(payload: str, at: str, kind: str, door: str | None) -> str | None:
    try:
        record = json.loads(payload)
    except ValueError:
        return "payload is not JSON"
    if not isinstance(record, dict):
        return "payload is not a JSON object"
    for column, value in (("at", at), ("type", kind), ("door", door)):
        if record.get(column) != value:
            return f"column {column!r} is {value!r} but the payload says {record.get(column)!r}"
    return None
