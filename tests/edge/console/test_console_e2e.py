"""The guard console end to end: a real gateway (demo site, simulated controllers and readers, real SQLite),
the console served by real uvicorn on the gateway's loop, and the page in headless Chromium.

What a guard does is what is tested: first-run setup with the code from the log, logging in, a card read
at a simulated reader showing up in the live feed, opening a door with a reason (and the gateway's audit
trail and door state behind it), checking a visitor pass by typing the token into the scan field as a
keyboard-wedge scanner does, the admin-only lockdown, alarms that wait for an acknowledgement, and the
language switch. Each step leaves a screenshot in $MENWEI_ARTIFACTS (default <repo>/artifacts/console/).
"""

# ruff: noqa: RUF001  (what a guard types and reads is Chinese, full-width punctuation included)

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from PIL import Image, ImageDraw
from playwright.async_api import Browser, Page, expect

from drivers.face.snapshots import SNAPSHOT_DIR, SnapshotStore
from drivers.sim.door_controller import SimulatedDoorController
from drivers.sim.reader import SimulatedReader
from edge.console.accounts import Role
from edge.decision import Reason
from edge.demo_data import LI_CARD, UNKNOWN_CARD, ZHANG_CARD, demo_access_list
from edge.devices import build_devices
from edge.events import AlarmKind, DoorState
from edge.gateway import Gateway
from edge.model import CredentialKind, DoorMode, PersonKind
from edge.passes.claims import PassClaims
from edge.passes.issue import PassSigner
from edge.passes.token import encode_token
from tests.demo_site import demo_config
from tests.edge.console.console_browser import chromium, new_page, served, shot
from tests.edge.console.console_helpers import ADMIN_PASSWORD, GUARD_PASSWORD, logged_setup_code

WALKIN_KEY = bytes(range(32))  # the gateway's own Ed25519 key for walk-in passes


@dataclass
class Live:
    gateway: Gateway
    app: FastAPI
    url: str
    setup_code: str
    signer: PassSigner  # the cloud's pass-issuing key, on this gateway's trust list

    def reader(self, reader_id: str) -> SimulatedReader:
        reader = self.gateway.devices.readers[reader_id]
        assert isinstance(reader, SimulatedReader)
        return reader

    def controller(self) -> SimulatedDoorController:
        controller = self.gateway.devices.controllers["sim-1"]
        assert isinstance(controller, SimulatedDoorController)
        return controller

    def stored(self, kind: str) -> list[dict[str, Any]]:
        assert self.gateway.events is not None
        self.gateway.events.flush()
        with sqlite3.connect(self.gateway.db_path) as conn:
            rows = conn.execute("SELECT payload FROM events WHERE type = ? ORDER BY seq", (kind,)).fetchall()
        return [json.loads(p) for (p,) in rows]

    async def add_account(self, username: str, password: str, role: Role) -> None:
        await asyncio.to_thread(self.app.state.console.accounts.create, username, password, role)

    def in_lockdown(self) -> bool:
        assert self.gateway.engine is not None
        return self.gateway.engine.state.lockdown

    def token(self, **overrides: Any) -> str:
        now = datetime.now(UTC).replace(microsecond=0)
        claims: dict[str, Any] = {
            "pass_id": "V-E2E0000001",
            "site": self.gateway.config.site.id,
            "doors": ("main-gate",),
            "not_before": now - timedelta(minutes=5),
            "expires": now + timedelta(hours=2),
            "issued_at": now - timedelta(minutes=10),
            "max_uses": 2,
            "host_unit": "A-1201",
            "label": "Ms. Li",
        }
        claims.update(overrides)
        return self.signer.issue(PassClaims(**claims))


@pytest.fixture
async def live(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Live]:
    caplog.set_level(logging.WARNING, logger="edge.console.auth")
    monkeypatch.setenv("MENWEI_SECRET_PASS_WALKIN_KEY", WALKIN_KEY.hex())  # walk-in passes on
    cfg = demo_config(tmp_path)
    cfg = cfg.model_copy(update={"passes": cfg.passes.model_copy(update={"walkin_doors": ["main-gate"]})})
    gateway = Gateway(cfg, build_devices(cfg))  # the real clock: the page shows real times
    gateway.passes.ntp_probe = lambda: True  # the clock is trusted, as after an NTP sync
    await gateway.start()
    try:
        now = datetime.now(UTC)
        await gateway.replace_access_list(demo_access_list(1, now, "side-door", list(gateway.site.doors)))
        signer = PassSigner.generate()
        gateway.passes.apply_trust_list([signer.trusted_key()], 1)
        async with served(gateway) as (url, app):
            code = logged_setup_code(caplog)
            assert code is not None, "the console logs a one-time setup code while it has no admin"
            yield Live(gateway, app, url, code, signer)
    finally:
        await gateway.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


