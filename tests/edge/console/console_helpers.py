"""Constants and helpers shared by the console tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from edge.console import ConsoleSettings

ROOT = Path(__file__).resolve().parents[3]
ADMIN_PASSWORD = "correct horse battery"
GUARD_PASSWORD = "guard-house-night-shift"
SETTINGS = ConsoleSettings(max_failures=3, max_client_failures=6, lockout_seconds=600, session_seconds=3600)


def logged_setup_code(caplog: pytest.LogCaptureFixture) -> str | None:
    for record in caplog.records:
        found = re.search(r"setup code (\S+)", record.getMessage())
        if found:
            return found.group(1)
    return None


def client_for(app: FastAPI) -> httpx.AsyncClient:
    # https: the session cookie is Secure, so a client only sends it back over HTTPS.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://console.test")


async def log_in(client: httpx.AsyncClient, username: str, password: str) -> str:
    """Log in and keep the CSRF token as a default header; returns the token."""
    response = await client.post("/api/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["csrf_token"]
    client.headers["X-CSRF-Token"] = token
    return token
