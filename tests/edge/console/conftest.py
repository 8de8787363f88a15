"""A running demo gateway with a console app, and clients that talk to it on the same event loop."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from edge.clock import ManualClock
from edge.console import create_app
from edge.demo_data import demo_access_list
from edge.devices import build_devices
from edge.gateway import Gateway
from tests.demo_site import demo_config
from tests.edge.console.console_helpers import (
    ADMIN_PASSWORD,
    GUARD_PASSWORD,
    SETTINGS,
    client_for,
    log_in,
    logged_setup_code,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def gateway(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Gateway]:
    cfg = demo_config(tmp_path)
    gw = Gateway(cfg, build_devices(cfg), clock=clock)
    await gw.start()
    await gw.replace_access_list(demo_access_list(1, datetime.now(UTC), "side-door", list(gw.site.doors)))
    yield gw
    await gw.stop()


@pytest.fixture
def app(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> FastAPI:
    caplog.set_level(logging.WARNING, logger="edge.console.auth")
    return create_app(gateway, SETTINGS)


@pytest.fixture
def setup_code(app: FastAPI, caplog: pytest.LogCaptureFixture) -> str:
    code = logged_setup_code(caplog)
    assert code is not None
    return code


@pytest.fixture
async def anon(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as client:
        yield client


@pytest.fixture
async def admin(app: FastAPI, setup_code: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as client:
        response = await client.post(
            "/api/setup", json={"code": setup_code, "username": "admin", "password": ADMIN_PASSWORD}
        )
        assert response.status_code == 201, response.text
        client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
        yield client


@pytest.fixture
async def guard(app: FastAPI, admin: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    response = await admin.post(
        "/api/accounts", json={"username": "guard1", "password": GUARD_PASSWORD, "role": "guard"}
    )
    assert response.status_code == 201, response.text
    async with client_for(app) as client:
        await log_in(client, "guard1", GUARD_PASSWORD)
        yield client
