"""Account management through the console's API: listing, creating, disabling and enabling, roles, password
resets and changing one's own password, for every role, refusals and their audit trail included."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from edge.clock import ManualClock
from edge.console.accounts import AccountStore, LastAdminError, Role
from edge.gateway import Gateway
from tests.edge.console.console_browser import served
from tests.edge.console.console_helpers import (
    ADMIN_PASSWORD,
    GUARD_PASSWORD,
    SETTINGS,
    client_for,
    log_in,
    logged_setup_code,
)

NEW_PASSWORD = "a-brand-new-passphrase"

# Every admin-only request, with a valid body.
ADMIN_REQUESTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/accounts", None),
    ("POST", "/api/accounts", {"username": "guard2", "password": GUARD_PASSWORD, "role": "guard"}),
    ("POST", "/api/accounts/admin/disable", None),
    ("POST", "/api/accounts/admin/enable", None),
    ("POST", "/api/accounts/admin/role", {"role": "guard"}),
    ("POST", "/api/accounts/admin/password", {"password": NEW_PASSWORD}),
]


def console_events(gw: Gateway, *actions: str) -> list[dict[str, Any]]:
    assert gw.events is not None
    gw.events.flush()
    with sqlite3.connect(gw.db_path) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE type = 'console' ORDER BY seq").fetchall()
    events = [json.loads(p) for (p,) in rows]
    return [e for e in events if not actions or e["action"] in actions]


def password_hashes(gw: Gateway) -> list[str]:
    with sqlite3.connect(gw.db_path) as conn:
        return [h for (h,) in conn.execute("SELECT password_hash FROM console_accounts")]


def by_name(accounts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a["username"]: a for a in accounts}


async def listed(admin: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await admin.get("/api/accounts")
    assert response.status_code == 200, response.text
    return by_name(response.json())


async def still_logged_in(client: httpx.AsyncClient) -> bool:
    status = (await client.get("/api/session")).status_code
    assert status in (200, 401)
    return status == 200


async def login_status(app: FastAPI, username: str, password: str) -> int:
    async with client_for(app) as client:
        response = await client.post("/api/login", json={"username": username, "password": password})
        return response.status_code


# --- listing ------------------------------------------------------------------------------------------------


async def test_admin_lists_accounts_with_role_dates_and_state(
    app: FastAPI, admin: httpx.AsyncClient, guard: httpx.AsyncClient
) -> None:
    accounts = await listed(admin)
    assert list(accounts) == ["admin", "guard1"]
    g = accounts["guard1"]
    assert g["role"] == "guard" and g["disabled"] is False and g["disabled_at"] is None
    assert g["created_at"] and g["last_login_at"] and g["last_login_at"] >= g["created_at"]
    assert g["sessions"] == 1 and g["locked_out"] is False
    # setup logs the first admin in without a login: no login recorded yet
    assert accounts["admin"]["role"] == "admin" and accounts["admin"]["last_login_at"] is None

    for _ in range(SETTINGS.max_failures):
        assert await login_status(app, "guard1", "not the password") == 401
    assert (await listed(admin))["guard1"]["locked_out"] is True


async def test_guard_is_refused_every_admin_endpoint_and_it_is_audited(
    guard: httpx.AsyncClient, gateway: Gateway
) -> None:
    for method, path, body in ADMIN_REQUESTS:
        response = await guard.request(method, path, json=body)
        assert response.status_code == 403, (method, path)
        assert response.json() == {"detail": "admin only"}
    refused = console_events(gateway, "forbidden")
    assert [(e["by"], e["ok"]) for e in refused] == [("guard1", False)] * len(ADMIN_REQUESTS)


async def test_every_change_needs_the_csrf_token(admin: httpx.AsyncClient, guard: httpx.AsyncClient) -> None:
    token = admin.headers.pop("X-CSRF-Token")
    for method, path, body in ADMIN_REQUESTS:
        if method == "POST":
            response = await admin.post(path, json=body)
            assert response.status_code == 403, path
            assert "X-CSRF-Token" in response.json()["detail"]
    admin.headers["X-CSRF-Token"] = token
    del guard.headers["X-CSRF-Token"]
    body = {"current_password": GUARD_PASSWORD, "new_password": NEW_PASSWORD}
    assert (await guard.post("/api/me/password", json=body)).status_code == 403
    assert (await listed(admin))["guard1"]["disabled"] is False  # nothing changed
    assert await still_logged_in(guard)


async def test_nothing_without_a_session(anon: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    for method, path, body in [
        *ADMIN_REQUESTS,
        ("POST", "/api/me/password", {"current_password": ADMIN_PASSWORD, "new_password": NEW_PASSWORD}),
    ]:
        assert (await anon.request(method, path, json=body)).status_code == 401, path


# --- creating -----------------------------------------------------------------------------------------------


async def test_admin_creates_guards_and_admins(
    app: FastAPI, admin: httpx.AsyncClient, gateway: Gateway
) -> None:
    for name, role in (("night-guard", "guard"), ("deputy", "admin")):
        response = await admin.post(
            "/api/accounts", json={"username": name, "password": GUARD_PASSWORD, "role": role}
        )
        assert response.status_code == 201
        assert response.json() == {"username": name, "role": role}
    async with client_for(app) as deputy:
        await log_in(deputy, "deputy", GUARD_PASSWORD)
        assert (await deputy.get("/api/accounts")).status_code == 200  # an admin

    again = await admin.post(
        "/api/accounts", json={"username": "deputy", "password": GUARD_PASSWORD, "role": "guard"}
    )
    assert again.status_code == 409
    short = await admin.post(
        "/api/accounts", json={"username": "x-ray", "password": "short", "role": "guard"}
    )
    assert short.status_code == 422 and "at least 12" in short.json()["detail"]
    bad_name = await admin.post(
        "/api/accounts", json={"username": "Bad Name", "password": GUARD_PASSWORD, "role": "guard"}
    )
    assert bad_name.status_code == 422
    assert set(await listed(admin)) == {"admin", "night-guard", "deputy"}
    audit = [(e["ok"], e["detail"]) for e in console_events(gateway, "create_account")]
    assert audit == [
        (True, "night-guard (guard)"),
        (True, "deputy (admin)"),
        (False, "account deputy exists"),
        (False, "x-ray: password too short"),
    ]
    stored = await asyncio.to_thread(password_hashes, gateway)
    assert len(stored) == 3 and all(h.startswith("$argon2id$") for h in stored)
    assert GUARD_PASSWORD not in json.dumps(console_events(gateway))


# --- disabling and enabling ---------------------------------------------------------------------------------


async def test_a_disabled_account_loses_its_sessions_and_cannot_log_in(
    app: FastAPI, admin: httpx.AsyncClient, guard: httpx.AsyncClient, gateway: Gateway
) -> None:
    async with client_for(app) as second:
        await log_in(second, "guard1", GUARD_PASSWORD)  # the guard is logged in twice
        assert (await listed(admin))["guard1"]["sessions"] == 2
        assert (await admin.post("/api/accounts/guard1/disable")).status_code == 200
        assert not await still_logged_in(guard)
        assert not await still_logged_in(second)
    account = (await listed(admin))["guard1"]
    assert account["disabled"] is True and account["disabled_at"] and account["sessions"] == 0

    # The right password gets the same answer as a wrong one; the audit trail says why.
    async with client_for(app) as client:
        response = await client.post("/api/login", json={"username": "guard1", "password": GUARD_PASSWORD})
        assert response.status_code == 401 and response.json() == {"detail": "wrong name or password"}
    assert console_events(gateway, "login")[-1]["detail"] == "account disabled"

    assert (await admin.post("/api/accounts/guard1/enable")).status_code == 200
    assert (await listed(admin))["guard1"]["disabled"] is False
    assert await login_status(app, "guard1", GUARD_PASSWORD) == 200
    audit = [
        (e["action"], e["by"], e["ok"], e["detail"])
        for e in console_events(gateway, "disable_account", "enable_account")
    ]
    assert audit == [
        ("disable_account", "admin", True, "guard1; 2 session(s) ended"),
        ("enable_account", "admin", True, "guard1"),
    ]


async def test_unknown_account_is_404(admin: httpx.AsyncClient, gateway: Gateway) -> None:
    for path, body in [
        ("/api/accounts/nobody/disable", None),
        ("/api/accounts/nobody/enable", None),
        ("/api/accounts/nobody/role", {"role": "admin"}),
        ("/api/accounts/nobody/password", {"password": NEW_PASSWORD}),
    ]:
        response = await admin.post(path, json=body)
        assert response.status_code == 404 and response.json() == {"detail": "no account nobody"}, path
    assert (
        len(console_events(gateway, "disable_account", "enable_account", "set_role", "reset_password")) == 4
    )


async def test_the_last_enabled_admin_can_be_neither_disabled_nor_demoted(
    app: FastAPI, admin: httpx.AsyncClient, guard: httpx.AsyncClient, gateway: Gateway
) -> None:
    assert (await admin.post("/api/accounts/admin/disable")).status_code == 409
    demote = await admin.post("/api/accounts/admin/role", json={"role": "guard"})
    assert demote.status_code == 409 and demote.json() == {"detail": "admin is the last enabled admin"}
    assert await still_logged_in(admin)

    # With a second admin, one may go; a disabled admin does not count as the second one.
    created = await admin.post(
        "/api/accounts", json={"username": "deputy", "password": GUARD_PASSWORD, "role": "admin"}
    )
    assert created.status_code == 201
    assert (await admin.post("/api/accounts/deputy/disable")).status_code == 200
    assert (await admin.post("/api/accounts/admin/disable")).status_code == 409
    assert (await admin.post("/api/accounts/deputy/enable")).status_code == 200
    async with client_for(app) as deputy:
        await log_in(deputy, "deputy", GUARD_PASSWORD)
        assert (await deputy.post("/api/accounts/admin/disable")).status_code == 200
        assert not await still_logged_in(admin)  # a colleague's page ends at once
        assert (await deputy.post("/api/accounts/deputy/disable")).status_code == 409
        assert (await deputy.post("/api/accounts/deputy/role", json={"role": "guard"})).status_code == 409
    refusals = [
        (e["action"], e["ok"]) for e in console_events(gateway, "disable_account", "set_role") if not e["ok"]
    ]
    assert refusals == [
        ("disable_account", False),
        ("set_role", False),
        ("disable_account", False),
        ("disable_account", False),
        ("set_role", False),
    ]


async def test_the_live_stream_of_a_disabled_account_ends(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Over real uvicorn (the ASGI test transport does not stream): the guard's open event stream ends once
    the account is disabled, instead of running on with a session that is gone."""
    caplog.set_level(logging.WARNING, logger="edge.console.auth")
    async with (
        served(gateway) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30) as admin,
        httpx.AsyncClient(base_url=url, timeout=30) as guard,
    ):
        setup = {"code": logged_setup_code(caplog), "username": "admin", "password": ADMIN_PASSWORD}
        admin.headers["X-CSRF-Token"] = (await admin.post("/api/setup", json=setup)).json()["csrf_token"]
        account = {"username": "guard1", "password": GUARD_PASSWORD, "role": "guard"}
        assert (await admin.post("/api/accounts", json=account)).status_code == 201
        await log_in(guard, "guard1", GUARD_PASSWORD)
        async with guard.stream("GET", "/api/events/stream") as stream:
            lines = stream.aiter_lines()
            assert await anext(lines) == "retry: 3000"
            assert (await admin.post("/api/accounts/guard1/disable")).status_code == 200
            # Ends after at most the event that follows (here the audit of the disabling); the timeout only
            # keeps a broken build from hanging.
            rest = await asyncio.wait_for(collect(lines), 30)
        assert [line for line in rest if line.startswith("event: ")] == ["event: console"]
        assert (await guard.get("/api/events/stream")).status_code == 401


