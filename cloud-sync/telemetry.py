"""The gateway's heartbeat: versions, outbox depth, last upload and device health, published retained.

Why retained: the cloud (or an engineer with mosquitto_sub) sees the last known state of a gateway the moment
it subscribes, including of a gateway that is offline right now, next to the retained status and its will.
Why QoS 0 (topics.py): a heartbeat is superseded by the next one; re-sending an old one after an outage would
only mislead. It is published on every connect and then every `heartbeat_seconds`, only while connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from cloud_sync.messages import DeviceHealth, Telemetry
from cloud_sync.publisher import Publisher
from cloud_sync.topics import Topics

from edge.devices import Devices
from edge.errors import StoreError
from edge.gateway import Gateway

log = logging.getLogger(__name__)


def device_health(devices: Devices) -> dict[str, DeviceHealth]:
    """Online state of every controller and reader, keyed 'controller/<id>' and 'reader/<id>' (the two kinds
    have separate id spaces)."""
    health = {f"controller/{cid}": DeviceHealth(online=c.online) for cid, c in devices.controllers.items()}
    health.update({f"reader/{rid}": DeviceHealth(online=r.online) for rid, r in devices.readers.items()})
    return health


async def collect(gateway: Gateway, software: str, last_upload_at: datetime | None) -> Telemetry:
    """A Telemetry message for now. The outbox figures come from SQLite, read in a thread."""
    events = gateway.events
    if events is None or gateway.engine is None:
        raise RuntimeError("gateway not started")
    depth, oldest = await asyncio.to_thread(lambda: (events.depth(), events.oldest_pending_at()))
    return Telemetry(
        at=gateway.clock.now(),
        software=software,
        acl_version=gateway.engine.acl.version,
        outbox_depth=depth,
        oldest_pending_at=oldest,
        last_upload_at=last_upload_at,
        devices=device_health(gateway.devices),
    )


class Heartbeat:
    """Publishes Telemetry retained on `topics.telemetry` every `interval` seconds while `is_connected()`,
    and at once on `kick()` (the link calls it on every connect)."""

    def __init__(
        self,
        gateway: Gateway,
        publisher: Publisher,
        topics: Topics,
        *,
        software: str,
        interval: float,
        is_connected: Callable[[], bool],
        last_upload_at: Callable[[], datetime | None],
    ) -> None:
        self._gateway = gateway
        self._publisher = publisher
        self._topics = topics
        self._software = software
        self._interval = interval
        self._is_connected = is_connected
        self._last_upload_at = last_upload_at
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="telemetry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def kick(self) -> None:
        """Publish now (e.g. just connected)."""
        self._kick.set()

    async def publish_once(self) -> None:
        if not self._is_connected():
            return
        telemetry = await collect(self._gateway, self._software, self._last_upload_at())
        self._publisher.publish(
            self._topics.telemetry, telemetry.model_dump_json().encode(), qos=0, retain=True
        )
        self.published += 1

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands as the kick
            # completes, and stop() then waited forever (seen: SIGTERM just after connecting hung `menwei run`).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._kick.wait()
            self._kick.clear()
            try:
                await self.publish_once()
            except StoreError as err:  # e.g. the log is closing at shutdown; the next beat tries again
                log.debug("telemetry skipped: %s", err)
