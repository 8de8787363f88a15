"""Remote commands: refuse the stale, the early and the replayed before anything moves at a door.

A command opens doors, so a copy of one must never work twice, and an old one must never work late (a
message held in a broker queue while the gateway was offline can be hours old by the time it arrives):

- Time: a command is refused as "expired" once `now > expires_at + skew`, and as "invalid" when it claims to
  be issued more than `skew` in the future, expires before it was issued, or expires more than
  MAX_LIFETIME ahead (remote actions are meant to happen within seconds; a far expiry only widens the window
  in which a captured command is dangerous, and would let the replay cache grow without bound).
- Replay: every accepted command id is remembered until `expires_at + skew`, after which the time check alone
  refuses it. The cache is persisted (the state table, key REPLAY_KEY) before the command is carried out, so
  a restart cannot be used to replay; a crash between the two loses the command rather than doing it twice
  (at most once). The cache is bounded (REPLAY_CAPACITY live ids); when full, new commands are refused
  ("failed") rather than old ids forgotten, because forgetting would re-open a replay window.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cloud_sync.messages import CommandBase

from edge.store.db import Synchronous, open_db
from edge.store.state import get_state, put_state

log = logging.getLogger(__name__)

MAX_LIFETIME = timedelta(hours=1)
REPLAY_CAPACITY = 10_000
REPLAY_KEY = "command_replay"

TimeError = Literal["expired", "invalid"]


def check_time(cmd: CommandBase, now: datetime, skew: float) -> tuple[TimeError, str] | None:
    """Why the command must be refused on its times, or None."""
    allowance = timedelta(seconds=skew)
    if cmd.expires_at < cmd.issued_at:
        return "invalid", "expires before it was issued"
    if now > cmd.expires_at + allowance:
        return "expired", f"expired {(now - cmd.expires_at).total_seconds():.0f} s ago"
    if cmd.issued_at > now + allowance:
        return "invalid", "issued in the future (clocks out of step?)"
    if cmd.expires_at > now + allowance + MAX_LIFETIME:
        return "invalid", f"expires more than {MAX_LIFETIME.total_seconds():.0f} s ahead"
    return None


class ReplayCache:
    """Command ids already accepted, each with the time after which it no longer needs remembering."""

    def __init__(self, capacity: int = REPLAY_CAPACITY) -> None:
        self.capacity = capacity
        self._forget_after: dict[str, datetime] = {}

    def __len__(self) -> int:
        return len(self._forget_after)

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._forget_after

    def prune(self, now: datetime) -> int:
        stale = [cid for cid, t in self._forget_after.items() if t < now]
        for cid in stale:
            del self._forget_after[cid]
        return len(stale)

    def add(self, command_id: str, forget_after: datetime, now: datetime) -> bool:
        """Remember the id; False (and nothing remembered) when the cache is full of live ids."""
        if len(self._forget_after) >= self.capacity:
            self.prune(now)
            if len(self._forget_after) >= self.capacity:
                return False
        self._forget_after[command_id] = forget_after
        return True

    def discard(self, command_id: str) -> None:
        self._forget_after.pop(command_id, None)

    def to_state(self) -> dict[str, str]:
        return {cid: t.isoformat() for cid, t in self._forget_after.items()}

    @classmethod
    def from_state(cls, value: object, capacity: int = REPLAY_CAPACITY) -> ReplayCache:
        """Tolerant of damage: an unreadable entry is skipped (and logged), never a reason not to start."""
        cache = cls(capacity)
        if not isinstance(value, Mapping):
            if value is not None:
                log.warning("stored command replay cache is not a mapping; starting empty")
            return cache
        bad = 0
        for cid, text in value.items():
            try:
                t = datetime.fromisoformat(str(text))
            except ValueError:
                bad += 1
                continue
            if t.tzinfo is None:
                bad += 1
                continue
            cache._forget_after[str(cid)] = t
        if bad:
            log.warning("skipped %d unreadable entries of the stored command replay cache", bad)
        return cache


def load_replay_cache(db_path: Path, synchronous: Synchronous) -> ReplayCache:
    db = open_db(db_path, synchronous=synchronous)
    try:
        value: Any = get_state(db, REPLAY_KEY)
    finally:
        db.close()
    return ReplayCache.from_state(value)


def save_replay_cache(db_path: Path, synchronous: Synchronous, state: dict[str, str]) -> None:
    db = open_db(db_path, synchronous=synchronous)
    try:
        put_state(db, REPLAY_KEY, state)
    finally:
        db.close()
