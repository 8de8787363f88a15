"""Weekly schedules in local time: plain intervals, intervals across midnight, holidays."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from edge.errors import AccessListError
from edge.model import Interval, Schedule
from edge.schedule import is_open

# 2026-01-05 is a Monday.
MON = date(2026, 1, 5)


def week(**days: str) -> tuple[tuple[Interval, ...], ...]:
    names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    return tuple(tuple(Interval.parse(x) for x in days[n].split(",")) if n in days else () for n in names)


def at(day: int, hhmm: str) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime(2026, 1, 5 + day, h, m)


def test_office_hours_inclusive_start_exclusive_end() -> None:
    s = Schedule("office", weekly=week(mon="08:00-18:00"))
    assert not is_open(s, at(0, "07:59"), ())
    assert is_open(s, at(0, "08:00"), ())
    assert is_open(s, at(0, "17:59"), ())
    assert not is_open(s, at(0, "18:00"), ())
    assert not is_open(s, at(1, "09:00"), ())  # Tuesday has no interval


def test_night_shift_crosses_midnight_into_next_day() -> None:
    s = Schedule("night", weekly=week(fri="22:00-06:00"))
    assert not is_open(s, at(4, "21:59"), ())
    assert is_open(s, at(4, "23:30"), ())
    assert is_open(s, at(5, "00:00"), ())  # Saturday early morning belongs to Friday's interval
    assert is_open(s, at(5, "05:59"), ())
    assert not is_open(s, at(5, "06:00"), ())
    assert not is_open(s, at(3, "02:00"), ())  # Thursday night is not covered


def test_sunday_night_wraps_to_monday() -> None:
    s = Schedule("sun", weekly=week(sun="23:00-01:00"))
    assert is_open(s, datetime(2026, 1, 12, 0, 30), ())  # Monday 00:30 after Sunday 11 Jan
    assert not is_open(s, datetime(2026, 1, 12, 1, 0), ())


def test_midnight_end_and_full_day() -> None:
    s = Schedule("x", weekly=week(mon="20:00-24:00", tue="00:00-24:00"))
    assert is_open(s, at(0, "23:59"), ())
    assert is_open(s, at(1, "00:00"), ())
    assert is_open(s, at(1, "23:59"), ())
    assert not is_open(s, at(2, "00:00"), ())


def test_holiday_replaces_the_weekday() -> None:
    s = Schedule("office", weekly=week(mon="08:00-18:00"), holidays=(Interval.parse("10:00-12:00"),))
    hol = {MON}
    assert not is_open(s, at(0, "09:00"), hol)
    assert is_open(s, at(0, "11:00"), hol)
    closed = Schedule("office", weekly=week(mon="08:00-18:00"))
    assert not is_open(closed, at(0, "11:00"), hol)  # no holiday intervals: closed on holidays


def test_interval_crossing_into_a_holiday_belongs_to_its_start_day() -> None:
    s = Schedule("night", weekly=week(fri="22:00-06:00"))
    saturday = date(2026, 1, 10)
    assert is_open(s, at(5, "02:00"), {saturday})  # Friday is a working day, so its night runs on
    friday = date(2026, 1, 9)
    assert not is_open(s, at(5, "02:00"), {friday})  # Friday is a holiday: its night interval never began


@pytest.mark.parametrize("bad", ["8-18", "08:00", "25:00-26:00", "08:61-09:00", "24:30-01:00", "x"])
def test_bad_interval_text_is_refused(bad: str) -> None:
    with pytest.raises(AccessListError):
        Interval.parse(bad)


def test_interval_str_round_trips() -> None:
    for text in ["08:00-18:00", "22:00-06:00", "00:00-24:00"]:
        assert str(Interval.parse(text)) == text


def test_schedule_needs_seven_days() -> None:
    with pytest.raises(AccessListError):
        Schedule("x", weekly=((),) * 6)
