"""Unknown-face and presentation-attack snapshots, kept on the gateway under a retention limit.

Why kept, why bounded: a guard reviewing "someone lingered at the lobby door at 02:13" needs to see who it
was; but these are pictures of people who never consented to anything, so they stay small (a cropped face,
at most 160 px), on this box only (nothing here uploads them; the cloud contract has no message for them), and
are deleted after `max_age_seconds` or when more than `max_files` are kept, oldest first.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

SNAPSHOT_DIR = "face-snapshots"  # under the data directory


class SnapshotStore:
    def __init__(self, directory: Path, *, max_files: int = 500, max_age_seconds: float = 7 * 86400) -> None:
        self.directory = directory
        self.max_files = max_files
        self.max_age_seconds = max_age_seconds

    def save(self, label: str, jpeg: bytes, at: float | None = None) -> Path:
        """Write one snapshot (label: e.g. 'unknown-lobby-in') and apply the retention limits."""
        at = time.time() if at is None else at
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / f"{int(at * 1000):015d}-{label}.jpg"
        tmp = path.with_suffix(".tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(jpeg)
        tmp.replace(path)
        self.prune(at)
        return path

    def files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.jpg"))

    def prune(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        files = self.files()
        doomed = files[: max(0, len(files) - self.max_files)]
        doomed += [
            p
            for p in files[len(doomed) :]
            if now - int(p.name.split("-", 1)[0]) / 1000 > self.max_age_seconds
        ]
        for path in doomed:
            path.unlink(missing_ok=True)
        if doomed:
            log.debug("face snapshots: %d deleted by retention", len(doomed))
        return len(doomed)
