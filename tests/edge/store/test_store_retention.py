"""Retention: only synced events past their age go, in batches, and the audit chain still verifies; the
scheduled upkeep runs it (and the unknown-face snapshot limits) by itself."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drivers.face.snapshots import SNAPSHOT_DIR, SnapshotStore
from edge.config import FaceSection, GatewayConfig, RetentionSection, load_config
from edge.store import EventLog, verify_chain
from edge.store.retention import prune_synced_before
from edge.store.upkeep import DataUpkeep

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _fill(path: Path, ages_days: Sequence[float]) -> list[int]:
    """One event per age (oldest first); returns their seqs."""
    with EventLog(path) as log:
        futures = [
            log.append({"type": "decision", "at": (NOW - timedelta(days=d)).isoformat(), "n": i})
            for i, d in enumerate(ages_days)
        ]
        return [f.result().seq for f in futures]


def _mark_sent(path: Path, seqs: list[int]) -> None:
    with EventLog(path) as log:
        log.mark_sent(seqs)


def _seqs(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [s for (s,) in conn.execute("SELECT seq FROM events ORDER BY seq")]


def test_only_synced_old_events_are_pruned_in_batches_and_the_chain_verifies(tmp_path: Path) -> None:
    path = tmp_path / "menwei.db"
    seqs = _fill(path, [500] * 23 + [400] * 5 + [10] * 4)  # 28 old, 4 recent
    _mark_sent(path, seqs[:23] + seqs[28:])  # seqs 24..28 are old but were never sent
    result = prune_synced_before(path, NOW - timedelta(days=365), batch_size=5, pause=0)
    assert result.pruned == 23 and result.through_seq == 23
    assert result.batches == 5  # 5 + 5 + 5 + 5 + 3: the writer gets the database between them
    assert _seqs(path) == list(range(24, 33))  # the unsent old ones and the recent ones stay
    report = verify_chain(path)
    assert report.ok, report.detail
    assert report.anchor_seq == 23 and report.checked == 9


def test_an_unsent_event_stops_retention_even_with_older_sent_ones_after_it(tmp_path: Path) -> None:
    path = tmp_path / "menwei.db"
    seqs = _fill(path, [600] * 10)
    _mark_sent(path, seqs[:3] + seqs[4:])  # seq 4 never went out
    result = prune_synced_before(path, NOW - timedelta(days=365), batch_size=100, pause=0)
    assert result.pruned == 3
    assert _seqs(path) == list(range(4, 11))
    assert verify_chain(path).ok
    # Once seq 4 is sent, the rest goes; the new anchor still verifies.
    _mark_sent(path, [4])
    assert prune_synced_before(path, NOW - timedelta(days=365), pause=0).pruned == 7
    assert _seqs(path) == []
    report = verify_chain(path)
    assert report.ok and report.anchor_seq == 10, report.detail
    # New events chain on after the anchor.
    _fill(path, [1])
    assert verify_chain(path).ok and _seqs(path) == [11]


def test_retention_never_deletes_unsent_events_however_old(tmp_path: Path) -> None:
    path = tmp_path / "menwei.db"
    _fill(path, [3000] * 6)
    assert prune_synced_before(path, NOW, pause=0).pruned == 0
    assert _seqs(path) == list(range(1, 7))


def _config(data_dir: Path, **retention: object) -> GatewayConfig:
    cfg = load_config(ROOT / "config" / "demo.toml")
    return cfg.model_copy(
        update={
            "gateway": cfg.gateway.model_copy(update={"data_dir": data_dir}),
            "retention": RetentionSection.model_validate(retention),
            "face": FaceSection(pack_dir=data_dir / "pack", snapshots_keep=3, snapshots_max_age_days=7.0),
        }
    )


async def test_the_scheduled_upkeep_prunes_events_and_face_snapshots(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = data_dir / "menwei.db"
    now = datetime.now(UTC)
    with EventLog(path) as log:
        old = [log.append({"type": "x", "at": (now - timedelta(days=40)).isoformat()}) for _ in range(7)]
        new = log.append({"type": "x", "at": now.isoformat()})
        log.mark_sent([f.result().seq for f in old] + [new.result().seq])
    # Snapshots are pruned when one is saved; these were saved long ago and no face came since.
    snaps = SnapshotStore(data_dir / SNAPSHOT_DIR, max_files=3, max_age_seconds=7 * 86400)
    stale = snaps.save("unknown-lobby", b"jpeg", at=time.time() - 9 * 86400)
    fresh = snaps.save("unknown-lobby", b"jpeg")
    cfg = _config(data_dir, events_max_age_days=30.0, interval_hours=1.0, batch_size=10)
    stopping = asyncio.Event()
    upkeep = DataUpkeep(cfg, path, stopping, start_delay=0.0)
    task = asyncio.create_task(upkeep.run())
    deadline = time.monotonic() + 30
    while upkeep.last_retention is None or upkeep.last_backup is None:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    stopping.set()
    await task
    assert upkeep.last_retention is not None and upkeep.last_retention.pruned == 7
    assert _seqs(path) == [8]
    assert verify_chain(path).ok
    assert not stale.exists() and fresh.exists()
    assert upkeep.last_backup is not None  # the first backup too: none was recent
    assert os.listdir(data_dir / "backups") == [upkeep.last_backup.name]
