"""Simulated BLE: a bleak scanner backend that replays advertisements, and phones that make them.

`ReplayScanner` is a real bleak backend (a BaseBleakScanner): BleakScanner(backend=ReplayScanner, air=air)
runs bleak's own scanner code, and advertisements reach the detection callback through bleak's
create_or_update_device/call_detection_callbacks, as they would from BlueZ. `Air` is the radio between the
phones and the scanners; `Phone` advertises a resident's current token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner

from drivers.ble.token import payload


class Air:
    def __init__(self) -> None:
        self.scanners: list[ReplayScanner] = []

    def advertise(self, address: str, manufacturer_data: dict[int, bytes], rssi: int) -> None:
        """Deliver one advertisement to every scanning backend (call on the event loop)."""
        for scanner in list(self.scanners):
            scanner.receive(address, manufacturer_data, rssi)


class ReplayScanner(BaseBleakScanner):
    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        *,
        air: Air,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._air = air

    async def start(self) -> None:
        self.seen_devices = {}
        self._air.scanners.append(self)

    async def stop(self) -> None:
        if self in self._air.scanners:
            self._air.scanners.remove(self)

    def receive(self, address: str, manufacturer_data: dict[int, bytes], rssi: int) -> None:
        adv = AdvertisementData(
            local_name=None,
            manufacturer_data=manufacturer_data,
            service_data={},
            service_uuids=[],
            tx_power=None,
            rssi=rssi,
            platform_data=(),
        )
        device = self.create_or_update_device(address, address, None, None, adv)
        self.call_detection_callbacks(device, adv)


class Phone:
    """A resident's phone running the app: it advertises payload(key, now) under the company id. Its address
    is random (as phones' are), so only the token says who it is."""

    def __init__(
        self,
        key: bytes,
        company_id: int,
        *,
        address: str = "5A:00:00:00:00:01",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.company_id = company_id
        self.address = address
        self.clock = clock

    def advertise(self, air: Air, rssi: int = -55, at: float | None = None) -> None:
        now = self.clock() if at is None else at
        air.advertise(self.address, {self.company_id: payload(self.key, now)}, rssi)