async def collect(lines: Any) -> list[str]:
    return [line async for line in lines]


def test_two_admins_disabling_each_other_at_once_leave_one(gateway: Gateway) -> None:
    """The last-admin check and the change are one transaction: of two racing disables, one is refused."""
    store = AccountStore(gateway.db_path)
    store.create("alpha", ADMIN_PASSWORD, Role.ADMIN)
    store.create("bravo", ADMIN_PASSWORD, Role.ADMIN)
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def disable(name: str) -> None:
        barrier.wait()
        try:
            store.set_disabled(name, True)
            outcomes[name] = "disabled"
        except LastAdminError:
            outcomes[name] = "refused"

    threads = [threading.Thread(target=disable, args=(n,)) for n in ("alpha", "bravo")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes.values()) == ["disabled", "refused"]
    enabled = [a.username for a in store.all_accounts() if a.role is Role.ADMIN and a.disabled_at is None]
    assert len(enabled) == 1 and store.has_admin()


# --- roles --------------------------------------------------------------------------------------------------


async def test_a_role_change_ends_the_accounts_sessions(
    app: FastAPI, admin: httpx.AsyncClient, guard: httpx.AsyncClient, gateway: Gateway
) -> None:
    assert (await admin.post("/api/accounts/guard1/role", json={"role": "admin"})).status_code == 200
    assert not await still_logged_in(guard)  # its session said "guard"
    async with client_for(app) as promoted:
        await log_in(promoted, "guard1", GUARD_PASSWORD)
        assert (await promoted.get("/api/session")).json()["role"] == "admin"
        assert (await promoted.post("/api/accounts/admin/role", json={"role": "guard"})).status_code == 200
        assert (await promoted.get("/api/accounts")).status_code == 200
    assert not await still_logged_in(admin)
    async with client_for(app) as demoted:
        await log_in(demoted, "admin", ADMIN_PASSWORD)
        assert (await demoted.get("/api/accounts")).status_code == 403
    audit = [(e["by"], e["detail"]) for e in console_events(gateway, "set_role")]
    assert audit == [
        ("admin", "guard1 (admin); 1 session(s) ended"),
        ("guard1", "admin (guard); 1 session(s) ended"),
    ]


