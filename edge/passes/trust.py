"""The trust list: the public keys that may sign visitor passes for this site, by key id.

Why retirement is by the gateway's clock and never by the pass's issue time: `iat` is written by the signer,
so once a key is suspect a pass can claim any issue time. A key therefore verifies passes while the gateway's
(trusted) time is before its `retired_at`, and none from then on, whenever they were signed. Rotation without
cutting passes short (docs/passes.md, "Trust list"): publish the new key, sign with it, and set the old key's
`retired_at` to the switch time plus the longest pass lifetime. A compromised key gets `retired_at` = now.

Rules for updates (the cloud's full list arrives over MQTT, cloud_sync.pass_sync, through `replace`):
- a key id always names the same public key; an update that changes it is refused (TRUST_CONFLICT);
- retirement is final: once `retired_at` has passed, an update may bring it forward but not undo or postpone
  it; a retirement still in the future may be rescheduled or cancelled;
- keys are never forgotten: an active key left out of a full list is retired as of now, and a retired one is
  kept, so an older list replayed later cannot bring either back.

The gateway's own walk-in key is added with `add_local`: in memory only, so the gateway can verify the passes
it issues while offline. A key the cloud's list names (by the same id) overrides the local entry.

Verification keys are built once per key and cached: the hot path does a dict lookup, not key parsing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.passes.errors import PassError, PassErrorReason
from edge.passes.token import MAX_KID_BYTES

KID_BYTES = 4
PUBLIC_KEY_BYTES = 32
CLOUD = "cloud"


class KeyState(StrEnum):
    ACTIVE = "active"  # verifies passes (a retirement may be scheduled)
    RETIRED = "retired"  # verifies nothing


def key_id(public_key: bytes) -> bytes:
    """The default key id of a raw Ed25519 public key: the first 4 bytes of its SHA-256.

    Four bytes is plenty to tell a site's few keys apart; the signature, not the id, is what is trusted.
    """
    return hashlib.sha256(public_key).digest()[:KID_BYTES]


@dataclass(frozen=True, slots=True)
class TrustedKey:
    kid: bytes
    public_key: bytes  # raw Ed25519 public key, 32 bytes
    issuer: str = CLOUD  # "cloud", or "gateway:<id>" for a gateway's walk-in key
    retired_at: datetime | None = None  # from this instant on the key verifies nothing

    def __post_init__(self) -> None:
        if not 1 <= len(self.kid) <= MAX_KID_BYTES:
            raise PassError(PassErrorReason.TRUST_CONFLICT, f"key id must be 1-{MAX_KID_BYTES} bytes")
        if len(self.public_key) != PUBLIC_KEY_BYTES:
            raise PassError(PassErrorReason.TRUST_CONFLICT, "an Ed25519 public key is 32 bytes")
        if self.retired_at is not None and self.retired_at.tzinfo is None:
            raise PassError(PassErrorReason.TRUST_CONFLICT, "retired_at must be timezone-aware")

    def state_at(self, now: datetime) -> KeyState:
        if self.retired_at is not None and now >= self.retired_at:
            return KeyState.RETIRED
        return KeyState.ACTIVE


class TrustList:
    """The keys in force, in memory. Not thread-safe: owned by the event loop like the access list."""

    def __init__(self, keys: Iterable[TrustedKey] = (), version: int = 0) -> None:
        self.version = version
        self._keys: dict[bytes, TrustedKey] = {}
        self._local: dict[bytes, TrustedKey] = {}
        self._verifiers: dict[bytes, Ed25519PublicKey] = {}
        for key in keys:
            self._put(key)

    def load(self, keys: Iterable[TrustedKey], version: int) -> None:
        """Replace the contents with stored keys as they are (no update rules: they were applied before)."""
        self._keys.clear()
        self._verifiers = {kid: v for kid, v in self._verifiers.items() if kid in self._local}
        for key in keys:
            self._put(key)
        self.version = version

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self) -> list[TrustedKey]:
        """The synced keys (not the local one), as stored."""
        return list(self._keys.values())

    def get(self, kid: bytes) -> TrustedKey | None:
        return self._keys.get(kid) or self._local.get(kid)

    def verifier(self, kid: bytes) -> Ed25519PublicKey | None:
        return self._verifiers.get(kid)

    def add_local(self, key: TrustedKey) -> None:
        """Trust the gateway's own walk-in key, unless the synced list already says something about it."""
        if key.kid in self._keys:
            if self._keys[key.kid].public_key != key.public_key:
                raise PassError(PassErrorReason.TRUST_CONFLICT, f"key id {key.kid.hex()} names another key")
            return
        self._local[key.kid] = key
        self._verifiers[key.kid] = Ed25519PublicKey.from_public_bytes(key.public_key)

    def merge(self, key: TrustedKey, now: datetime) -> TrustedKey:
        """Add or update one key by the rules above; returns the key as now held."""
        old = self._keys.get(key.kid) or self._local.get(key.kid)
        if old is not None and old.public_key != key.public_key:
            raise PassError(
                PassErrorReason.TRUST_CONFLICT, f"key id {key.kid.hex()} already names another key"
            )
        merged = key
        if old is not None and old.retired_at is not None and old.retired_at <= now:
            merged = replace(key, retired_at=min(old.retired_at, key.retired_at or old.retired_at))
        self._local.pop(key.kid, None)
        self._put(merged)
        return merged

    def retire(self, kid: bytes, at: datetime, now: datetime) -> TrustedKey:
        key = self._keys.get(kid)
        if key is None:
            raise PassError(PassErrorReason.TRUST_CONFLICT, f"no synced key with id {kid.hex()}")
        return self.merge(replace(key, retired_at=at), now)

    def replace(self, keys: Iterable[TrustedKey], version: int, now: datetime) -> list[TrustedKey]:
        """Apply a full list from the cloud. Checks every key before changing anything; returns the keys as
        now held (to be stored)."""
        incoming = {k.kid: k for k in keys}
        for kid, key in incoming.items():
            old = self._keys.get(kid) or self._local.get(kid)
            if old is not None and old.public_key != key.public_key:
                raise PassError(
                    PassErrorReason.TRUST_CONFLICT, f"key id {kid.hex()} already names another key"
                )
        for key in incoming.values():
            self.merge(key, now)
        for kid, key in list(self._keys.items()):
            if kid not in incoming and key.state_at(now) is KeyState.ACTIVE:
                self._put(replace(key, retired_at=now))
        self.version = version
        return self.keys()

    def _put(self, key: TrustedKey) -> None:
        self._keys[key.kid] = key
        if key.kid not in self._verifiers:
            self._verifiers[key.kid] = Ed25519PublicKey.from_public_bytes(key.public_key)
