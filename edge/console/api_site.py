"""The console's site endpoints: what this gateway is (GET /api/site) and how it is doing (GET /api/health)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from edge.console.api import ConsoleDep, SessionDep
from edge.model import DoorMode

router = APIRouter(prefix="/api")


def software_version() -> str:
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
