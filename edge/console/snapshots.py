"""Face snapshots for the console: which event refers to one, and where its file is.

A face camera keeps a small JPEG of an unknown face or a spoof attempt on the gateway (drivers/face/
snapshots.py) and the gateway's alarm names it in its detail ("...; snapshot <file> kept on the gateway");
the picture itself is never in an event and never leaves the box. The console adds the file name to the
records it shows as "snapshot", and serves the picture to logged-in staff only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

SNAPSHOT_DIR = "face-snapshots"  # under the data directory, as drivers.face.snapshots keeps them
# The file names SnapshotStore.save writes: <ms since epoch, 15 digits>-<kind>-<reader id>.jpg. Nothing else
# (no '/', no '..') is ever looked up.
_NAME = re.compile(r"\d{15}-[a-z]+-[A-Za-z0-9_-]{1,64}\.jpg")
_IN_DETAIL = re.compile(r"snapshot (\S+) kept on the gateway")


def snapshot_name(record: dict[str, Any]) -> str | None:
    """The snapshot file an event record refers to, if any and well-formed."""
    if record.get("type") != "alarm":
        return None
    found = _IN_DETAIL.search(str(record.get("detail", "")))
    if found is None or not _NAME.fullmatch(found.group(1)):
        return None
    return found.group(1)


def with_snapshot(record: dict[str, Any]) -> dict[str, Any]:
    """The record, with "snapshot": <file name> added when it refers to one."""
    name = snapshot_name(record)
    return {**record, "snapshot": name} if name else record


def snapshot_path(data_dir: Path, name: str) -> Path | None:
    """The file of a snapshot name taken from a record, or None if the name is not one we write."""
    return data_dir / SNAPSHOT_DIR / name if _NAME.fullmatch(name) else None
