"""Checking a pass with the gate camera (POST /api/passes/check-camera, GET /api/passes/cameras): a real
QrCameraReader on a spool folder that the test drops real QR images of real signed passes into, inside a
running demo gateway (its main gate entry reader configured as type "qr-camera" with spool = true). The check
uses nothing; the camera presents the next code at its door as before."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest
from fastapi import FastAPI

from drivers.qr.camera import QrCameraReader
from drivers.sim.door_controller import SimulatedDoorController
from drivers.sim.qr import qr_frame
from edge import config
from edge.clock import ManualClock
from edge.demo_data import demo_access_list
from edge.devices import build_devices
from edge.events import DecisionEvent, Event
from edge.gateway import Gateway
from edge.passes.claims import PassClaims
from edge.passes.issue import PassSigner
from tests.demo_site import demo_config

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CAMERA = "main-gate-in"  # the demo's main gate entry reader, here a QR camera


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def cloud() -> PassSigner:
    return PassSigner.generate()


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "camera-spool"
    path.mkdir()
    return path


@pytest.fixture
async def gateway(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock, cloud: PassSigner, spool: Path
) -> AsyncIterator[Gateway]:
    cfg = demo_config(tmp_path)
    if getattr(request, "param", True):  # the main gate's entry reader is a QR camera on a spool folder
        camera = config.QrCameraReader.model_validate(
            {"type": "qr-camera", "id": CAMERA, "door": "main-gate", "area": "compound"}
            | {"source": str(spool), "spool": True}
        )
        readers = [camera if r.id == CAMERA else r for r in cfg.readers]
        cfg = cfg.model_copy(update={"readers": readers})
    gw = Gateway(cfg, build_devices(cfg), clock=clock)
    gw.passes.ntp_probe = lambda: True  # the clock is trusted
    await gw.start()
    await gw.replace_access_list(demo_access_list(1, NOW, "side-door", list(gw.site.doors)))
    gw.passes.apply_trust_list([cloud.trusted_key()], 1)
    yield gw
    await gw.stop()


def signed_pass(signer: PassSigner, pass_id: str, label: str = "Ms. Li") -> str:
    return signer.issue(
        PassClaims(
            pass_id=pass_id,
            site="lotus-garden",
            doors=("main-gate",),
            not_before=NOW - timedelta(minutes=5),
            expires=NOW + timedelta(hours=2),
            issued_at=NOW - timedelta(minutes=5),
            max_uses=2,
            host_unit="A-1201",
            label=label,
        )
    )


def drop(spool: Path, name: str, token: str) -> None:
    """The visitor holds up the phone: a real QR image, renamed into the spool whole."""
    staging = spool.parent / f"{name}.png"
    assert cv2.imwrite(str(staging), qr_frame(token, module_px=4))
    staging.replace(spool / f"{name}.png")


def stored(gw: Gateway, kind: str) -> list[dict[str, Any]]:
    assert gw.events is not None
    gw.events.flush()
    with sqlite3.connect(gw.db_path) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE type = ? ORDER BY seq", (kind,)).fetchall()
    return [json.loads(p) for (p,) in rows]


def audits(gw: Gateway) -> list[dict[str, Any]]:
    return [e for e in stored(gw, "console") if e["action"] == "check_pass_camera"]


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - a reader attribute or a request task: nothing to await
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 30)


def camera_of(gw: Gateway) -> QrCameraReader:
    camera = gw.devices.readers[CAMERA]
    assert isinstance(camera, QrCameraReader)
    return camera


async def checked_while(
    check: Awaitable[httpx.Response], gw: Gateway, act: Callable[[], None]
) -> httpx.Response:
    """Start the check, wait until the camera is reserved for it, then `act` (drop an image)."""
    task = asyncio.ensure_future(check)
    await until(lambda: camera_of(gw).capturing or task.done())
    act()
    return await asyncio.wait_for(task, 60)


async def test_the_camera_is_listed(guard: httpx.AsyncClient, gateway: Gateway) -> None:
    response = await guard.get("/api/passes/cameras")
    assert response.status_code == 200, response.text
    assert response.json() == [{"id": CAMERA, "door_id": "main-gate", "online": True, "busy": False}]


async def test_a_camera_check_uses_nothing_then_the_camera_admits_at_its_door(
    guard: httpx.AsyncClient, gateway: Gateway, cloud: PassSigner, spool: Path
) -> None:
    token = signed_pass(cloud, "V-CAM-1")
    response = await checked_while(
        guard.post("/api/passes/check-camera", json={}), gateway, lambda: drop(spool, "0001", token)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["valid"] is True and body["reason"] == "granted" and body["admitted"] is False
    assert body["reader_id"] == CAMERA and body["door_id"] == "main-gate"
    assert body["pass"]["id"] == "V-CAM-1" and body["pass"]["visitor"] == "Ms. Li"
    assert body["pass"]["uses_left"] == 2
    assert token not in response.text  # the page never gets the token
    # A dry run: no decision, no use counted, the door still locked.
    assert stored(gateway, "decision") == []
    assert gateway.engine is not None and gateway.engine.state.pass_uses.get("V-CAM-1", 0) == 0
    assert gateway.runners["main-gate"].machine.state.value == "locked"
    controller = gateway.devices.controllers["sim-1"]
    assert isinstance(controller, SimulatedDoorController)
    released = controller.outputs[1]
    assert released is not True
    [audit] = audits(gateway)
    assert (audit["ok"], audit["by"], audit["detail"]) == (
        True,
        "guard1",
        f"pass V-CAM-1: granted (camera {CAMERA})",
    )
    assert token not in json.dumps(stored(gateway, "console"))

    # The next visitor holds up a pass: the camera presents it at its door as before.
    decided: list[DecisionEvent] = []

    def on_decision(event: Event) -> None:
        assert isinstance(event, DecisionEvent)
        decided.append(event)

    gateway.bus.subscribe(DecisionEvent, on_decision)
    drop(spool, "0002", signed_pass(cloud, "V-CAM-2", "Courier"))
    await until(lambda: bool(decided))
    [decision] = [e.decision for e in decided]
    assert (decision.reader_id, decision.pass_id, decision.granted) == (CAMERA, "V-CAM-2", True)
    assert controller.outputs[1] is True  # released
    assert camera_of(gateway).capturing is False


async def test_a_forged_pass_is_invalid(guard: httpx.AsyncClient, gateway: Gateway, spool: Path) -> None:
    forged = signed_pass(PassSigner.generate(), "V-FORGED")
    response = await checked_while(
        guard.post("/api/passes/check-camera", json={"reader_id": CAMERA}),
        gateway,
        lambda: drop(spool, "0001", forged),
    )
    assert response.status_code == 200, response.text
    assert response.json()["valid"] is False and response.json()["reason"] == "pass_unknown_key"
    assert [a["ok"] for a in audits(gateway)] == [False]


async def test_no_code_in_time_is_a_clear_timeout_and_frees_the_camera(
    admin: httpx.AsyncClient, gateway: Gateway, cloud: PassSigner, spool: Path
) -> None:
    response = await admin.post("/api/passes/check-camera", json={"timeout_s": 1})
    assert response.status_code == 504, response.text
    assert response.json() == {"detail": f"the camera {CAMERA} saw no QR code within 1 s"}
    assert camera_of(gateway).capturing is False
    assert [(a["ok"], a["by"], a["detail"]) for a in audits(gateway)] == [
        (False, "admin", f"camera {CAMERA}: no code within 1 s")
    ]
    decided: list[Event] = []
    gateway.bus.subscribe(DecisionEvent, decided.append)
    drop(spool, "0001", signed_pass(cloud, "V-CAM-3"))  # a code after the timeout goes to the door
    await until(lambda: bool(decided))


async def test_one_check_per_camera_at_a_time(
    guard: httpx.AsyncClient, admin: httpx.AsyncClient, gateway: Gateway, cloud: PassSigner, spool: Path
) -> None:
    first = asyncio.ensure_future(guard.post("/api/passes/check-camera", json={}))
    await until(lambda: camera_of(gateway).capturing or first.done())
    second = await admin.post("/api/passes/check-camera", json={})
    assert second.status_code == 409 and "already waiting" in second.json()["detail"]
    listed = (await admin.get("/api/passes/cameras")).json()
    assert listed[0]["busy"] is True
    drop(spool, "0001", signed_pass(cloud, "V-CAM-4"))
    assert (await asyncio.wait_for(first, 60)).json()["pass"]["id"] == "V-CAM-4"


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"reader_id": "side-door-in"}, 404, "no QR camera reader 'side-door-in'"),
        ({"timeout_s": 0}, 422, None),
        ({"timeout_s": 31}, 422, None),
        ({"token": "MW1:..."}, 422, None),
    ],
)
async def test_bad_requests(
    guard: httpx.AsyncClient, gateway: Gateway, body: dict[str, Any], status: int, detail: str | None
) -> None:
    response = await guard.post("/api/passes/check-camera", json=body)
    assert response.status_code == status, response.text
    if detail is not None:
        assert response.json()["detail"] == detail
    assert camera_of(gateway).capturing is False


@pytest.mark.parametrize("gateway", [False], indirect=True)
async def test_no_camera_reader_is_409(guard: httpx.AsyncClient, gateway: Gateway) -> None:
    assert (await guard.get("/api/passes/cameras")).json() == []
    response = await guard.post("/api/passes/check-camera", json={})
    assert response.status_code == 409
    assert response.json() == {"detail": "this gateway has no QR camera reader"}
    assert [(a["ok"], a["detail"]) for a in audits(gateway)] == [
        (False, "this gateway has no QR camera reader")
    ]


async def test_an_offline_camera_is_503(guard: httpx.AsyncClient, gateway: Gateway) -> None:
    camera = camera_of(gateway)
    await camera.stop()  # the camera went away
    response = await guard.post("/api/passes/check-camera", json={})
    assert response.status_code == 503 and response.json() == {"detail": f"the camera {CAMERA} is offline"}


async def test_a_console_that_stops_ends_a_waiting_check(
    app: FastAPI, guard: httpx.AsyncClient, gateway: Gateway
) -> None:
    async def stop_console() -> None:
        await until(lambda: camera_of(gateway).capturing)
        app.state.console.closing.set()  # what ConsoleServer.stop() does first

    response, _ = await asyncio.gather(guard.post("/api/passes/check-camera", json={}), stop_console())
    assert response.status_code == 503 and response.json() == {"detail": "the console is stopping"}
    assert camera_of(gateway).capturing is False


async def test_login_and_csrf_are_required(
    anon: httpx.AsyncClient, guard: httpx.AsyncClient, gateway: Gateway
) -> None:
    assert (await anon.get("/api/passes/cameras")).status_code == 401
    assert (await anon.post("/api/passes/check-camera", json={})).status_code == 401
    csrf = guard.headers.pop("X-CSRF-Token")
    response = await guard.post("/api/passes/check-camera", json={})
    assert response.status_code == 403 and "X-CSRF-Token" in response.json()["detail"]
    guard.headers["X-CSRF-Token"] = csrf
    assert camera_of(gateway).capturing is False