@pytest.fixture
async def page(browser: Browser, live: Live) -> AsyncIterator[Page]:
    async with new_page(browser, live.url) as p:
        yield p
        assert real_problems(p) == []


def real_problems(page: Page) -> list[str]:
    """Console errors and CSP violations, less the failed-request lines Chromium logs for every 401/404 the
    page expects (the session probe before login, a panel the gateway does not offer)."""
    problems: list[str] = page.problems  # type: ignore[attr-defined]
    return [p for p in problems if not p.startswith("Failed to load resource")]


# --- steps a guard takes --------------------------------------------------------------------------------


async def log_in(page: Page, username: str, password: str) -> None:
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-submit")
    await expect(page.locator("#main")).to_be_visible()
    await expect(page.locator("#user-name")).to_have_text(username)


async def log_out(page: Page) -> None:
    await page.click("#logout")
    await expect(page.locator("#auth")).to_be_visible()


async def as_guard(page: Page, live: Live) -> None:
    """A guard logs in (the accounts are made in the console's store: first-run setup is a test of its own)."""
    await live.add_account("admin", ADMIN_PASSWORD, Role.ADMIN)
    await live.add_account("guard1", GUARD_PASSWORD, Role.GUARD)
    await page.goto("/")
    await log_in(page, "guard1", GUARD_PASSWORD)
    await expect(page.locator("#feed-status")).to_have_class(re.compile("feed-live"))


def door_tile(page: Page, door_id: str) -> Any:
    return page.locator(f'.door[data-door="{door_id}"]')


# --- the tests ------------------------------------------------------------------------------------------


async def test_first_run_setup_from_the_logged_code_then_a_guard_logs_in(page: Page, live: Live) -> None:
    await page.goto("/")
    await expect(page.locator("#login-form")).to_be_visible()
    await expect(page.locator("#login-submit")).to_have_text("登录")  # Chinese by default
    await shot(page, "01-login")

    await page.click("#tab-setup")
    await page.fill("#setup-code", "0000-wrong-code")
    await page.fill("#setup-username", "admin")
    await page.fill("#setup-password", ADMIN_PASSWORD)
    await page.fill("#setup-password2", ADMIN_PASSWORD)
    await page.click("#setup-submit")
    await expect(page.locator("#setup-message")).to_have_text("设置码错误")
    await page.fill("#setup-code", live.setup_code)
    await shot(page, "02-first-run")
    await page.click("#setup-submit")
    await expect(page.locator("#main")).to_be_visible()
    await expect(page.locator("#user-role")).to_have_text("管理员")
    await expect(page.locator("#site-name")).to_have_text(live.gateway.config.site.name)
    await expect(page.locator(".door")).to_have_count(len(live.gateway.site.doors))
    setups = [e for e in live.stored("console") if e["action"] == "setup"]
    assert [(e["by"], e["ok"]) for e in setups] == [("admin", False), ("admin", True)]

    await live.add_account("guard1", GUARD_PASSWORD, Role.GUARD)
    await log_out(page)
    await page.fill("#login-username", "guard1")
    await page.fill("#login-password", "not the password")
    await page.click("#login-submit")
    await expect(page.locator("#login-message")).to_have_text("用户名或密码错误")
    await log_in(page, "guard1", GUARD_PASSWORD)
    await expect(page.locator("#user-role")).to_have_text("保安")
    await shot(page, "03-guard-console")


