"""PINs are never held or logged in the clear: the cloud sends, and the gateway stores, only
HMAC-SHA256(site PIN key, PIN) in hex. A PIN typed at a keypad is hashed the moment it reaches the gateway, so
the decision, the event log and the upload all see the digest.

A per-person salted hash (argon2, bcrypt) would be stronger against a stolen database, but a keypad PIN alone
must be found by lookup among thousands; the keyed HMAC does that in O(1), and the key lives in the
credentials directory, not in the database.
"""

from __future__ import annotations

import hashlib
import hmac

MIN_KEY_BYTES = 16


def pin_digest(key: bytes, pin: str) -> str:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the site PIN key must be at least {MIN_KEY_BYTES} bytes")
    if not pin.isdigit():
        raise ValueError("a PIN is digits only")
    return hmac.new(key, pin.encode(), hashlib.sha256).hexdigest()
