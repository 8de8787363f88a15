"""The console's site endpoints: what this gateway is (GET /api/site) and how it is doing (GET /api/health)."""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from edge.console.api import Console, ConsoleDep, SessionDep
from edge.errors import StoreError
from edge.gateway import Gateway
from edge.model import DoorMode

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api")


@functools.cache
def software_version() -> str:
    """The installed menwei's version (read once: importlib.metadata scans the installed packages, ~0.25 ms)."""
    try:
        return version("menwei")
    except PackageNotFoundError:
        return "0+unknown"


class SiteOut(BaseModel):
    site_id: str
    site_name: str
    gateway_id: str
    version: str
    mode: DoorMode | list[DoorMode] = Field(
        description="The site's mode: 'lockdown' during a site lockdown, else the doors' mode if they all "
        "share one, else the distinct modes of the doors (a mixed site)."
    )
    lockdown: bool = Field(description="A site lockdown is in force.")
    language_default: Literal["zh-CN"] = "zh-CN"


@router.get("/site")
async def site(_: SessionDep, console: ConsoleDep) -> SiteOut:
    """This gateway and its site, and the site's mode."""
    gw = console.gateway
    engine = gw.engine
    lockdown = engine is not None and engine.state.lockdown
    modes = [
        engine.state.mode_of(d) if engine is not None else door.mode for d, door in gw.site.doors.items()
    ]
    distinct = sorted(set(modes), key=modes.index)
    mode: DoorMode | list[DoorMode] = distinct[0] if len(distinct) == 1 else distinct
    return SiteOut(
        site_id=gw.config.site.id,
        site_name=gw.config.site.name,
        gateway_id=gw.config.gateway.id,
        version=software_version(),
        mode=mode,
        lockdown=lockdown,
    )


class SyncOut(BaseModel):
    configured: bool = Field(description="An [mqtt] cloud link is configured.")
    connected: bool | None = Field(description="The link is up (None: not known to the console).")
    outbox_depth: int = Field(description="Events stored but not yet acknowledged by the cloud.")
    oldest_unsent_age_s: float | None
    last_downlink_at: datetime | None = Field(
        description="When the cloud last changed the access list or sent a command (since the console started)."
    )


class DeviceOut(BaseModel):
    id: str
    kind: Literal["controller", "reader"]
    online: bool


class HealthOut(BaseModel):
    gateway_id: str
    version: str
    started_at: datetime | None
    uptime_s: float
    access_list_version: int
    people: int
    sync: SyncOut
    devices: list[DeviceOut]
    clock_trusted: bool | None = Field(
        description="Visitor passes can be checked: the gateway trusts its clock (None: not known)."
    )
    clock_detail: str | None = Field(description="Why the clock is not trusted, if it is not.")


@router.get("/health")
async def health(_: SessionDep, console: ConsoleDep) -> HealthOut:
    """Sync with the cloud, devices and clock, for the booth's status bar."""
    gw = console.gateway
    engine = gw.engine
    depth, oldest = await _outbox_figures(console)
    now, mono = gw.clock.now(), gw.clock.monotonic()
    cloud = console.cloud
    devices = [
        DeviceOut(id=cid, kind="controller", online=bool(c.online))
        for cid, c in gw.devices.controllers.items()
    ] + [DeviceOut(id=rid, kind="reader", online=bool(r.online)) for rid, r in gw.devices.readers.items()]
    distrust = gw.passes.clock_guard.distrust(now, mono)
    return HealthOut(
        gateway_id=gw.config.gateway.id,
        version=software_version(),
        started_at=console.started_at,
        uptime_s=round(mono - console.started_mono, 3),
        access_list_version=engine.acl.version if engine is not None else 0,
        people=len(engine.acl.people) if engine is not None else 0,
        sync=SyncOut(
            configured=gw.config.mqtt is not None,
            connected=bool(cloud.connected) if cloud is not None else None,
            outbox_depth=depth,
            oldest_unsent_age_s=None
            if oldest is None
            else round(max(0.0, (now - oldest).total_seconds()), 3),
            last_downlink_at=console.last_downlink_at,
        ),
        devices=devices,
        clock_trusted=distrust is None,
        clock_detail=distrust,
    )


# How long the outbox figures of GET /api/health are reused. The booth polls health every few seconds, so each
# request hitting SQLite (a worker thread, the event log's shared reader connection, a count over the unsent
# events) cost the doors for nothing; a few seconds' staleness shows nothing a guard would act on.
OUTBOX_FIGURES_SECONDS = 2.0
_OUTBOX = "outbox_figures"  # key in Console.caches: (monotonic when read, the figures)


async def _outbox_figures(console: Console) -> tuple[int, datetime | None]:
    """The outbox's depth and oldest unsent event, read at most once every OUTBOX_FIGURES_SECONDS; requests
    arriving while a read is under way share it."""
    cached = console.caches.get(_OUTBOX)
    now = time.monotonic()
    if isinstance(cached, tuple) and now - cached[0] < OUTBOX_FIGURES_SECONDS:
        figures: tuple[int, datetime | None] = cached[1]
        return figures
    reading = console.caches.get(_OUTBOX + "_reading")
    if not isinstance(reading, asyncio.Future):
        reading = asyncio.ensure_future(asyncio.to_thread(_outbox, console.gateway))
        console.caches[_OUTBOX + "_reading"] = reading
    try:
        figures = await asyncio.shield(reading)
    finally:
        if reading.done() and console.caches.get(_OUTBOX + "_reading") is reading:
            del console.caches[_OUTBOX + "_reading"]
            if not reading.cancelled() and reading.exception() is None:
                console.caches[_OUTBOX] = (now, reading.result())
    return figures


def _outbox(gw: Gateway) -> tuple[int, datetime | None]:
    events = gw.events
    if events is None or events.closed:
        return 0, None
    try:
        return events.depth(), events.oldest_pending_at()
    except (StoreError, sqlite3.Error):  # closing under us: the figures are not worth an error page
        log.debug("outbox figures unavailable", exc_info=True)
        return 0, None
