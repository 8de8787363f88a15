"""The clock guard: no trusted time, no passes; the last-known-good time never moves backwards; a clock set
back or stepped is caught; the monotonic clock, not the wall clock, carries trusted time forward."""

from __future__ import annotations

from datetime import timedelta

from edge.passes.clock_guard import ClockGuard, kernel_ntp_synchronized

from .conftest import MONO, NOW, SKEW


def test_never_synced_is_untrusted() -> None:
    guard = ClockGuard(SKEW)
    assert not guard.is_trustworthy(NOW, MONO)
    assert guard.distrust(NOW, MONO) == "no trusted time since this gateway was installed"


def test_trusted_reading_makes_the_clock_trusted() -> None:
    guard = ClockGuard(SKEW)
    assert guard.observe_trusted_time(NOW, MONO, "ntp") is True
    assert guard.is_trustworthy(NOW, MONO) and guard.source == "ntp"


def test_last_known_good_never_moves_backwards() -> None:
    guard = ClockGuard(SKEW, last_known_good=NOW)
    assert guard.observe_trusted_time(NOW - timedelta(hours=1), MONO, "server") is False
    assert guard.last_known_good == NOW
    assert guard.observe_trusted_time(NOW + timedelta(hours=1), MONO, "server") is True
    assert guard.last_known_good == NOW + timedelta(hours=1)


def test_after_a_restart_only_the_floor_applies() -> None:
    guard = ClockGuard(SKEW, last_known_good=NOW)  # loaded from the store: no anchor in this process
    assert guard.is_trustworthy(NOW + timedelta(days=3), 5.0)  # time went on while powered off
    assert guard.is_trustworthy(NOW - SKEW, 5.0)  # inside the allowance
    assert not guard.is_trustworthy(NOW - SKEW - timedelta(seconds=1), 5.0)  # set back


def test_a_step_since_the_last_trusted_reading_is_caught() -> None:
    guard = ClockGuard(SKEW)
    guard.observe_trusted_time(NOW, MONO, "ntp")
    later = MONO + 3600
    assert guard.is_trustworthy(NOW + timedelta(seconds=3600), later)
    assert guard.is_trustworthy(NOW + timedelta(seconds=3600) + SKEW, later)  # drift inside the allowance
    assert not guard.is_trustworthy(NOW + timedelta(days=2), later)  # jumped forward
    assert "stepped" in (guard.distrust(NOW + timedelta(minutes=10), later) or "")  # set back, yet after LKG
    guard.observe_trusted_time(NOW + timedelta(days=2), later, "ntp")  # a new trusted reading re-anchors
    assert guard.is_trustworthy(NOW + timedelta(days=2), later)


def test_checkpoint_carries_the_trusted_time_not_the_wall_clock() -> None:
    guard = ClockGuard(SKEW)
    guard.observe_trusted_time(NOW, MONO, "ntp")
    assert guard.checkpoint(MONO + 600) is True
    assert guard.last_known_good == NOW + timedelta(seconds=600)
    assert guard.checkpoint(MONO + 600) is False
    assert ClockGuard(SKEW).checkpoint(MONO) is False  # no reading, nothing to carry


def test_kernel_probe_answers_without_changing_anything() -> None:
    assert kernel_ntp_synchronized() in (True, False, None)
