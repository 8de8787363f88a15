"""The rotating BLE token and its offline verifier.

    step  = floor(unix_time / 30)
    token = HMAC-SHA256(resident_key, b"menwei-ble-v1" || step as 8 bytes big-endian)[:8]
    manufacturer data (under our company id) = 0x01 (version) || token

No identifier travels in the clear: a token is unlinkable to the next one without the key. The verifier keeps
a table of the tokens every known key produces for the steps now-1, now and now+1 (3 HMACs per key per step,
so 10,000 residents cost 30,000 HMACs every 30 s), so an advertisement is one dictionary lookup. Each
(key, step) is accepted once: the phone repeats its advertisement many times a second, and a token replayed
by someone who recorded it is refused. A stolen key is a stolen phone key: revoke it by removing it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import Counter
from collections.abc import Mapping

VERSION = 1
STEP_SECONDS = 30
TOKEN_BYTES = 8
KEY_BYTES = 32
_LABEL = b"menwei-ble-v1"


def time_step(unix_time: float, step_seconds: int = STEP_SECONDS) -> int:
    return math.floor(unix_time / step_seconds)


def token(key: bytes, step: int) -> bytes:
    return hmac.new(key, _LABEL + step.to_bytes(8, "big", signed=True), hashlib.sha256).digest()[:TOKEN_BYTES]


def payload(key: bytes, unix_time: float, step_seconds: int = STEP_SECONDS) -> bytes:
    """What the phone puts in its manufacturer data right now."""
    return bytes([VERSION]) + token(key, time_step(unix_time, step_seconds))


class TokenVerifier:
    def __init__(
        self, keys: Mapping[str, bytes], *, step_seconds: int = STEP_SECONDS, drift_steps: int = 1
    ) -> None:
        self.step_seconds = step_seconds
        self.drift_steps = drift_steps
        self.counters: Counter[str] = Counter()  # accepted, repeated, unknown, malformed
        self._keys = dict(keys)
        self._table: dict[bytes, tuple[str, int]] = {}
        self._table_step: int | None = None
        self._used: set[tuple[str, int]] = set()

    def set_keys(self, keys: Mapping[str, bytes]) -> None:
        """Replace the key set (a resident added or revoked); takes effect at the next verification."""
        self._keys = dict(keys)
        self._table_step = None

    def verify(self, data: bytes, unix_time: float) -> str | None:
        """The key id whose token this is, the first time it is seen within +-drift steps; else None."""
        if len(data) != 1 + TOKEN_BYTES or data[0] != VERSION:
            self.counters["malformed"] += 1
            return None
        now = time_step(unix_time, self.step_seconds)
        if self._table_step != now:
            self._rebuild(now)
        found = self._table.get(bytes(data[1:]))
        if found is None:
            self.counters["unknown"] += 1
            return None
        if found in self._used:
            self.counters["repeated"] += 1
            return None
        self._used.add(found)
        self.counters["accepted"] += 1
        return found[0]

    def _rebuild(self, now: int) -> None:
        steps = range(now - self.drift_steps, now + self.drift_steps + 1)
        self._table = {token(key, s): (key_id, s) for key_id, key in self._keys.items() for s in steps}
        self._used = {(key_id, s) for key_id, s in self._used if s >= now - self.drift_steps}
        self._table_step = now