async def test_a_card_read_arrives_in_the_live_feed(page: Page, live: Live) -> None:
    await as_guard(page, live)
    live.reader("main-gate-in").present(CredentialKind.CARD, ZHANG_CARD)
    granted = page.locator("#feed .ev-decision").first
    await expect(granted).to_have_class(re.compile("tone-granted"))
    await expect(granted.locator(".ev-door")).to_have_text("Main gate")
    await expect(granted.locator(".ev-text")).to_have_text("允许通行")
    await expect(granted.locator(".ev-cred")).to_have_text("卡")
    await expect(granted.locator(".ev-who")).to_have_text(
        "Zhang Wei"
    )  # the log keeps the id; the page the name

    live.reader("side-door-in").present(CredentialKind.CARD, UNKNOWN_CARD)
    denied = page.locator("#feed .ev-decision").first
    await expect(denied).to_have_class(re.compile("tone-denied"))
    await expect(denied.locator(".ev-door")).to_have_text("Pedestrian side door")
    await expect(denied.locator(".ev-text")).to_have_text("未登记的凭证")
    await expect(door_tile(page, "main-gate")).to_have_attribute("data-state", "unlocked")
    await shot(page, "04-live-feed")

    # The stream survives a page reload: the recent events come back from the log, newest first.
    await page.reload()
    await expect(page.locator("#feed-status")).to_have_class(re.compile("feed-live"))
    await expect(page.locator("#feed .ev-decision").first.locator(".ev-text")).to_have_text("未登记的凭证")
    live.reader("lobby-a-in").present(CredentialKind.CARD, LI_CARD)
    await expect(page.locator("#feed .ev-decision").first.locator(".ev-door")).to_have_text(
        "Building A lobby"
    )
    await page.set_viewport_size({"width": 800, "height": 1280})  # the booth's tablet, upright: one column
    await shot(page, "04b-live-feed-tablet")


async def test_a_guard_opens_a_door_once_with_a_reason(page: Page, live: Live) -> None:
    await as_guard(page, live)
    tile = door_tile(page, "side-door")
    await expect(tile).to_have_attribute("data-state", "locked")
    await tile.locator(".btn-open").click()
    dialog = page.locator("#dialog")
    await expect(dialog).to_be_visible()
    await page.click("#dialog-confirm")  # no reason: refused in the page, nothing sent
    await expect(page.locator(".dialog-error")).to_have_text("请填写原因")
    assert live.stored("remote_open") == []
    await page.click(".chip >> nth=0")  # a quick reason, then the guard adds to it
    await page.locator("#dialog-input").press("End")
    await page.locator("#dialog-input").type("，顺丰")
    await shot(page, "05-open-door-reason")
    await page.click("#dialog-confirm")
    await expect(dialog).to_be_hidden()
    await expect(page.locator(".toast")).to_have_text("Pedestrian side door 已开门")
    await expect(tile).to_have_attribute("data-state", "unlocked")
    opened = page.locator("#feed .ev-remote_open").first
    await expect(opened.locator(".ev-text")).to_have_text("快递/外卖，顺丰")
    await shot(page, "06-door-opened")

    [audit] = live.stored("remote_open")
    assert (audit["door"], audit["by"], audit["reason"]) == ("side-door", "console:guard1", "快递/外卖，顺丰")
    assert live.gateway.runners["side-door"].machine.state.value == "unlocked"


async def test_scanning_a_pass_into_the_page(page: Page, live: Live) -> None:
    await as_guard(page, live)
    scan = page.locator("#scan")
    await expect(scan).to_be_focused()
    await page.click(".panel-title >> nth=0")  # a click elsewhere: the scan field takes the focus back
    await expect(scan).to_be_focused()

    # A keyboard-wedge scanner types the token and presses Enter, into whatever has the focus.
    await page.keyboard.type(live.token())
    await page.keyboard.press("Enter")
    result = page.locator("#pass-result")
    await expect(result).to_have_attribute("data-valid", "true")
    await expect(result.locator(".verdict-text")).to_have_text("有效")
    await expect(result.locator(".pass-visitor dd")).to_have_text("Ms. Li")
    await expect(scan).to_have_value("")
    await expect(scan).to_be_focused()
    await shot(page, "07-pass-valid")
    assert [
        e for e in live.stored("decision") if e["credential_kind"] == "pass"
    ] == []  # a check uses nothing

    await result.locator('.pass-admit button[data-door="main-gate"]').click()
    await expect(result.locator(".pass-admitted")).to_have_text("已放行：Main gate")
    [admitted] = [e for e in live.stored("decision") if e["credential_kind"] == "pass"]
    assert (
        admitted["granted"] is True and admitted["pass"] == "V-E2E0000001" and admitted["door"] == "main-gate"
    )

    now = datetime.now(UTC).replace(microsecond=0)
    forged = encode_token(
        PassClaims(
            pass_id="V-FORGED0001",
            site=live.gateway.config.site.id,
            doors=("main-gate",),
            not_before=now - timedelta(minutes=5),
            expires=now + timedelta(hours=2),
            issued_at=now - timedelta(minutes=10),
            label="Mallory",
        ),
        live.signer.kid,
        PassSigner.generate()._key.sign,  # signed by someone else under the cloud's key id
    )
    await scan.fill(forged)
    await scan.press("Enter")
    await expect(result).to_have_attribute("data-valid", "false")
    await expect(result.locator(".verdict-text")).to_have_text("无效")
    await expect(result.locator(".pass-reason")).to_have_text("签名无效（伪造或被篡改）")
    await expect(result.locator(".pass-admit")).to_have_count(0)
    await shot(page, "08-pass-forged")

    token = live.token()
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    await scan.fill(tampered)
    await scan.press("Enter")
    await expect(result).to_have_attribute("data-valid", "false")


