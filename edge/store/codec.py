"""How values are written as SQLite text, in one place so every table agrees.

- JSON is canonical (sorted keys, no spaces, UTF-8 kept, no NaN): the event log hashes payload text, so the
  same record must always serialise to the same bytes, and the text must be JSON any other system can read.
- Datetimes are ISO-8601 with their UTC offset. A naive datetime is refused rather than guessed at: the
  gateway compares validity windows across time zones, and a value without an offset would be read back as a
  different instant. Only the offset survives a round trip, not a zone name (ZoneInfo("Asia/Shanghai") comes
  back as UTC+08:00); the instant is the same, so comparisons are unaffected.
"""

from __future__ import annotations

import json
from datetime import date, datetime

from edge.errors import StoreError


def canonical_json(value: object) -> str:
    """The one JSON spelling of `value`. Raises TypeError / ValueError for what JSON cannot hold."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dt_to_text(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(f"refusing to store naive datetime {value.isoformat()}: it needs a UTC offset")
    return value.isoformat()


def dt_to_text_or_none(value: datetime | None) -> str | None:
    return None if value is None else dt_to_text(value)


def text_to_dt(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise StoreError(f"stored datetime {text!r} has no UTC offset")
    return value


def text_to_dt_or_none(text: str | None) -> datetime | None:
    return None if text is None else text_to_dt(text)


def date_to_text(value: date) -> str:
    return value.isoformat()


def text_to_date(text: str) -> date:
    return date.fromisoformat(text)
