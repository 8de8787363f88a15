"""Account management in the page, end to end: a real gateway (demo site, real SQLite), the console served by
real uvicorn on the gateway's loop (as `menwei run` does), and the page in Debian's headless Chromium.

An admin creates a guard account in the Accounts tab, the guard logs in with it, changes their password from
the user menu, and is logged out at once when the admin disables the account. Screenshots go to
$MENWEI_ARTIFACTS (default <repo>/artifacts/console/).
"""

# ruff: noqa: RUF001  (what a guard types and reads is Chinese, full-width punctuation included)

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, Page, expect

from edge.console.accounts import Role
from edge.demo_data import demo_access_list
from edge.devices import build_devices
from edge.gateway import Gateway
from tests.demo_site import demo_config
from tests.edge.console.console_browser import chromium, new_page, served, shot
from tests.edge.console.console_helpers import ADMIN_PASSWORD, GUARD_PASSWORD

NEW_PASSWORD = "night-shift-new-passphrase"


@pytest.fixture
async def live(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[tuple[Gateway, FastAPI]]:
    caplog.set_level(logging.WARNING, logger="edge.console.auth")
    cfg = demo_config(tmp_path)
    gateway = Gateway(cfg, build_devices(cfg))
    await gateway.start()
    try:
        now = datetime.now(UTC)
        await gateway.replace_access_list(demo_access_list(1, now, "side-door", list(gateway.site.doors)))
        async with served(gateway) as (url, app):
            app.state.url = url
            yield gateway, app
    finally:
        await gateway.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


def real_problems(page: Page) -> list[str]:
    """Console errors and CSP violations, less the failed-request lines Chromium logs for the 401s and 403s
    the page expects (the session probe before login, a wrong current password)."""
    problems: list[str] = page.problems  # type: ignore[attr-defined]
    return [p for p in problems if not p.startswith("Failed to load resource")]


def console_events(gateway: Gateway) -> list[dict[str, Any]]:
    assert gateway.events is not None
    gateway.events.flush()
    with sqlite3.connect(gateway.db_path) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE type = 'console' ORDER BY seq").fetchall()
    return [json.loads(p) for (p,) in rows]


async def log_in(page: Page, username: str, password: str) -> None:
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-submit")
    await expect(page.locator("#main")).to_be_visible()
    await expect(page.locator("#user-name")).to_have_text(username)


async def test_an_admin_creates_a_guard_in_the_page_and_the_guard_logs_in(
    browser: Browser, live: tuple[Gateway, FastAPI]
) -> None:
    gateway, app = live
    await asyncio.to_thread(app.state.console.accounts.create, "admin", ADMIN_PASSWORD, Role.ADMIN)
    url: str = app.state.url
    async with new_page(browser, url) as admin, new_page(browser, url) as guard:
        await admin.goto("/")
        await log_in(admin, "admin", ADMIN_PASSWORD)
        await admin.click("#tab-accounts")
        await expect(admin.locator('#accounts [data-account="admin"]')).to_contain_text("我")

        await admin.fill("#account-username", "night-guard")
        await admin.select_option("#account-role", "guard")
        await admin.fill("#account-password", "too-short")
        await admin.fill("#account-password2", "too-short")
        await admin.click("#account-create")
        await expect(admin.locator("#account-error")).to_have_text("密码至少需要 12 个字符")
        await admin.fill("#account-password", GUARD_PASSWORD)
        await admin.fill("#account-password2", GUARD_PASSWORD)
        await admin.click("#account-create")
        await expect(admin.locator(".toast")).to_have_text("已创建账号 night-guard")
        row = admin.locator('#accounts [data-account="night-guard"]')
        await expect(row.locator(".role")).to_have_text("保安")
        await expect(row).to_contain_text("从未登录")
        await shot(admin, "20-accounts-created")

        # The guard logs in with the new account: no Accounts tab for a guard.
        await guard.goto("/")
        await log_in(guard, "night-guard", GUARD_PASSWORD)
        await expect(guard.locator("#user-role")).to_have_text("保安")
        await expect(guard.locator("#tab-accounts")).to_be_hidden()

        # ... and changes their password from the user menu; a wrong current password is refused.
        await guard.click("#user-menu summary")
        await expect(guard.locator("#me-password")).to_have_text("修改我的密码")
        await shot(guard, "20b-user-menu")
        await guard.click("#me-password")
        await guard.fill("#dialog-current", "not my password")
        await guard.fill("#dialog-password", NEW_PASSWORD)
        await guard.fill("#dialog-password2", NEW_PASSWORD)
        await guard.click("#dialog-confirm")
        await expect(guard.locator(".dialog-error")).to_have_text("当前密码错误")
        await guard.fill("#dialog-current", GUARD_PASSWORD)
        await shot(guard, "21-change-own-password")
        await guard.click("#dialog-confirm")
        await expect(guard.locator("#dialog")).to_be_hidden()
        await expect(guard.locator(".toast")).to_have_text("密码已修改")

        # The admin sees the session and disables the account: the guard's page is logged out.
        await admin.click("#tab-accounts")  # reload the list
        await expect(row).to_contain_text("1 处在线")
        await row.locator(".btn-account-disable").click()
        await expect(admin.locator("#dialog")).to_be_visible()
        await admin.click("#dialog-confirm")
        await expect(row.locator(".account-disabled")).to_have_text("已停用")
        await shot(admin, "22-account-disabled")
        await guard.click("#tab-lookup")
        await guard.fill("#lookup-q", "Zhang")
        await guard.press("#lookup-q", "Enter")
        await expect(guard.locator("#auth")).to_be_visible()
        await expect(guard.locator("#login-message")).to_have_text("登录已过期，请重新登录")
        await log_in_refused(guard, "night-guard", NEW_PASSWORD)
        assert real_problems(admin) == [] and real_problems(guard) == []

    audit = [(e["action"], e["by"], e["ok"]) for e in console_events(gateway) if e["action"] != "login"]
    assert ("create_account", "admin", False) in audit  # the short password
    assert ("create_account", "admin", True) in audit
    assert ("change_password", "night-guard", False) in audit
    assert ("change_password", "night-guard", True) in audit
    assert ("disable_account", "admin", True) in audit


async def log_in_refused(page: Page, username: str, password: str) -> None:
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-submit")
    await expect(page.locator("#login-message")).to_have_text("用户名或密码错误")