async def test_a_walk_in_visitor_gets_a_printable_qr_pass_and_can_be_looked_up(
    page: Page, live: Live
) -> None:
    await as_guard(page, live)
    await page.fill("#visitor-name", "Ms. Wang")
    await page.fill("#visitor-host", "A-1201")
    await page.check('#visitor-form input[value="side-door"]')
    await page.fill('#visitor-form input[name="uses"]', "2")
    await page.click('#visitor-form button[type="submit"]')
    card = page.locator("#pass-card")
    await expect(card).to_be_visible()
    await expect(card.locator(".pass-visitor dd")).to_have_text("Ms. Wang")
    qr_width = await page.locator("#pass-qr").evaluate("(img) => img.complete ? img.naturalWidth : 0")
    assert qr_width > 100  # the PNG from the gateway decoded in the page (CSP allows data: images)
    await shot(page, "13-walk-in-pass")
    await page.emulate_media(media="print")
    await shot(page, "14-walk-in-print")
    await page.emulate_media(media="screen")
    [issued] = live.stored("walkin_registered")
    assert (issued["label"], issued["host_unit"], issued["doors"], issued["max_uses"]) == (
        "Ms. Wang",
        "A-1201",
        ["side-door"],
        2,
    )
    await expect(card).to_contain_text(issued["pass"])

    await page.click("#tab-lookup")
    await page.fill("#lookup-q", "1201")
    await page.press("#lookup-q", "Enter")
    await expect(page.locator(f'#lookup-results [data-pass="{issued["pass"]}"]')).to_contain_text("Ms. Wang")
    await expect(page.locator('#lookup-results [data-person="p-zhang"]')).to_contain_text("Zhang Wei")
    await shot(page, "15-lookup")
    await page.click("#tab-health")
    await expect(page.locator('#pane-health [data-device="sim-1"]')).to_have_class(re.compile(r"\bok\b"))
    await shot(page, "16-health")


async def test_lockdown_is_for_admins_only(page: Page, live: Live) -> None:
    await as_guard(page, live)
    await expect(page.locator("#site-controls button")).to_have_count(0)
    await log_out(page)
    await log_in(page, "admin", ADMIN_PASSWORD)
    await page.click("#btn-lockdown")
    await page.fill("#dialog-input", "演练：封锁全区")
    await shot(page, "09-lockdown-confirm")
    await page.click("#dialog-confirm")
    await expect(page.locator("#lockdown-banner")).to_be_visible()
    await expect(door_tile(page, "main-gate")).to_have_attribute("data-mode", "lockdown")
    await expect(door_tile(page, "main-gate").locator(".btn-open")).to_be_disabled()
    assert live.in_lockdown()
    await shot(page, "10-lockdown")

    await page.click("#btn-normal")
    await page.fill("#dialog-input", "演练结束")
    await page.click("#dialog-confirm")
    await expect(page.locator("#lockdown-banner")).to_be_hidden()
    await expect(door_tile(page, "main-gate")).to_have_attribute("data-mode", "normal")
    assert not live.in_lockdown()
    modes = [(m["mode"], m["by"], m["reason"]) for m in live.stored("mode") if m["door"] is None]
    assert modes == [("lockdown", "console:admin", "演练：封锁全区"), ("normal", "console:admin", "演练结束")]


