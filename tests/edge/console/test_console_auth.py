"""Console access: the one-time setup code, login, lock-out, cookies, CSRF, sessions, and their audit trail."""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from edge.clock import ManualClock
from edge.console import create_app
from edge.gateway import Gateway
from tests.edge.console.console_helpers import (
    ADMIN_PASSWORD,
    GUARD_PASSWORD,
    SETTINGS,
    client_for,
    log_in,
    logged_setup_code,
)


def console_events(gw: Gateway) -> list[dict[str, Any]]:
    assert gw.events is not None
    gw.events.flush()
    with sqlite3.connect(gw.db_path) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE type = 'console' ORDER BY seq").fetchall()
    return [json.loads(p) for (p,) in rows]


async def test_setup_code_creates_the_first_admin_once(
    anon: httpx.AsyncClient, setup_code: str, gateway: Gateway
) -> None:
    body = {"code": setup_code, "username": "admin", "password": ADMIN_PASSWORD}
    first = await anon.post("/api/setup", json=body)
    assert first.status_code == 201
    assert first.json()["role"] == "admin" and first.json()["username"] == "admin"
    again = await anon.post("/api/setup", json={**body, "username": "mallory"})
    assert again.status_code == 409
    events = console_events(gateway)
    assert [(e["action"], e["ok"]) for e in events] == [("setup", True), ("setup", False)]


async def test_wrong_setup_code_is_refused_and_the_right_one_still_works(
    anon: httpx.AsyncClient, setup_code: str
) -> None:
    body = {"code": "0000-0000", "username": "admin", "password": ADMIN_PASSWORD}
    assert (await anon.post("/api/setup", json=body)).status_code == 403
    body["code"] = setup_code
    assert (await anon.post("/api/setup", json=body)).status_code == 201


async def test_setup_refuses_a_short_password(anon: httpx.AsyncClient, setup_code: str) -> None:
    response = await anon.post(
        "/api/setup", json={"code": setup_code, "username": "admin", "password": "short"}
    )
    assert response.status_code == 422
    assert "at least 12" in response.json()["detail"]


async def test_the_setup_code_is_never_stored(gateway: Gateway, setup_code: str) -> None:
    data = b"".join(p.read_bytes() for p in gateway.db_path.parent.iterdir() if p.is_file())
    assert setup_code.encode() not in data


