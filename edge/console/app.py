"""The console's FastAPI application, built by a factory around a running gateway.

A factory, not a module-level app: nothing (no setup code, no database access) happens at import, and tests
build as many independent consoles as they like. The app must be served on the gateway's own event loop:
its endpoints call the gateway and publish on its bus directly.
"""

from __future__ import annotations

from fastapi import FastAPI

from edge.console.accounts import AccountStore
from edge.console.api import Console, router
from edge.console.auth import LoginThrottle, Sessions, SetupCode
from edge.console.settings import ConsoleSettings
from edge.gateway import Gateway


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
    )
    app.include_router(router)
    return app
