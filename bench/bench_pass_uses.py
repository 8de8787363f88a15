"""What one visitor pass use writes to the database, with a big use ledger: today's rows against the old JSON.

A site with ~100 visitor passes a day holds ~36,000 ledger entries after a year. Before migration 9 every
granted pass use rewrote the whole ledger as JSON twice: the totals (state key `pass_uses`, written by the
gateway) and the per-gateway counts (`pass_use_ledger`, written by the pass runtime's flush), each its own
commit. Now the runtime upserts the one (pass, gateway) row that changed (edge.store.use_store). Both are
measured in the same run on databases holding the same ledger: the baseline reproduces the old two writes
with the same store helpers the old code used (put_state), the new path is the runtime's own write.

Per use, for synchronous = full and normal: bytes that reached the block layer (/proc/self/io write_bytes,
including the automatic checkpoints during the run), the final wal_checkpoint(TRUNCATE) on top, bytes handed
to write() (wchar) and rows changed (sqlite total_changes).

    .venv/bin/python bench/bench_pass_uses.py [--entries 36000] [--uses 40] [--dir DIR]

Run it with --dir on the gateway's data card to get the card's numbers; the default is a temp dir.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.passes.uses import UseLedger, UseReport
from edge.store.db import Synchronous, open_db, transaction
from edge.store.state import put_state
from edge.store.use_store import save_use_rows

GW = "gw-gate"
PEERS = ("gw-north", "gw-south")
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def io() -> dict[str, int]:
    with open("/proc/self/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f)}


def ledger_of(entries: int) -> UseLedger:
    """`entries` (pass, gateway) counts: each pass used here once, every third also at a peer."""
    ledger = UseLedger(GW, {})
    n = i = 0
    while n < entries:
        pass_id = f"V-{i:010d}"
        ledger.record_local(pass_id, NOW, expires=NOW + timedelta(hours=4), seen=NOW)
        n += 1
        if i % 3 == 0 and n < entries:
            ledger.merge(UseReport(pass_id, PEERS[i % 2], 1, NOW), seen=NOW)
            n += 1
        i += 1
    ledger.take_changes()
    return ledger


def measure(path: Path, sync: Synchronous, uses: int, use: Callable[[int], int]) -> dict[str, float]:
    io0 = io()
    rows = sum(use(k) for k in range(uses))
    io1 = io()
    db = open_db(path, synchronous=sync)
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    io2 = io()
    return {
        "written": (io1["write_bytes"] - io0["write_bytes"]) / uses,
        "checkpoint": (io2["write_bytes"] - io1["write_bytes"]) / uses,
        "wchar": (io1["wchar"] - io0["wchar"]) / uses,
        "rows": rows / uses,
    }


def run(base: Path, entries: int, uses: int, sync: Synchronous) -> tuple[dict[str, float], dict[str, float]]:
    old_path, new_path = base / f"old-{sync}.db", base / f"new-{sync}.db"
    old, new = ledger_of(entries), ledger_of(entries)
    db = open_db(old_path, synchronous=sync)  # the old layout: two JSON values
    put_state(db, "pass_uses", dict(old.totals))
    put_state(db, "pass_use_ledger", old.to_state())
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    db = open_db(new_path, synchronous=sync)  # rows
    save_use_rows(db, new.rows())
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()

    def old_use(k: int) -> int:
        old.record_local(f"V-NEW-{k:06d}", NOW)
        changed = 0
        db = open_db(old_path, synchronous=sync)  # Gateway.present: _save_state("pass_uses", totals)
        try:
            before = db.conn.total_changes
            put_state(db, "pass_uses", dict(old.totals))
            changed += db.conn.total_changes - before
        finally:
            db.close()
        db = open_db(old_path, synchronous=sync)  # PassRuntime flush: put_state(ledger) in a transaction
        try:
            before = db.conn.total_changes
            with transaction(db):
                put_state(db, "pass_use_ledger", old.to_state())
            changed += db.conn.total_changes - before
        finally:
            db.close()
        return changed

    def new_use(k: int) -> int:
        new.record_local(f"V-NEW-{k:06d}", NOW, expires=NOW + timedelta(hours=4), seen=NOW)
        changes = new.take_changes()
        db = open_db(new_path, synchronous=sync)  # PassRuntime flush: the changed rows in a transaction
        try:
            with transaction(db):
                return save_use_rows(db, changes.rows, changes.forgotten)
        finally:
            db.close()

    return measure(old_path, sync, uses, old_use), measure(new_path, sync, uses, new_use)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=36_000)
    ap.add_argument("--uses", type=int, default=40)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = Path(tmp)
        print(
            f"pass uses: bytes written per use with {args.entries:,} ledger entries, {args.uses} uses "
            "(/proc/self/io; baseline = the old JSON writes, same run)"
        )
        print(
            f"    {'synchronous':<11}  {'layout':<22}  {'KB/use':>9}  {'+ckpt KB':>9}  {'write() KB':>10}"
            f"  {'rows/use':>8}  {'ratio':>7}"
        )
        for sync in ("full", "normal"):
            old, new = run(base, args.entries, args.uses, sync)
            for name, m in (("old: 2 JSON values", old), ("new: rows", new)):
                total, base_total = m["written"] + m["checkpoint"], old["written"] + old["checkpoint"]
                print(
                    f"    {sync:<11}  {name:<22}  {m['written'] / 1024:>9.1f}  {m['checkpoint'] / 1024:>9.1f}"
                    f"  {m['wchar'] / 1024:>10.1f}  {m['rows']:>8.1f}  {total / base_total:>7.4f}"
                )


if __name__ == "__main__":
    main()