async def test_a_forced_door_raises_an_alarm_until_acknowledged(page: Page, live: Live) -> None:
    await as_guard(page, live)
    live.controller().set_input(7, True)  # Building A lobby's contact opens with no grant: forced
    tile = door_tile(page, "lobby-a")
    await expect(tile).to_have_attribute("data-state", "forced")
    await expect(page.locator("#feed .ev-alarm").first).to_contain_text("强行开门")
    alarm = page.locator("#alarms .alarm").first
    await expect(alarm.locator(".alarm-kind")).to_have_text("强行开门")
    await expect(page.locator("#alarm-strip")).to_be_visible()
    await shot(page, "11-alarm")
    await alarm.locator(".btn-ack").click()
    await page.fill("#dialog-input", "巡查：门已关好")
    await page.click("#dialog-confirm")
    await expect(page.locator("#alarms .alarm")).to_have_count(0)
    await expect(page.locator("#alarm-strip")).to_be_hidden()
    await expect(page.locator("#alarms .alarms-none")).to_have_text("没有未处理的报警")
    [ack] = [e for e in live.stored("console") if e["action"] == "ack_alarm"]
    assert ack["ok"] is True and ack["by"] == "guard1" and ack["door"] == "lobby-a"
    assert "巡查：门已关好" in ack["detail"]


async def test_an_unknown_face_shows_its_snapshot_to_logged_in_staff(page: Page, live: Live) -> None:
    await as_guard(page, live)
    # What a face camera does on an unknown face: keep a small JPEG on the gateway, then report the outcome
    # (drivers/face/reader.py); the gateway raises a face_unknown alarm naming the file.
    picture = Image.new("RGB", (160, 160), (200, 170, 150))
    ImageDraw.Draw(picture).ellipse((40, 30, 120, 130), fill=(230, 200, 180), outline=(60, 40, 30), width=4)
    jpeg = io.BytesIO()
    picture.save(jpeg, "JPEG")
    store = SnapshotStore(live.gateway.config.gateway.data_dir / SNAPSHOT_DIR)
    saved = await asyncio.to_thread(store.save, "unknown-lobby-a-in", jpeg.getvalue())
    outcome = SimpleNamespace(kind="unknown", reason="unmatched face for 5 s")
    live.gateway._on_face_event("lobby-a-in", outcome, saved.name)

    row = page.locator("#feed .ev-alarm").first
    await expect(row.locator(".ev-who")).to_have_text("陌生人逗留")
    thumb = row.locator("img.ev-thumb")
    await expect(thumb).to_have_attribute("src", re.compile(r"^/api/events/\d+/thumbnail$"))
    await expect(thumb).to_have_js_property("complete", True)
    assert await thumb.evaluate("(img) => img.naturalWidth") == 160
    await expect(page.locator("#feed .ev-alarm")).to_have_count(1)  # the live copy gave way to the stored one
    await expect(page.locator("#alarms .alarm-kind").first).to_have_text("陌生人逗留")
    await shot(page, "17-face-snapshot")


async def test_the_language_switch_is_remembered(page: Page, live: Live) -> None:
    await as_guard(page, live)
    assert await page.evaluate("import('/i18n.js').then((m) => m.missingKeys())") == []
    await page.click("#lang-switch")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(door_tile(page, "main-gate").locator(".btn-open")).to_have_text("Open once")
    await expect(page.locator("#user-role")).to_have_text("Guard")
    await expect(page.locator("#lang-switch")).to_have_text("中文")
    live.reader("main-gate-in").present(CredentialKind.CARD, UNKNOWN_CARD)
    await expect(page.locator("#feed .ev-decision").first.locator(".ev-text")).to_have_text(
        "Unknown credential"
    )
    await shot(page, "12-english")
    await page.reload()  # remembered in localStorage
    await expect(door_tile(page, "main-gate").locator(".btn-open")).to_have_text("Open once")
    await page.click("#lang-switch")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    await expect(door_tile(page, "main-gate").locator(".btn-open")).to_have_text("开门一次")
    await expect(page.locator("#feed .ev-decision").first.locator(".ev-text")).to_have_text("未登记的凭证")


@pytest.mark.parametrize(
    ("prefix", "codes"),
    [
        ("reason", [r.value for r in Reason]),
        ("alarm", [k.value for k in AlarmKind]),
        ("door.state", [d.value for d in DoorState]),
        ("mode", [m.value for m in DoorMode]),
        ("cred", [c.value for c in CredentialKind]),
        ("kind", [k.value for k in PersonKind]),
    ],
)
def test_every_code_the_gateway_sends_is_translated(prefix: str, codes: list[str]) -> None:
    """Both tables (Chinese and English) name every decision reason, alarm, door state, mode and kind."""
    i18n = (Path(__file__).resolve().parents[3] / "edge/console/static/i18n.js").read_text(encoding="utf-8")
    for value in codes:
        assert i18n.count(f'  "{prefix}.{value}": ') == 2, f"{prefix}.{value} in zh-CN and en"
