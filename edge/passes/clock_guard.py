"""Can the gateway trust its own clock? Visitor passes are time windows, so a clock set back re-opens expired
passes; when in doubt, passes fail closed (Reason.CLOCK_UNTRUSTED).

Two pieces of evidence:
- the last-known-good time (LKG), persisted, never moving backwards. It rises when a trusted reading arrives
  (the kernel says NTP has synchronised the clock, or a signed server time comes in a sync message: that is
  `observe_trusted_time`), and at each housekeeping `checkpoint` to the last trusted reading carried forward
  by the monotonic clock. A wall clock earlier than LKG (less the skew allowance) was set back.
- the anchor: the last trusted reading in this process and the monotonic time it was taken at. The monotonic
  clock cannot be set, so `now - (anchor + elapsed)` is exactly how far the wall clock was stepped since; a
  step larger than the skew allowance makes the clock untrusted until the next trusted reading.

Why the checkpoint uses the anchor and not the wall clock: promoting the wall clock to "known good" would let
one bad forward jump (an RTC that booted in 2040) raise LKG for good, and every pass would then fail until
2040. A gateway that has never had a trusted reading does not trust its clock at all.

All of this is arithmetic in memory; persisting LKG is the caller's job (it is told when LKG moved).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from datetime import datetime, timedelta

log = logging.getLogger(__name__)

STATE_KEY = "pass_clock_lkg"
_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
_TIMEX_BYTES = 512  # larger than struct timex on every Linux ABI; modes = 0 means read only


class ClockGuard:
    def __init__(self, skew: timedelta, last_known_good: datetime | None = None) -> None:
        if skew < timedelta(0):
            raise ValueError("skew must not be negative")
        self.skew = skew
        self.last_known_good = last_known_good
        self.source: str | None = None  # what gave the last trusted reading: "ntp", "server", ...
        self._anchor: tuple[datetime, float] | None = None

    def observe_trusted_time(self, t: datetime, mono: float, source: str) -> bool:
        """A trusted reading of the time `t`, taken at monotonic time `mono`. True when LKG moved forward
        (persist it)."""
        if t.tzinfo is None:
            raise ValueError("trusted time must be timezone-aware")
        self._anchor = (t, mono)
        self.source = source
        if self.last_known_good is not None and t < self.last_known_good - self.skew:
            log.warning(
                "trusted time from %s (%s) is before the last-known-good time %s: passes stay refused",
                source,
                t.isoformat(),
                self.last_known_good.isoformat(),
            )
        return self._raise_lkg(t)

    def checkpoint(self, mono: float) -> bool:
        """Carry LKG forward to the last trusted reading plus the monotonic time since. True when it moved."""
        estimate = self.estimate(mono)
        return estimate is not None and self._raise_lkg(estimate)

    def estimate(self, mono: float) -> datetime | None:
        """The time now by the last trusted reading and the monotonic clock; None without a reading."""
        if self._anchor is None:
            return None
        t, at = self._anchor
        return t + timedelta(seconds=mono - at)

    def distrust(self, now: datetime, mono: float) -> str | None:
        """None if the wall clock `now` can be trusted, else why not (for logs and the refusal's detail)."""
        if self.last_known_good is None:
            return "no trusted time since this gateway was installed"
        if now < self.last_known_good - self.skew:
            return f"clock is behind the last-known-good time {self.last_known_good.isoformat()}"
        estimate = self.estimate(mono)
        if estimate is not None and abs(now - estimate) > self.skew:
            return (
                f"clock was stepped by {(now - estimate).total_seconds():+.0f} s since the last trusted time"
            )
        return None

    def is_trustworthy(self, now: datetime, mono: float) -> bool:
        return self.distrust(now, mono) is None

    def _raise_lkg(self, t: datetime) -> bool:
        if self.last_known_good is None or t > self.last_known_good:
            self.last_known_good = t
            return True
        return False


def kernel_ntp_synchronized() -> bool | None:
    """Whether the kernel reports the clock synchronised by NTP (chrony, systemd-timesyncd, ntpd), read with
    adjtimex(2) without changing anything. None where that cannot be asked (not Linux, no libc)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        timex = ctypes.create_string_buffer(_TIMEX_BYTES)
        state = int(libc.adjtimex(timex))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR
