"""The gateway's scheduled data upkeep: retention (events and unknown-face snapshots) and backups.

Two asyncio tasks the gateway starts with itself (`Gateway.start` spawns `run`); the work runs in threads
(asyncio.to_thread), so the doors never wait on it. Each job runs soon after start (`start_delay`, so it does
not compete with the start-up itself), then every interval. A failing job is logged as an error and tried
again at the next interval; it never stops the gateway. On stop, a retention run ends after its current batch;
a backup in progress finishes (it holds only a read transaction).

Backups: the first is taken soon after start only if the newest one is older than the interval (a gateway
restarted every hour does not write a backup every hour), then every interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drivers.face.snapshots import SNAPSHOT_DIR, SnapshotStore
from edge.config import GatewayConfig
from edge.errors import StoreError
from edge.store.backup import backup_time, list_backups, take_backup
from edge.store.retention import RetentionResult, prune_synced_before

log = logging.getLogger(__name__)

BACKUP_DIR = "backups"
RETRY_SECONDS = 3600.0  # a failed backup is tried again after this long at the latest


def backup_dir(config: GatewayConfig) -> Path:
    """[backup] dir, relative to the data directory; default <data_dir>/backups."""
    data_dir = config.gateway.data_dir
    configured = config.backup.dir
    return data_dir / BACKUP_DIR if configured is None else data_dir / configured


class DataUpkeep:
    def __init__(
        self, config: GatewayConfig, db_path: Path, stopping: asyncio.Event, *, start_delay: float = 60.0
    ) -> None:
        self.config = config
        self.db_path = db_path
        self.stopping = stopping
        self.start_delay = start_delay
        self.backup_dir = backup_dir(config)
        self._stop_thread = threading.Event()  # ends a retention run between two batches
        face = config.face
        self.snapshots = (
            SnapshotStore(
                config.gateway.data_dir / SNAPSHOT_DIR,
                max_files=face.snapshots_keep,
                max_age_seconds=face.snapshots_max_age_days * 86400,
            )
            if face is not None
            else None
        )
        self.last_retention: RetentionResult | None = None
        self.last_backup: Path | None = None

    async def run(self) -> None:
        """Both jobs until the gateway stops."""
        jobs = [self._retention_loop()]
        if self.config.backup.enabled:
            jobs.append(self._backup_loop())
        watcher = asyncio.ensure_future(self._stop_on(self.stopping))
        try:
            await asyncio.gather(*jobs)
        finally:
            watcher.cancel()

    async def _stop_on(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
        self._stop_thread.set()

    async def _sleep(self, seconds: float) -> bool:
        """Wait `seconds`; False if the gateway is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), max(seconds, 0.0))
        return not self.stopping.is_set()

    # --- retention ---------------------------------------------------------------------------------------

    async def _retention_loop(self) -> None:
        interval = self.config.retention.interval_hours * 3600
        delay = self.start_delay
        while await self._sleep(delay):
            try:
                await asyncio.to_thread(self.retention_once)
            except Exception:  # the task's boundary: log, try again next time
                log.exception("retention run failed; trying again in %.0f s", interval)
            delay = interval

    def retention_once(self, now: datetime | None = None) -> RetentionResult:
        """One retention run (blocking): synced events past their age, then face snapshots past theirs."""
        now = now or datetime.now(UTC)
        retention = self.config.retention
        cutoff = now - timedelta(days=retention.events_max_age_days)
        result = prune_synced_before(
            self.db_path,
            cutoff,
            batch_size=retention.batch_size,
            synchronous=self.config.store.synchronous,
            stop=self._stop_thread,
        )
        self.last_retention = result
        if self.snapshots is not None:
            removed = self.snapshots.prune(now.timestamp())
            if removed:
                log.info("retention: deleted %d unknown-face snapshots", removed)
        return result

    # --- backups -----------------------------------------------------------------------------------------

    async def _backup_loop(self) -> None:
        interval = self.config.backup.interval_hours * 3600
        newest = await asyncio.to_thread(list_backups, self.backup_dir)
        taken = backup_time(newest[0]) if newest else None
        age = (datetime.now(UTC) - taken).total_seconds() if taken else None
        delay = self.start_delay if age is None or age >= interval else max(self.start_delay, interval - age)
        while await self._sleep(delay):
            try:
                self.last_backup = await asyncio.to_thread(self.backup_once)
                delay = interval
            except (StoreError, OSError):
                delay = min(interval, RETRY_SECONDS)
                log.exception("backup failed; trying again in %.0f s", delay)

    def backup_once(self, now: datetime | None = None) -> Path:
        """One backup (blocking); raises StoreError or OSError if it failed."""
        return take_backup(self.db_path, self.backup_dir, keep=self.config.backup.keep, now=now)
