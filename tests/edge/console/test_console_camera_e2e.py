"""The guard checks a visitor pass with the gate camera, in headless Chromium against the console served by
real uvicorn on a real gateway whose main-gate entry reader is a QR camera (a real QrCameraReader on a spool
folder; the test drops a real QR image of a real signed pass into it when the visitor "holds it up")."""

# ruff: noqa: RUF001  (what a guard reads is Chinese, full-width punctuation included)

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import pytest
from playwright.async_api import Page, expect

from drivers.qr.camera import QrCameraReader, SpoolFolderSource
from drivers.sim.qr import qr_frame
from edge.console.accounts import Role
from edge.demo_data import demo_access_list
from edge.devices import build_devices
from edge.gateway import Gateway
from edge.passes.claims import PassClaims
from edge.passes.issue import PassSigner
from tests.demo_site import demo_config
from tests.edge.console.console_browser import chromium, new_page, served, shot
from tests.edge.console.console_helpers import GUARD_PASSWORD

CAMERA = "main-gate-in"


def drop(spool: Path, name: str, token: str) -> None:
    staging = spool.parent / f"{name}.png"
    assert cv2.imwrite(str(staging), qr_frame(token, module_px=4))
    staging.replace(spool / f"{name}.png")


def stored(gw: Gateway, kind: str) -> list[dict[str, Any]]:
    assert gw.events is not None
    gw.events.flush()
    with sqlite3.connect(gw.db_path) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE type = ? ORDER BY seq", (kind,)).fetchall()
    return [json.loads(p) for (p,) in rows]


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - a reader attribute or the event log: nothing to await
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), 30)


def signed_pass(signer: PassSigner, gw: Gateway, pass_id: str) -> str:
    now = datetime.now(UTC).replace(microsecond=0)
    return signer.issue(
        PassClaims(
            pass_id=pass_id,
            site=gw.config.site.id,
            doors=("main-gate",),
            not_before=now - timedelta(minutes=5),
            expires=now + timedelta(hours=2),
            issued_at=now - timedelta(minutes=10),
            max_uses=2,
            host_unit="A-1201",
            label="Ms. Li",
        )
    )


@pytest.fixture
async def setup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[tuple[Gateway, str, Path, PassSigner]]:
    caplog.set_level(logging.WARNING, logger="edge.console.auth")
    spool = tmp_path / "camera-spool"
    spool.mkdir()
    cfg = demo_config(tmp_path)
    devices = build_devices(cfg)
    devices.readers[CAMERA] = QrCameraReader(CAMERA, lambda: SpoolFolderSource(spool))
    gateway = Gateway(cfg, devices)  # the real clock
    gateway.passes.ntp_probe = lambda: True
    await gateway.start()
    try:
        now = datetime.now(UTC)
        await gateway.replace_access_list(demo_access_list(1, now, "side-door", list(gateway.site.doors)))
        signer = PassSigner.generate()
        gateway.passes.apply_trust_list([signer.trusted_key()], 1)
        async with served(gateway) as (url, app):
            await asyncio.to_thread(app.state.console.accounts.create, "guard1", GUARD_PASSWORD, Role.GUARD)
            yield gateway, url, spool, signer
    finally:
        await gateway.stop()


async def test_a_guard_checks_a_pass_with_the_gate_camera(
    setup: tuple[Gateway, str, Path, PassSigner],
) -> None:
    gateway, url, spool, signer = setup
    camera = gateway.devices.readers[CAMERA]
    assert isinstance(camera, QrCameraReader)
    async with chromium() as browser, new_page(browser, url) as page:
        await log_in(page)
        button = page.locator("#camera-scan button")
        await expect(button).to_have_text("用门口摄像头扫码")
        result = page.locator("#pass-result")

        # The guard asks the visitor to hold the pass up to the camera, and gives up once.
        await button.click()
        await expect(result.locator(".pass-waiting")).to_contain_text("请访客把二维码对准摄像头（Main gate）")
        await expect(button).to_be_disabled()
        await until(lambda: camera.capturing)
        await shot(page, "20-camera-waiting")
        await result.locator(".pass-camera-cancel").click()
        await expect(result.locator(".pass-idle")).to_be_visible()
        await until(lambda: not camera.capturing)  # the gateway saw the request go and freed the camera

        # Again, and this time the visitor shows the pass.
        await button.click()
        await expect(result.locator(".pass-waiting")).to_be_visible()
        await until(lambda: camera.capturing)
        token = signed_pass(signer, gateway, "V-CAMERA-01")
        drop(spool, "0001", token)
        await expect(result).to_have_attribute("data-valid", "true")
        await expect(result.locator(".verdict-text")).to_have_text("有效")
        await expect(result.locator(".pass-visitor dd")).to_have_text("Ms. Li")
        await expect(result.locator(".pass-source")).to_have_text("由摄像头读取：Main gate（仅核验，未放行）")
        await expect(result.locator(".pass-admit")).to_have_count(0)  # the token stays on the gateway
        await expect(button).to_be_enabled()
        await shot(page, "21-camera-pass-valid")
        assert [e for e in stored(gateway, "decision") if e["credential_kind"] == "pass"] == []
        checks = [e for e in stored(gateway, "console") if e["action"] == "check_pass_camera"]
        assert [(c["ok"], c["detail"]) for c in checks] == [
            (False, f"camera {CAMERA}: cancelled"),
            (True, f"pass V-CAMERA-01: granted (camera {CAMERA})"),
        ]

        # The camera is the door's reader again: the next code it sees is decided there.
        drop(spool, "0002", signed_pass(signer, gateway, "V-CAMERA-02"))
        await until(lambda: any(e["pass"] == "V-CAMERA-02" for e in stored(gateway, "decision")))
        problems: list[str] = page.problems  # type: ignore[attr-defined]
        assert [p for p in problems if not p.startswith("Failed to load resource")] == []


async def log_in(page: Page) -> None:
    await page.goto("/")
    await page.fill("#login-username", "guard1")
    await page.fill("#login-password", GUARD_PASSWORD)
    await page.click("#login-submit")
    await expect(page.locator("#main")).to_be_visible()