# --- passwords ----------------------------------------------------------------------------------------------


async def test_admin_resets_a_password_ending_sessions_and_lock_out(
    app: FastAPI, admin: httpx.AsyncClient, guard: httpx.AsyncClient, gateway: Gateway, clock: ManualClock
) -> None:
    for _ in range(SETTINGS.max_failures):
        await login_status(app, "guard1", "forgotten it")
    assert await login_status(app, "guard1", GUARD_PASSWORD) == 423
    short = await admin.post("/api/accounts/guard1/password", json={"password": "short"})
    assert short.status_code == 422
    reset = await admin.post("/api/accounts/guard1/password", json={"password": NEW_PASSWORD})
    assert reset.status_code == 200
    assert not await still_logged_in(guard)
    assert await login_status(app, "guard1", GUARD_PASSWORD) == 401
    assert await login_status(app, "guard1", NEW_PASSWORD) == 200  # the lock-out was lifted by the reset
    own = await admin.post("/api/accounts/admin/password", json={"password": NEW_PASSWORD})
    assert own.status_code == 409 and "/api/me/password" in own.json()["detail"]
    assert await login_status(app, "admin", ADMIN_PASSWORD) == 200
    audit = [(e["ok"], e["detail"]) for e in console_events(gateway, "reset_password")]
    assert audit == [
        (False, "guard1: password too short"),
        (True, "guard1; 1 session(s) ended"),
        (False, "change your own password with POST /api/me/password"),
    ]
    assert NEW_PASSWORD not in json.dumps(console_events(gateway))


