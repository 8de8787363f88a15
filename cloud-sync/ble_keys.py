"""BLE phone keys over the cloud link: the gateway's full key list comes down, is sealed at rest, and feeds
every BLE reader.

    menwei/v1/{site}/{gateway}/ble/keys   down, retained   BleKeyList -> ble-keys.sealed -> BleReader.set_keys

Why these shapes (docs/contract.md, "BLE phone keys"):

- A full list with a version, not delta ops: a gateway holds a few hundred to a few thousand 32-byte keys, so
  the whole list is a small message, applying it is idempotent, and there is no sequence to lose (a missed
  delta would need a resync path of its own). A list at or below the version held is a re-delivery (the
  retained copy comes again on every connect) and is ignored; so an old list can never bring a revoked key
  back. Per gateway (not site-wide): a key is a secret, and each gateway gets only the phones of its doors.
- The person need not be in the access list: keys and the access list travel separately and may arrive in
  either order. The decision needs the person's `ble` credential (value = key id) in the access list anyway,
  so a key without a credential opens nothing; a credential without a key is never read.
- Sealed at rest: a stolen SD card must not hand out residents' phone keys. The list is stored as one
  AES-256-GCM blob (fresh 96-bit nonce per write, site and gateway as associated data, so a file copied to
  another gateway does not open) under the 32-byte credential `ble-key-store` ($CREDENTIALS_DIRECTORY or
  $MENWEI_SECRET_BLE_KEY_STORE). Without that credential a key list is refused ("rejected"): keys are never
  written in the clear. The file is replaced atomically (write, fsync, rename), then the readers get the keys,
  so what runs is always what a restart would load.
- Which keys a reader gets: the active ones whose `valid_until` has not passed. Revoked or left-out keys are
  gone from the reader's verifier at once (set_keys replaces the whole set); an expiry is re-applied by a timer
  at the earliest `valid_until`. Until a cloud list is held, a reader keeps the keys of its `keys_credential`
  file (the fallback); once one is held, the cloud's list replaces them, on start-up as on arrival.
- A refused message is refused like every down message (Downlink._refuse): one warning line, a
  SyncErrorEvent, an ErrorReport on `errors`; nothing it carried is applied or stored.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Literal

from cloud_sync.link import Incoming
from cloud_sync.messages import BleKeyList
from cloud_sync.topics import Topics
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import ValidationError

from drivers.ble.reader import BleReader
from edge.errors import ConfigError
from edge.gateway import Gateway
from edge.secrets import read_secret_bytes

log = logging.getLogger(__name__)

STORE_FILE = "ble-keys.sealed"
STORE_KEY_CREDENTIAL = "ble-key-store"
_MAGIC = b"MBK1"  # format of the sealed file: magic || nonce (12) || AES-GCM(json of the BleKeyList)

Refuse = Callable[[str, Literal["wrong_site", "rejected"], str], None]  # (topic, error code, detail)
RefuseInvalid = Callable[[str, ValidationError], object]


def store_key() -> bytes | None:
    """The sealing key from the credentials directory or the environment; None if absent."""
    secret = read_secret_bytes(STORE_KEY_CREDENTIAL, required=False, length=32)
    return None if secret is None else secret.get_secret_value()


class SealedKeyStore:
    """One gateway's BLE key list in one AES-256-GCM sealed file."""

    def __init__(self, path: Path, key: bytes, site: str, gateway: str) -> None:
        if len(key) != 32:
            raise ValueError("the BLE key store key must be 32 bytes (AES-256)")
        self.path = path
        self._aead = AESGCM(key)
        self._aad = "\x1f".join(("menwei-ble-keys-v1", site, gateway)).encode("utf-8")

    def save(self, keys: BleKeyList) -> None:
        nonce = os.urandom(12)
        sealed = _MAGIC + nonce + self._aead.encrypt(nonce, keys.model_dump_json().encode(), self._aad)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, sealed)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def load(self) -> BleKeyList | None:
        """The stored list; None if there is none. A file that fails to open (tampered, another key or another
        gateway's) or to validate is logged and ignored, never used."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 12 + 16:
            log.error("%s is not a sealed BLE key list: ignored", self.path)
            return None
        nonce, sealed = data[len(_MAGIC) : len(_MAGIC) + 12], data[len(_MAGIC) + 12 :]
        try:
            plain = self._aead.decrypt(nonce, sealed, self._aad)
            return BleKeyList.model_validate_json(plain)
        except (InvalidTag, ValidationError):
            log.error("%s failed authentication or validation (tampered, or another key): ignored", self.path)
            return None


class BleKeySync:
    """The gateway's side of `ble/keys`; owned by the Downlink, which routes the messages here. Loads the
    sealed list at construction (the gateway's start), so the readers have the cloud's keys before any
    connection."""

    def __init__(
        self, gateway: Gateway, topics: Topics, *, refuse: Refuse, refuse_invalid: RefuseInvalid
    ) -> None:
        self.gateway = gateway
        self.topics = topics
        self._refuse = refuse
        self._refuse_invalid = refuse_invalid
        self.held: BleKeyList | None = None
        self._lock = asyncio.Lock()  # one list stored at a time, in arrival order
        self._timer: asyncio.TimerHandle | None = None
        self._store: SealedKeyStore | None = None
        try:
            key = store_key()
        except ConfigError as err:
            log.error("BLE phone keys from the cloud cannot be stored: %s", err)
            key = None
        if key is not None:
            path = gateway.config.gateway.data_dir / STORE_FILE
            self._store = SealedKeyStore(path, key, topics.site, topics.gateway)
            self.held = self._store.load()
        if self.held is not None:
            log.info("BLE phone keys version %d loaded from %s", self.held.version, STORE_FILE)
            self._hand_out()

    @property
    def version(self) -> int:
        return 0 if self.held is None else self.held.version

    def readers(self) -> list[BleReader]:
        return [r for r in self.gateway.devices.readers.values() if isinstance(r, BleReader)]

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def handle(self, msg: Incoming) -> None:
        """A BleKeyList on this gateway's `ble/keys` (on the loop; the store write runs in a thread)."""
        if not msg.payload:  # the retained list being cleared: nothing to apply, nothing wrong
            return
        try:
            keys = BleKeyList.model_validate_json(msg.payload)
        except ValidationError as err:
            self._refuse_invalid(msg.topic, err)
            return
        if keys.site != self.topics.site:
            self._refuse(msg.topic, "wrong_site", f"BLE keys for site {keys.site[:64]!r}")
            return
        if keys.gateway != self.topics.gateway:
            self._refuse(msg.topic, "rejected", f"BLE keys for gateway {keys.gateway[:64]!r}")
            return
        if self._store is None:
            self._refuse(msg.topic, "rejected", f"no {STORE_KEY_CREDENTIAL!r} credential to seal phone keys")
            return
        self.gateway.spawn(self._apply(msg.topic, keys))

    async def _apply(self, topic: str, keys: BleKeyList) -> None:
        async with self._lock:
            if keys.version <= self.version:
                log.debug("BLE keys version %d already held (%d): ignored", keys.version, self.version)
                return
            assert self._store is not None
            try:
                await asyncio.to_thread(self._store.save, keys)
            except (
                OSError
            ) as err:  # the disk, not the message: the keys in force stay, the retained copy retries
                log.error("BLE keys version %d not stored, the keys in force stay: %s", keys.version, err)
                return
            self.held = keys
            readers = self._hand_out()
            log.info(
                "BLE phone keys version %d applied: %d keys, %d in force, to %d readers",
                keys.version,
                len(keys.keys),
                readers,
                len(self.readers()),
            )

    def _hand_out(self) -> int:
        """Give every BLE reader the keys in force now; re-run at the next expiry. Returns how many."""
        assert self.held is not None
        now = self.gateway.clock.now()
        live = {
            k.id: bytes.fromhex(k.key)
            for k in self.held.keys
            if k.status == "active" and (k.valid_until is None or k.valid_until > now)
        }
        for reader in self.readers():
            reader.set_keys(live)
        self._arm(now)
        return len(live)

    def _arm(self, now: datetime) -> None:
        self.close()
        assert self.held is not None
        ends = [
            k.valid_until
            for k in self.held.keys
            if k.status == "active" and k.valid_until is not None and k.valid_until > now
        ]
        if not ends:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # constructed outside the loop (tools): no expiry timer
            return
        delay = min(86_400.0, (min(ends) - now).total_seconds()) + 0.01
        self._timer = loop.call_later(delay, self._hand_out)
