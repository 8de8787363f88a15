"""Is a moment inside a weekly schedule? Evaluated in the site's local time, holidays and midnight included."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, timedelta

from edge.model import Interval, Schedule


def _day_intervals(schedule: Schedule, day: date, holidays: Collection[date]) -> tuple[Interval, ...]:
    if day in holidays:
        return schedule.holidays
    return schedule.weekly[day.weekday()]


def is_open(schedule: Schedule, local: datetime, holidays: Collection[date]) -> bool:
    """True when `local` (a naive or aware time already in the site's zone) falls in an interval.

    An interval that crosses midnight belongs to the day it starts on: Friday 22:00-06:00 covers Saturday
    02:00 even when Saturday is a holiday, and a holiday Friday's own intervals decide whether it applies.
    """
    minute = local.hour * 60 + local.minute
    today = local.date()
    for iv in _day_intervals(schedule, today, holidays):
        if iv.crosses_midnight:
            if minute >= iv.start:
                return True
        elif iv.start <= minute < iv.end:
            return True
    yesterday = today - timedelta(days=1)
    return any(
        iv.crosses_midnight and minute < iv.end for iv in _day_intervals(schedule, yesterday, holidays)
    )