@pytest.mark.parametrize("who", ["guard", "admin"])
async def test_anyone_changes_their_own_password(
    who: str, app: FastAPI, admin: httpx.AsyncClient, guard: httpx.AsyncClient, gateway: Gateway
) -> None:
    client, name, password = (
        (guard, "guard1", GUARD_PASSWORD) if who == "guard" else (admin, "admin", ADMIN_PASSWORD)
    )
    async with client_for(app) as other:
        await log_in(other, name, password)  # the same account on another screen
        wrong = await client.post(
            "/api/me/password", json={"current_password": "not it at all", "new_password": NEW_PASSWORD}
        )
        assert wrong.status_code == 403 and wrong.json() == {"detail": "wrong current password"}
        short = await client.post(
            "/api/me/password", json={"current_password": password, "new_password": "short"}
        )
        assert short.status_code == 422
        assert await still_logged_in(other)
        done = await client.post(
            "/api/me/password", json={"current_password": password, "new_password": NEW_PASSWORD}
        )
        assert done.status_code == 200
        assert await still_logged_in(client)  # the page that changed it stays
        assert not await still_logged_in(other)  # the other screen is logged out
    assert await login_status(app, name, password) == 401
    assert await login_status(app, name, NEW_PASSWORD) == 200
    audit = [(e["by"], e["ok"], e["detail"]) for e in console_events(gateway, "change_password")]
    assert audit == [
        (name, False, "wrong current password"),
        (name, False, "new password too short"),
        (name, True, "1 session(s) ended"),
    ]


async def test_guessing_the_current_password_locks_the_account_out(
    guard: httpx.AsyncClient, app: FastAPI, gateway: Gateway
) -> None:
    for _ in range(SETTINGS.max_failures):
        response = await guard.post(
            "/api/me/password", json={"current_password": "a guess, a guess", "new_password": NEW_PASSWORD}
        )
        assert response.status_code == 403
    locked = await guard.post(
        "/api/me/password", json={"current_password": GUARD_PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert locked.status_code == 423
    assert await login_status(app, "guard1", GUARD_PASSWORD) == 423
    assert (
        console_events(gateway, "change_password")[-2]["detail"]
        == "wrong current password; account locked out"
    )
