"""The console's alarms (recorded by the gateway whether a console runs or not, kept until acknowledged, across
a restart), people look-up, health, and face snapshot thumbnails; each for both roles, refusals included."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from drivers.sim.door_controller import SimulatedDoorController
from edge.alarms import KEEP_ACKNOWLEDGED, AlarmStore
from edge.clock import ManualClock
from edge.console import create_app
from edge.console.scan import SLICE
from edge.console.snapshots import SNAPSHOT_DIR
from edge.demo_data import ZHANG_CARD
from edge.devices import build_devices
from edge.events import AlarmEvent, AlarmKind, DoorState
from edge.gateway import Gateway
from edge.model import AccessList, Credential, CredentialKind, Person
from tests.demo_site import demo_config
from tests.edge.console.console_helpers import (
    ADMIN_PASSWORD,
    GUARD_PASSWORD,
    SETTINGS,
    client_for,
    log_in,
    logged_setup_code,
)


def console_audits(gw: Gateway, action: str) -> list[dict[str, Any]]:
    assert gw.events is not None
    gw.events.flush()
    with sqlite3.connect(gw.db_path) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE type = 'console' ORDER BY seq").fetchall()
    return [e for e in (json.loads(p) for (p,) in rows) if e["action"] == action]


def force_open(gw: Gateway, door_id: str, is_open: bool) -> None:
    door = gw.site.doors[door_id]
    controller = gw.devices.controllers[door.controller]
    assert isinstance(controller, SimulatedDoorController) and door.contact_input is not None
    controller.set_input(door.contact_input, is_open)


# --- alarms -------------------------------------------------------------------------------------------------


async def test_a_forced_door_is_an_alarm_until_a_guard_acknowledges_it(
    guard: httpx.AsyncClient, admin: httpx.AsyncClient, gateway: Gateway
) -> None:
    assert (await guard.get("/api/alarms")).json() == []
    force_open(gateway, "side-door", True)
    assert gateway.runners["side-door"].machine.state is DoorState.FORCED
    force_open(gateway, "side-door", False)
    [alarm] = (await guard.get("/api/alarms")).json()
    assert alarm["kind"] == "door_forced" and alarm["door_id"] == "side-door"
    assert alarm["acknowledged"] is False and alarm["count"] == 1
    assert (await admin.get("/api/alarms")).json() == [alarm]  # the same list for every account
    # Forced again before anyone looked: the same alarm counts up instead of a second line.
    force_open(gateway, "side-door", True)
    force_open(gateway, "side-door", False)
    [again] = (await guard.get("/api/alarms")).json()
    assert again["id"] == alarm["id"] and again["count"] == 2
    response = await guard.post(f"/api/alarms/{alarm['id']}/ack", json={"note": "checked, door closed"})
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert (await guard.get("/api/alarms")).json() == []
    twice = await admin.post(f"/api/alarms/{alarm['id']}/ack", json={})
    assert twice.status_code == 409 and twice.json() == {
        "detail": f"alarm {alarm['id']} is already acknowledged"
    }
    acks = console_audits(gateway, "ack_alarm")
    assert [(a["by"], a["ok"], a["door"]) for a in acks] == [
        ("guard1", True, "side-door"),
        ("admin", False, "side-door"),
    ]
    assert acks[0]["detail"] == f"alarm {alarm['id']} (door_forced): checked, door closed"


async def test_alarm_refusals(guard: httpx.AsyncClient, anon: httpx.AsyncClient, gateway: Gateway) -> None:
    missing = await guard.post("/api/alarms/4242/ack", json={"note": "?"})
    assert missing.status_code == 404 and missing.json() == {"detail": "no alarm 4242"}
    assert (await guard.post("/api/alarms/x/ack", json={})).status_code == 422
    assert (await guard.post("/api/alarms/1/ack", json={"note": "n" * 501})).status_code == 422
    assert (await guard.post("/api/alarms/1/ack", json={"other": 1})).status_code == 422
    assert (await anon.get("/api/alarms")).status_code == 401
    assert (await anon.post("/api/alarms/1/ack", json={})).status_code == 401
    csrf = guard.headers.pop("X-CSRF-Token")
    assert (await guard.post("/api/alarms/1/ack", json={})).status_code == 403
    guard.headers["X-CSRF-Token"] = csrf
    assert [(a["ok"], a["detail"]) for a in console_audits(gateway, "ack_alarm")] == [
        (False, "no alarm 4242")
    ]


async def test_an_unacknowledged_alarm_survives_a_restart(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.console.auth")
    cfg = demo_config(tmp_path)
    gw = Gateway(cfg, build_devices(cfg), clock=clock)
    await gw.start()
    create_app(gw, SETTINGS)  # a console on the first run too: it does not own the alarms
    gw.bus.publish(AlarmEvent(at=clock.now(), kind=AlarmKind.TAMPER, door_id="main-gate", detail="cover off"))
    gw.bus.publish(AlarmEvent(at=clock.now(), kind=AlarmKind.DEVICE_OFFLINE, device_id="sim-1"))
    gw.bus.publish(AlarmEvent(at=clock.now(), kind=AlarmKind.DEVICE_OFFLINE, device_id="sim-1", active=False))
    await gw.stop()  # writes what is queued

    again = Gateway(cfg, build_devices(cfg), clock=clock)
    await again.start()
    try:
        caplog.clear()
        app = create_app(again, SETTINGS)
        code = logged_setup_code(caplog)
        async with client_for(app) as client:
            setup = await client.post(
                "/api/setup", json={"code": code, "username": "admin", "password": ADMIN_PASSWORD}
            )
            client.headers["X-CSRF-Token"] = setup.json()["csrf_token"]
            alarms = (await client.get("/api/alarms")).json()
    finally:
        await again.stop()
    assert [(a["kind"], a["door_id"], a["device_id"], a["cleared"]) for a in alarms] == [
        ("tamper", "main-gate", None, False),
        ("device_offline", None, "sim-1", True),  # cleared, but still to be acknowledged
    ]
    assert [a.kind for a in AlarmStore(gw.db_path).open_alarms()] == ["tamper", "device_offline"]


@asynccontextmanager
async def first_admin(app: Any, caplog: pytest.LogCaptureFixture) -> AsyncIterator[httpx.AsyncClient]:
    """A client logged in as the first admin, made with the setup code the new console logged."""
    code = logged_setup_code(caplog)
    async with client_for(app) as client:
        setup = await client.post(
            "/api/setup", json={"code": code, "username": "admin", "password": ADMIN_PASSWORD}
        )
        assert setup.status_code == 201, setup.text
        client.headers["X-CSRF-Token"] = setup.json()["csrf_token"]
        yield client


async def test_alarms_of_a_gateway_that_ran_without_a_console_show_once_one_is_created(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.console.auth")
    cfg = demo_config(tmp_path)
    assert cfg.console is None
    gw = Gateway(cfg, build_devices(cfg), clock=clock)  # no console at all on this run
    await gw.start()
    force_open(gw, "side-door", True)
    force_open(gw, "side-door", False)
    await gw.stop()

    again = Gateway(cfg, build_devices(cfg), clock=clock)
    await again.start()
    try:
        caplog.clear()
        app = create_app(again, SETTINGS)  # the site adds a console later
        async with first_admin(app, caplog) as client:
            [alarm] = (await client.get("/api/alarms")).json()
            assert (alarm["kind"], alarm["door_id"], alarm["cleared"]) == ("door_forced", "side-door", True)
            ack = await client.post(
                f"/api/alarms/{alarm['id']}/ack", json={"note": "seen on the morning shift"}
            )
            assert ack.status_code == 200
            assert (await client.get("/api/alarms")).json() == []
        acks = console_audits(again, "ack_alarm")
    finally:
        await again.stop()
    assert [(a["by"], a["ok"], a["door"]) for a in acks] == [("admin", True, "side-door")]


async def test_an_alarm_raised_before_the_console_was_created_shows(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.console.auth")
    cfg = demo_config(tmp_path)
    gw = Gateway(cfg, build_devices(cfg), clock=clock)
    await gw.start()
    try:
        force_open(gw, "side-door", True)  # forced while the console is down or restarting; still open
        controller = gw.devices.controllers["sim-1"]
        assert isinstance(controller, SimulatedDoorController)
        controller.go_offline("no answer on the bus")
        app = create_app(gw, SETTINGS)
        async with first_admin(app, caplog) as client:
            listed = (await client.get("/api/alarms")).json()
            assert [(a["kind"], a["door_id"], a["device_id"], a["cleared"]) for a in listed] == [
                ("door_forced", "side-door", None, False),
                ("device_offline", None, "sim-1", False),
            ]
            force_open(gw, "side-door", False)  # closed again and the controller back, with the console up
            controller.come_back()
            cleared = (await client.get("/api/alarms")).json()
            assert [(a["id"], a["cleared"], a["count"]) for a in cleared] == [
                (a["id"], True, 1) for a in listed
            ]
    finally:
        await gw.stop()


async def test_acknowledged_alarms_leave_the_table_after_a_week(
    guard: httpx.AsyncClient, gateway: Gateway, clock: ManualClock
) -> None:
    for door in ("main-gate", "side-door"):
        gateway.bus.publish(AlarmEvent(at=clock.now(), kind=AlarmKind.TAMPER, door_id=door))
    first, second = (await guard.get("/api/alarms")).json()
    assert (await guard.post(f"/api/alarms/{first['id']}/ack", json={})).status_code == 200
    clock.advance((KEEP_ACKNOWLEDGED + timedelta(hours=1)).total_seconds())
    await log_in(guard, "guard1", GUARD_PASSWORD)  # a week later: a new shift, a new session
    assert (await guard.post(f"/api/alarms/{second['id']}/ack", json={})).status_code == 200
    with sqlite3.connect(gateway.db_path) as conn:
        kept = [row[0] for row in conn.execute("SELECT id FROM console_alarms")]
    assert kept == [second["id"]]  # the week-old acknowledged one is gone; the event log keeps its audit


# --- people -------------------------------------------------------------------------------------------------


async def test_people_by_name_unit_and_card_digits(guard: httpx.AsyncClient, gateway: Gateway) -> None:
    everyone = (await guard.get("/api/people")).json()
    assert {p["id"] for p in everyone} == {"p-zhang", "p-li", "p-wang", "p-chen"}
    [zhang] = (await guard.get("/api/people", params={"q": "zhang"})).json()
    assert zhang["name"] == "Zhang Wei" and zhang["unit"] == "A-1201" and zhang["kind"] == "resident"
    assert zhang["credentials"] == [
        {"type": "card", "masked": "*" * min(4, len(ZHANG_CARD) - 4) + ZHANG_CARD[-4:]}
    ]
    assert ZHANG_CARD not in json.dumps(zhang) or len(ZHANG_CARD) <= 4
    assert zhang["face_enrolled"] is False
    assert [p["id"] for p in (await guard.get("/api/people", params={"q": "a-0803"})).json()] == ["p-li"]
    by_digits = (await guard.get("/api/people", params={"q": ZHANG_CARD[-3:]})).json()
    assert "p-zhang" in [p["id"] for p in by_digits]
    assert (await guard.get("/api/people", params={"q": "nobody here"})).json() == []
    searches = [(a["by"], a["detail"]) for a in console_audits(gateway, "search_people")]
    assert searches == [
        ("guard1", "'zhang': 1 found"),
        ("guard1", "'a-0803': 1 found"),
        ("guard1", f"{ZHANG_CARD[-3:]!r}: {len(by_digits)} found"),
        ("guard1", "'nobody here': 0 found"),
    ]  # the plain list (no q) is not a search


async def test_people_refusals(anon: httpx.AsyncClient, guard: httpx.AsyncClient) -> None:
    assert (await anon.get("/api/people")).status_code == 401
    assert (await guard.get("/api/people", params={"q": "x" * 101})).status_code == 422


# --- health -------------------------------------------------------------------------------------------------


async def test_health_of_an_offline_gateway(guard: httpx.AsyncClient, gateway: Gateway) -> None:
    health = (await guard.get("/api/health")).json()
    assert health["gateway_id"] == "gw-demo" and health["version"]
    assert health["access_list_version"] == 1 and health["people"] == 4
    assert health["sync"]["configured"] is False and health["sync"]["connected"] is None
    assert health["sync"]["outbox_depth"] >= 0
    devices = {(d["id"], d["kind"]): d["online"] for d in health["devices"]}
    assert devices[("sim-1", "controller")] is True
    assert ("main-gate-in", "reader") in devices
    assert health["clock_trusted"] is False and health["clock_detail"]  # no trusted time yet
    assert health["uptime_s"] >= 0


async def test_health_needs_a_login(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/api/health")).status_code == 401


# --- face snapshot thumbnails --------------------------------------------------------------------------------


async def test_a_face_alarm_has_a_thumbnail_for_logged_in_staff(
    guard: httpx.AsyncClient, anon: httpx.AsyncClient, gateway: Gateway
) -> None:
    name = "001772445600000-unknown-lobby-face.jpg"
    folder = gateway.config.gateway.data_dir / SNAPSHOT_DIR
    folder.mkdir()
    jpeg = b"\xff\xd8\xff\xe0 a face \xff\xd9"
    (folder / name).write_bytes(jpeg)
    gateway.bus.publish(
        AlarmEvent(
            at=gateway.clock.now(),
            kind=AlarmKind.FACE_UNKNOWN,
            door_id="lobby-a",
            device_id="lobby-face",
            detail=f"lingered unmatched; snapshot {name} kept on the gateway",
        )
    )
    assert gateway.events is not None
    gateway.events.flush()
    events = (await guard.get("/api/events", params={"limit": 5})).json()
    [face] = [e for e in events if e["event"].get("alarm") == "face_unknown"]
    assert face["event"]["snapshot"] == name
    picture = await guard.get(f"/api/events/{face['seq']}/thumbnail")
    assert picture.status_code == 200 and picture.content == jpeg
    assert (await guard.get(f"/api/events/{face['seq']}/thumbnail")).content == jpeg  # shown again
    views = console_audits(gateway, "view_snapshot")
    assert [(v["by"], v["detail"]) for v in views] == [("guard1", f"event {face['seq']}")]  # audited once
    assert picture.headers["content-type"] == "image/jpeg" and picture.headers["cache-control"] == "no-store"
    assert (await anon.get(f"/api/events/{face['seq']}/thumbnail")).status_code == 401
    others = [e for e in events if e["event"].get("alarm") != "face_unknown"]
    if others:
        assert (await guard.get(f"/api/events/{others[0]['seq']}/thumbnail")).status_code == 404
    (folder / name).unlink()  # deleted by retention
    gone = await guard.get(f"/api/events/{face['seq']}/thumbnail")
    assert gone.status_code == 404 and gone.json() == {"detail": f"no face snapshot for event {face['seq']}"}
    assert (await guard.get("/api/events/999999/thumbnail")).status_code == 404


async def test_a_snapshot_name_that_is_not_ours_is_never_opened(
    guard: httpx.AsyncClient, gateway: Gateway
) -> None:
    secret = gateway.config.gateway.data_dir / "menwei.db"
    gateway.bus.publish(
        AlarmEvent(
            at=gateway.clock.now(),
            kind=AlarmKind.FACE_SPOOF,
            detail=f"spoof; snapshot ../{secret.name} kept on the gateway",
        )
    )
    assert gateway.events is not None
    gateway.events.flush()
    [record] = [e for e in (await guard.get("/api/events")).json() if e["event"].get("alarm") == "face_spoof"]
    assert "snapshot" not in record["event"]
    assert (await guard.get(f"/api/events/{record['seq']}/thumbnail")).status_code == 404


async def test_logins_still_work_for_a_second_account(admin: httpx.AsyncClient, app: Any) -> None:
    # Guards the fixtures this module leans on: the admin made by the setup code can add a guard who logs in.
    created = await admin.post(
        "/api/accounts", json={"username": "guard2", "password": "another-long-password", "role": "guard"}
    )
    assert created.status_code == 201
    async with client_for(app) as client:
        await log_in(client, "guard2", "another-long-password")
        assert (await client.get("/api/alarms")).status_code == 200


async def test_a_search_of_a_big_access_list_lets_the_doors_in_between(
    guard: httpx.AsyncClient, gateway: Gateway
) -> None:
    # Not a timing: the search must hand the loop back between slices, so a card read waits for one slice at
    # most. Count how often another task gets to run during one request.
    people = [Person(f"px{i}", f"Visitor {i}", building="B", unit=str(i)) for i in range(5 * SLICE)]
    cards = [Credential(CredentialKind.CARD, str(70_000_000 + i), f"px{i}") for i in range(5 * SLICE)]
    await gateway.replace_access_list(AccessList.build(version=2, people=people, credentials=cards))
    turns = 0
    done = False

    async def bystander() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(bystander())
    try:
        found = (await guard.get("/api/people", params={"q": "no such name"})).json()
    finally:
        done = True
        await task
    assert found == []
    assert turns >= 5  # one turn at least per slice of the 5 * SLICE people
