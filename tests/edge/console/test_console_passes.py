"""The console's visitor-pass endpoints: checking a scanned pass without using it, admitting its holder at a
door, registering a walk-in visitor, and listing passes; each for both roles, refusals included."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.clock import ManualClock
from edge.config import GatewayConfig
from edge.console.api_passes import REASON_TEXT
from edge.decision import Reason
from edge.demo_data import demo_access_list
from edge.devices import build_devices
from edge.gateway import Gateway
from edge.passes.claims import PassClaims
from edge.passes.issue import PassSigner
from tests.demo_site import demo_config

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
WALKIN_KEY = bytes(range(32))


def with_walk_ins(cfg: GatewayConfig) -> GatewayConfig:
    passes = cfg.passes.model_copy(update={"walkin_doors": ["main-gate"]})
    return cfg.model_copy(update={"passes": passes})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def cloud() -> PassSigner:
    return PassSigner.generate()


@pytest.fixture
async def gateway(
    tmp_path: Path, clock: ManualClock, cloud: PassSigner, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Gateway]:
    monkeypatch.setenv("MENWEI_SECRET_PASS_WALKIN_KEY", WALKIN_KEY.hex())
    cfg = with_walk_ins(demo_config(tmp_path))
    gw = Gateway(cfg, build_devices(cfg), clock=clock)
    gw.passes.ntp_probe = lambda: True  # the clock is trusted
    await gw.start()
    await gw.replace_access_list(demo_access_list(1, NOW, "side-door", list(gw.site.doors)))
    gw.passes.apply_trust_list([cloud.trusted_key()], 1)
    yield gw
    await gw.stop()


def signed_pass(signer: PassSigner, pass_id: str = "V-CLOUD-1", **changes: Any) -> str:
    terms: dict[str, Any] = {
        "pass_id": pass_id,
        "site": "lotus-garden",
        "doors": ("side-door",),
        "not_before": NOW - timedelta(minutes=5),
        "expires": NOW + timedelta(hours=2),
        "issued_at": NOW - timedelta(minutes=5),
        "max_uses": 2,
        "host_unit": "A-1201",
        "label": "Courier",
    }
    terms.update(changes)
    return signer.issue(PassClaims(**terms))


def stored(gw: Gateway, kind: str) -> list[dict[str, Any]]:
    assert gw.events is not None
    gw.events.flush()
    with sqlite3.connect(gw.db_path) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE type = ? ORDER BY seq", (kind,)).fetchall()
    return [json.loads(p) for (p,) in rows]


def audits(gw: Gateway, action: str) -> list[dict[str, Any]]:
    return [e for e in stored(gw, "console") if e["action"] == action]


# --- check --------------------------------------------------------------------------------------------------


async def test_a_good_pass_checks_valid_and_uses_nothing(
    guard: httpx.AsyncClient, gateway: Gateway, cloud: PassSigner
) -> None:
    token = signed_pass(cloud)
    for _ in range(3):  # a check uses nothing: the third still says 2 uses left
        response = await guard.post("/api/passes/check", json={"token": token})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["valid"] is True and body["reason"] == "granted" and body["admitted"] is False
        assert body["reason_text"] == REASON_TEXT[Reason.GRANTED]
        assert body["door_id"] == "side-door"  # its own door
        assert body["pass"] == {
            "id": "V-CLOUD-1",
            "visitor": "Courier",
            "host_unit": "A-1201",
            "valid_from": body["pass"]["valid_from"],
            "valid_until": body["pass"]["valid_until"],
            "doors": ["side-door"],
            "uses_left": 2,
        }
    assert stored(gateway, "decision") == []
    assert gateway.runners["side-door"].machine.state.value == "locked"
    checks = audits(gateway, "check_pass")
    assert [(c["ok"], c["detail"], c["by"]) for c in checks] == [
        (True, "pass V-CLOUD-1: granted", "guard1")
    ] * 3
    assert token not in json.dumps(stored(gateway, "console"))  # the token is never recorded


async def test_check_at_a_door_the_pass_does_not_open(guard: httpx.AsyncClient, cloud: PassSigner) -> None:
    body = (
        await guard.post("/api/passes/check", json={"token": signed_pass(cloud), "door_id": "main-gate"})
    ).json()
    assert body["valid"] is False and body["reason"] == "pass_wrong_door" and body["door_id"] == "main-gate"
    assert body["pass"]["id"] == "V-CLOUD-1"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda cloud: signed_pass(PassSigner.generate()), "pass_unknown_key"),
        (lambda cloud: signed_pass(cloud)[:-6] + "AAAAAA", None),  # damaged: bad signature or unreadable
        (lambda cloud: "MW1:NOT-A-PASS", "pass_malformed"),
        (
            lambda cloud: signed_pass(
                cloud,
                not_before=NOW - timedelta(hours=2),
                issued_at=NOW - timedelta(hours=2),
                expires=NOW - timedelta(minutes=10),  # beyond the clock-skew allowance
            ),
            "pass_expired",
        ),
        (lambda cloud: signed_pass(cloud, site="another-site"), "pass_wrong_site"),
        (lambda cloud: "V-999", "unknown_credential"),
    ],
)
async def test_bad_passes_are_invalid_with_their_reason(
    guard: httpx.AsyncClient, cloud: PassSigner, make: Any, reason: str | None
) -> None:
    response = await guard.post("/api/passes/check", json={"token": make(cloud)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["valid"] is False
    if reason is None:
        assert body["reason"] in {"pass_bad_signature", "pass_malformed"}
    else:
        assert body["reason"] == reason
    assert body["reason_text"] and body["admitted"] is False


async def test_an_access_list_pass_is_checked_by_its_id(guard: httpx.AsyncClient) -> None:
    body = (await guard.post("/api/passes/check", json={"token": "V-1"})).json()
    assert body["valid"] is True and body["pass"]["id"] == "V-1" and body["pass"]["uses_left"] == 1


async def test_admit_presents_the_pass_at_the_door(
    admin: httpx.AsyncClient, guard: httpx.AsyncClient, gateway: Gateway, cloud: PassSigner
) -> None:
    token = signed_pass(cloud)
    first = await guard.post(
        "/api/passes/check", json={"token": token, "door_id": "side-door", "admit": True}
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["valid"] is True and body["admitted"] is True and body["pass"]["uses_left"] == 1
    assert gateway.runners["side-door"].machine.state.value == "unlocked"
    second = (
        await admin.post("/api/passes/check", json={"token": token, "door_id": "side-door", "admit": True})
    ).json()
    assert second["admitted"] is True and second["pass"]["uses_left"] == 0
    third = (
        await guard.post("/api/passes/check", json={"token": token, "door_id": "side-door", "admit": True})
    ).json()
    assert third["valid"] is False and third["reason"] == "pass_used_up" and third["admitted"] is False
    decisions = stored(gateway, "decision")
    assert [(d["pass"], d["granted"], d["reason"]) for d in decisions] == [
        ("V-CLOUD-1", True, "granted"),
        ("V-CLOUD-1", True, "granted"),
    ]  # the refused third is a dry run: no decision, no use
    admits = audits(gateway, "admit_pass")
    assert [(a["by"], a["ok"], a["door"]) for a in admits] == [
        ("guard1", True, "side-door"),
        ("admin", True, "side-door"),
        ("guard1", False, "side-door"),
    ]


async def test_check_refusals(guard: httpx.AsyncClient, anon: httpx.AsyncClient, gateway: Gateway) -> None:
    unknown = await guard.post("/api/passes/check", json={"token": "V-1", "door_id": "no-such-door"})
    assert unknown.status_code == 404 and unknown.json() == {"detail": "no door 'no-such-door'"}
    no_door = await guard.post("/api/passes/check", json={"token": "V-1", "admit": True})
    assert no_door.status_code == 422 and no_door.json() == {"detail": "admit=true needs a door_id"}
    for bad in ({}, {"token": ""}, {"token": "V-1", "extra": 1}, {"token": "x" * 5000}, {"token": 5}):
        assert (await guard.post("/api/passes/check", json=bad)).status_code == 422, bad
    assert (await anon.post("/api/passes/check", json={"token": "V-1"})).status_code == 401
    csrf = guard.headers.pop("X-CSRF-Token")
    assert (await guard.post("/api/passes/check", json={"token": "V-1"})).status_code == 403
    guard.headers["X-CSRF-Token"] = csrf
    refusals = audits(gateway, "check_pass") + audits(gateway, "admit_pass")
    assert {(r["ok"], r["detail"]) for r in refusals} >= {
        (False, "no door 'no-such-door'"),
        (False, "admit without a door"),
    }


# --- walk-in visitors ---------------------------------------------------------------------------------------


async def test_a_guard_registers_a_walk_in_visitor(guard: httpx.AsyncClient, gateway: Gateway) -> None:
    response = await guard.post(
        "/api/visitors", json={"visitor": "Ms. Li", "host_unit": "a-1201", "hours": 2, "note": "parcel"}
    )
    assert response.status_code == 201, response.text
    issued = response.json()
    assert issued["pass_id"].startswith("W") and issued["token"].startswith("MW1:")
    assert issued["doors"] == ["main-gate"] and issued["uses"] == 1
    assert datetime.fromisoformat(issued["valid_until"]) - datetime.fromisoformat(issued["valid_from"]) == (
        timedelta(hours=2)
    )
    png = base64.b64decode(issued["qr_png_base64"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    [walk_in] = stored(gateway, "walkin_registered")
    assert walk_in["pass"] == issued["pass_id"] and walk_in["by"] == "console:guard1"
    assert walk_in["host_unit"] == "A-1201" and walk_in["label"] == "Ms. Li"
    [audit] = audits(gateway, "register_visitor")
    assert audit["ok"] is True and audit["detail"] == f"pass {issued['pass_id']} for A-1201; parcel"
    # The pass the gateway signed checks valid at once (it trusts its own key), offline.
    check = (await guard.post("/api/passes/check", json={"token": issued["token"]})).json()
    assert check["valid"] is True and check["door_id"] == "main-gate" and check["pass"]["visitor"] == "Ms. Li"
    listed = (await guard.get("/api/passes", params={"q": "ms. li"})).json()
    assert [(p["id"], p["host_unit"], p["uses"], p["revoked"]) for p in listed] == [
        (issued["pass_id"], "A-1201", 0, False)
    ]


async def test_walk_in_refusals(guard: httpx.AsyncClient, anon: httpx.AsyncClient, gateway: Gateway) -> None:
    nobody = await guard.post("/api/visitors", json={"visitor": "Mr. X", "host_unit": "Z-9999"})
    assert nobody.status_code == 422 and nobody.json() == {"detail": "no active resident in unit 'Z-9999'"}
    wrong_door = await guard.post(
        "/api/visitors", json={"visitor": "Mr. X", "host_unit": "A-1201", "doors": ["nowhere"]}
    )
    assert wrong_door.status_code == 422 and "unknown door 'nowhere'" in wrong_door.json()["detail"]
    for bad in ({"visitor": "", "host_unit": "A-1201"}, {"visitor": "x", "host_unit": "A-1201", "uses": 0}):
        assert (await guard.post("/api/visitors", json=bad)).status_code == 422
    assert (await anon.post("/api/visitors", json={"visitor": "x", "host_unit": "A-1201"})).status_code == 401
    assert stored(gateway, "walkin_registered") == []
    assert [a["ok"] for a in audits(gateway, "register_visitor")] == [False, False]


async def test_walk_ins_need_the_gateway_key(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from edge.console import create_app
    from tests.edge.console.console_helpers import ADMIN_PASSWORD, SETTINGS, client_for, logged_setup_code

    monkeypatch.delenv("MENWEI_SECRET_PASS_WALKIN_KEY", raising=False)
    cfg = with_walk_ins(demo_config(tmp_path / "no-key"))
    gw = Gateway(cfg, build_devices(cfg), clock=clock)
    await gw.start()
    try:
        caplog.set_level("WARNING", logger="edge.console.auth")
        app = create_app(gw, SETTINGS)
        async with client_for(app) as client:
            code = logged_setup_code(caplog)
            setup = await client.post(
                "/api/setup", json={"code": code, "username": "admin", "password": ADMIN_PASSWORD}
            )
            client.headers["X-CSRF-Token"] = setup.json()["csrf_token"]
            response = await client.post("/api/visitors", json={"visitor": "x", "host_unit": "A-1201"})
        assert response.status_code == 409
        assert "walk-in passes are not configured" in response.json()["detail"]
    finally:
        await gw.stop()


# --- the passes this gateway knows ---------------------------------------------------------------------------


async def test_passes_lists_access_list_passes_and_uses(
    admin: httpx.AsyncClient, gateway: Gateway, cloud: PassSigner
) -> None:
    token = signed_pass(cloud, pass_id="V-CLOUD-7")
    await admin.post("/api/passes/check", json={"token": token, "door_id": "side-door", "admit": True})
    everything = (await admin.get("/api/passes")).json()
    by_id = {p["id"]: p for p in everything}
    assert by_id["V-1"]["visitor"] == "Courier" and by_id["V-1"]["uses"] == 0
    assert by_id["V-CLOUD-7"]["uses"] == 1 and by_id["V-CLOUD-7"]["visitor"] is None  # known by its use
    assert [p["id"] for p in (await admin.get("/api/passes", params={"q": "cloud-7"})).json()] == [
        "V-CLOUD-7"
    ]
    assert (await admin.get("/api/passes", params={"q": "nothing-like-this"})).json() == []
    assert (await admin.get("/api/passes", params={"q": "x" * 101})).status_code == 422
    searches = [(a["by"], a["detail"]) for a in audits(gateway, "search_passes")]
    assert searches == [("admin", "'cloud-7': 1 found"), ("admin", "'nothing-like-this': 0 found")]
