"""The browser side of the console's end-to-end tests: the console served by real uvicorn on the gateway's
event loop (edge.console.server, as `menwei run` does), and Debian's Chromium driven by Playwright.

Playwright never downloads a browser here: it launches /usr/bin/chromium (scripts/setup installs it) through
`executable_path`. The background-networking flags matter: without them Chromium phones home at start and,
on a machine with no outside network, hangs there.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from playwright.async_api import Browser, Page, async_playwright

from edge.config import ConsoleSection
from edge.console.server import ConsoleServer
from edge.gateway import Gateway

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1366, "height": 900}  # a booth PC; the layout also folds to one column on a tablet


def artifacts_dir() -> Path:
    """Where screenshots go: $MENWEI_ARTIFACTS, else <repo>/artifacts/console/ (git-ignored)."""
    path = Path(os.environ.get("MENWEI_ARTIFACTS") or ROOT / "artifacts" / "console")
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def served(gateway: Gateway) -> AsyncIterator[tuple[str, FastAPI]]:
    """The console served as `menwei run` serves it (ConsoleServer: uvicorn on this loop, the gateway's),
    over plain HTTP on a free loopback port; yields the base URL and the app."""
    server = ConsoleServer(gateway, ConsoleSection(address="127.0.0.1", port=free_port()))
    listening = await server.start()
    try:
        assert server.app is not None
        yield listening.url.rstrip("/"), server.app
    finally:
        await server.stop()


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    assert await asyncio.to_thread(CHROMIUM.exists), (
        f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium"
    )
    # Playwright gives each launch a fresh, temporary user-data dir of its own.
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def new_page(browser: Browser, base_url: str) -> AsyncIterator[Page]:
    """A fresh browser context (its own cookies and localStorage) with one page; console errors and
    CSP violations are collected on `page.problems` and fail the test that reads them."""
    context = await browser.new_context(base_url=base_url, viewport=VIEWPORT, locale="zh-CN")  # type: ignore[arg-type]
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.problems = problems  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        await context.close()


async def shot(page: Page, name: str) -> Path:
    path = artifacts_dir() / f"{name}.png"
    await page.screenshot(path=str(path), full_page=False)
    return path
