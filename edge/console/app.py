"""The console's FastAPI application, built by a factory around a running gateway.

A factory, not a module-level app: nothing (no setup code, no database access) happens at import, and tests
build as many independent consoles as they like. The app must be served on the gateway's own event loop:
its endpoints call the gateway and publish on its bus directly.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.staticfiles import StaticFiles

from edge.console import (
    api,
    api_accounts,
    api_alarms,
    api_camera,
    api_events,
    api_passes,
    api_people,
    api_site,
)
from edge.console.accounts import AccountStore
from edge.console.api import Console
from edge.console.auth import LoginThrottle, Sessions, SetupCode
from edge.console.headers import SecurityHeaders
from edge.console.settings import ConsoleSettings
from edge.events import AccessListEvent, CommandEvent, Event
from edge.gateway import Gateway

STATIC_DIR = Path(__file__).parent / "static"


def create_app(gateway: Gateway, settings: ConsoleSettings) -> FastAPI:
    """The console for `gateway`. If no admin account exists yet, a one-time setup code is logged now."""
    accounts = AccountStore(gateway.db_path)
    setup = SetupCode()
    if not accounts.has_admin():
        setup.issue()
    app = FastAPI(
        title="menwei guard console",
        summary="Doors, live events and operator actions on one gateway; works without the cloud.",
        version="0.1.0",
    )
    app.state.console = Console(
        gateway=gateway,
        settings=settings,
        accounts=accounts,
        sessions=Sessions(gateway.clock, settings.session_seconds),
        throttle=LoginThrottle(gateway.clock, settings, settings.max_failures),
        client_throttle=LoginThrottle(gateway.clock, settings, settings.max_client_failures),
        setup=setup,
        started_at=gateway.clock.now(),
        started_mono=gateway.clock.monotonic(),
    )
    console: Console = app.state.console

    def downlink(event: Event) -> None:  # the cloud changed the access list or sent a command
        console.last_downlink_at = event.at

    gateway.bus.subscribe(AccessListEvent, downlink)
    gateway.bus.subscribe(CommandEvent, downlink)
    for module in (api, api_accounts, api_events, api_alarms, api_passes, api_camera, api_people, api_site):
        app.include_router(module.router)

    @app.api_route(
        "/api/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    async def no_such_endpoint(request: Request) -> None:
        # Without this an unknown /api path would fall through to the static files' plain-text 404.
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no endpoint {request.method} {request.url.path}")

    # The front end: static files shipped in the package (no build step), index.html at "/". Mounted last,
    # so the API and the OpenAPI pages take precedence.
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    app.add_middleware(SecurityHeaders)
    return app
