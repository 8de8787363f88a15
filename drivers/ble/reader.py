"""BleReader: phone keys seen by bleak's BleakScanner, verified offline, as BLE credentials.

The RSSI threshold is the resident's intent ("I am at this door"), not security: signal strength is easy to
amplify, the token is what is verified. Detection callbacks run on the event loop (bleak calls them there), so
verification (one dictionary lookup) runs inline. The backend is injectable: the real one is the platform's
(BlueZ on the gateway); tests and the demo use drivers/sim/ble.py's replaying backend.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from drivers.ble.token import STEP_SECONDS, TokenVerifier
from drivers.reader import CredentialRead, Reader
from edge.model import CredentialKind

log = logging.getLogger(__name__)

TEST_COMPANY_ID = 0xFFFF  # Bluetooth SIG: reserved for tests; a deployment uses its own assigned id


class BleReader(Reader):
    def __init__(
        self,
        reader_id: str,
        keys: Mapping[str, bytes],
        *,
        company_id: int = TEST_COMPANY_ID,
        rssi_threshold: int = -70,
        step_seconds: int = STEP_SECONDS,
        backend: type[Any] | None = None,
        backend_kwargs: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(reader_id)
        self.company_id = company_id
        self.rssi_threshold = rssi_threshold
        self.verifier = TokenVerifier(keys, step_seconds=step_seconds)
        self.counters: Counter[str] = Counter()  # adverts, far
        self._backend = backend
        self._backend_kwargs = dict(backend_kwargs or {})
        self._clock = clock
        self._scanner: Any = None

    async def start(self) -> None:
        from bleak import BleakScanner

        self._scanner = BleakScanner(
            detection_callback=self._seen, backend=self._backend, **self._backend_kwargs
        )
        await self._scanner.start()
        self.online = True

    async def stop(self) -> None:
        if self._scanner is not None:
            scanner, self._scanner = self._scanner, None
            await scanner.stop()
        self.online = False

    async def feedback(self, granted: bool, reason: str) -> None:
        # The phone learns nothing back over advertising; the door (and the door's reader LED) shows it.
        log.debug("%s: phone key %s (%s)", self.id, "granted" if granted else "refused", reason)

    def set_keys(self, keys: Mapping[str, bytes]) -> None:
        self.verifier.set_keys(keys)

    def _seen(self, device: Any, adv: Any) -> None:
        data = adv.manufacturer_data.get(self.company_id)
        if data is None:
            return
        self.counters["adverts"] += 1
        if adv.rssi < self.rssi_threshold:
            self.counters["far"] += 1
            return
        key_id = self.verifier.verify(bytes(data), self._clock())
        if key_id is not None:
            self._on_credential(CredentialRead(self.id, CredentialKind.BLE, key_id))