async def test_no_setup_code_once_an_admin_exists(
    gateway: Gateway, admin: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.clear()
    restarted = create_app(gateway, SETTINGS)
    assert logged_setup_code(caplog) is None
    async with client_for(restarted) as client:
        response = await client.post(
            "/api/setup", json={"code": "anything", "username": "admin2", "password": ADMIN_PASSWORD}
        )
        assert response.status_code == 409
        await log_in(client, "admin", ADMIN_PASSWORD)  # the account outlives the app


async def test_login_sets_a_strict_httponly_secure_cookie(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    response = await anon.post("/api/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
    assert response.json()["csrf_token"]


async def test_wrong_password_and_unknown_user_look_the_same(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, gateway: Gateway
) -> None:
    wrong = await anon.post("/api/login", json={"username": "admin", "password": "nope"})
    unknown = await anon.post("/api/login", json={"username": "nobody", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "wrong name or password"}
    failed = [e for e in console_events(gateway) if e["action"] == "login"]
    assert [(e["by"], e["ok"]) for e in failed] == [("admin", False), ("nobody", False)]


async def test_lock_out_after_repeated_failures_then_release(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, clock: ManualClock, gateway: Gateway
) -> None:
    for _ in range(SETTINGS.max_failures):
        response = await anon.post("/api/login", json={"username": "admin", "password": "guess"})
        assert response.status_code == 401
    # Locked: even the right password is refused now.
    locked = await anon.post("/api/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert locked.status_code == 423
    assert "try again later" in locked.json()["detail"]
    clock.advance(SETTINGS.lockout_seconds + 1)
    await log_in(anon, "admin", ADMIN_PASSWORD)
    details = [e["detail"] for e in console_events(gateway) if e["action"] == "login"]
    assert "wrong name or password; account locked out" in details
    assert any(d.startswith("locked out") for d in details)


async def test_one_client_guessing_across_names_is_locked_out(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient, clock: ManualClock
) -> None:
    for n in range(SETTINGS.max_client_failures):  # never max_failures on any one name
        response = await anon.post("/api/login", json={"username": f"user{n}", "password": "guess"})
        assert response.status_code == 401
    locked = await anon.post("/api/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert locked.status_code == 423
    # The account itself is not locked: another client logs in.
    other = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("10.0.0.9", 1234)), base_url="https://console.test"
    )
    async with other:
        await log_in(other, "admin", ADMIN_PASSWORD)
    clock.advance(SETTINGS.lockout_seconds + 1)
    await log_in(anon, "admin", ADMIN_PASSWORD)


async def test_failures_outside_the_window_are_forgotten(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, clock: ManualClock
) -> None:
    for _ in range(SETTINGS.max_failures - 1):
        await anon.post("/api/login", json={"username": "admin", "password": "guess"})
    clock.advance(SETTINGS.failure_window_seconds + 1)
    await anon.post("/api/login", json={"username": "admin", "password": "guess"})
    await log_in(anon, "admin", ADMIN_PASSWORD)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/doors", None),
        ("GET", "/api/events", None),
        ("GET", "/api/events/stream", None),
        ("GET", "/api/session", None),
        ("POST", "/api/doors/main-gate/open", {"reason": "delivery"}),
        ("POST", "/api/site/lockdown", {"reason": "drill"}),
        ("POST", "/api/site/normal", {"reason": "drill over"}),
        ("POST", "/api/accounts", {"username": "x1", "password": GUARD_PASSWORD, "role": "guard"}),
        ("POST", "/api/logout", None),
    ],
)
async def test_everything_refuses_a_caller_not_logged_in(
    anon: httpx.AsyncClient, method: str, path: str, body: dict[str, str] | None
) -> None:
    response = await anon.request(method, path, json=body)
    assert response.status_code == 401
    assert response.json() == {"detail": "not logged in"}


async def test_a_forged_session_cookie_is_not_logged_in(app: FastAPI) -> None:
    async with client_for(app) as client:
        client.cookies.set("menwei_session", "forged", domain="console.test")
        assert (await client.get("/api/doors")).status_code == 401


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_posts_need_the_sessions_csrf_token(admin: httpx.AsyncClient, token: str | None) -> None:
    good = admin.headers.pop("X-CSRF-Token")
    headers = {"X-CSRF-Token": token} if token else {}
    response = await admin.post("/api/site/lockdown", json={"reason": "drill"}, headers=headers)
    assert response.status_code == 403
    assert "X-CSRF-Token" in response.json()["detail"]
    admin.headers["X-CSRF-Token"] = good
    assert (await admin.post("/api/site/normal", json={"reason": "ok"})).status_code == 200


async def test_another_sessions_csrf_token_is_refused(
    admin: httpx.AsyncClient, guard: httpx.AsyncClient
) -> None:
    response = await guard.post(
        "/api/doors/main-gate/open",
        json={"reason": "x"},
        headers={"X-CSRF-Token": admin.headers["X-CSRF-Token"]},
    )
    assert response.status_code == 403


async def test_session_reports_the_account_and_its_token(guard: httpx.AsyncClient) -> None:
    response = await guard.get("/api/session")
    assert response.status_code == 200
    assert response.json() == {
        "username": "guard1",
        "role": "guard",
        "csrf_token": guard.headers["X-CSRF-Token"],
    }


async def test_logout_ends_the_session(guard: httpx.AsyncClient, gateway: Gateway) -> None:
    assert (await guard.post("/api/logout")).status_code == 200
    assert (await guard.get("/api/doors")).status_code == 401
    assert ("logout", "guard1", True) in [(e["action"], e["by"], e["ok"]) for e in console_events(gateway)]


async def test_a_session_expires(guard: httpx.AsyncClient, clock: ManualClock) -> None:
    assert (await guard.get("/api/doors")).status_code == 200
    clock.advance(SETTINGS.session_seconds + 1)
    assert (await guard.get("/api/doors")).status_code == 401


async def test_only_an_admin_creates_accounts(admin: httpx.AsyncClient, guard: httpx.AsyncClient) -> None:
    body = {"username": "guard2", "password": GUARD_PASSWORD, "role": "guard"}
    assert (await guard.post("/api/accounts", json=body)).status_code == 403
    assert (await admin.post("/api/accounts", json=body)).status_code == 201
    assert (await admin.post("/api/accounts", json=body)).status_code == 409
    bad = await admin.post("/api/accounts", json={**body, "username": "Bad Name!"})
    assert bad.status_code == 422


async def test_unknown_fields_are_refused(anon: httpx.AsyncClient) -> None:
    response = await anon.post("/api/login", json={"username": "a", "password": "b", "remember": True})
    assert response.status_code == 422


def test_setup_code_is_logged_at_warning(app: FastAPI, caplog: pytest.LogCaptureFixture) -> None:
    records = caplog.get_records("setup")
    assert any(r.levelno == logging.WARNING and "setup code" in r.getMessage() for r in records)
