"""The gateway runtime end to end with the shipped simulators: card -> decision -> bus -> relay, the durable
event log, persistence of modes and pass uses across a restart, device faults as alarms."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.reader import CredentialRead
from drivers.sim.door_controller import SimulatedDoorController
from drivers.sim.reader import SimulatedReader
from edge.decision import Reason
from edge.demo_data import GUARD_CARD, LI_CARD, UNKNOWN_CARD, ZHANG_CARD, demo_access_list
from edge.devices import build_devices
from edge.events import AlarmEvent, AlarmKind, DecisionEvent, Event
from edge.gateway import Gateway
from edge.model import Credential, CredentialKind, DoorMode
from edge.pin import pin_digest
from edge.store.audit import verify_chain
from tests.demo_site import demo_config

ROOT = Path(__file__).resolve().parents[2]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    cfg = demo_config(tmp_path)
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    await gw.replace_access_list(demo_access_list(1, datetime.now(UTC), "side-door", list(gw.site.doors)))
    yield gw
    await gw.stop()


def reader(gw: Gateway, rid: str) -> SimulatedReader:
    r = gw.devices.readers[rid]
    assert isinstance(r, SimulatedReader)
    return r


def controller(gw: Gateway) -> SimulatedDoorController:
    c = gw.devices.controllers["sim-1"]
    assert isinstance(c, SimulatedDoorController)
    return c


def stored(gw: Gateway) -> list[dict[str, object]]:
    assert gw.events is not None
    gw.events.flush()
    with sqlite3.connect(gw.db_path) as conn:
        return [json.loads(p) for (p,) in conn.execute("SELECT payload FROM events ORDER BY seq")]


async def test_card_opens_fail_secure_door_and_is_logged(gateway: Gateway) -> None:
    ctl = controller(gateway)
    assert ctl.outputs[1:2] == [False]  # fail-secure strike: de-energised = locked
    reader(gateway, "main-gate-in").present(CredentialKind.CARD, ZHANG_CARD)
    await settle()
    assert ctl.outputs[1:2] == [True]
    assert ctl.writes[-1].pulse_seconds == 5  # the unlock time travels with the command
    assert reader(gateway, "main-gate-in").feedback_log[-1].granted
    decisions = [e for e in stored(gateway) if e["type"] == "decision"]
    assert decisions[-1]["granted"] is True and decisions[-1]["person"] == "p-zhang"
    assert verify_chain(gateway.db_path).ok


async def test_fail_safe_door_is_de_energised_to_open(gateway: Gateway) -> None:
    ctl = controller(gateway)
    assert ctl.outputs[2] is True  # maglock: energised = locked
    reader(gateway, "side-door-in").present(CredentialKind.PASS, "V-1")
    await settle()
    assert ctl.outputs[2] is False


async def test_denied_card_leaves_relay_alone_and_gives_red_feedback(gateway: Gateway) -> None:
    ctl = controller(gateway)
    writes = len(ctl.writes)
    reader(gateway, "main-gate-in").present(CredentialKind.CARD, UNKNOWN_CARD)
    await settle()
    assert len(ctl.writes) == writes
    fb = reader(gateway, "main-gate-in").feedback_log[-1]
    assert (fb.granted, fb.reason) == (False, "unknown_credential")


async def test_door_inputs_reach_the_state_machine(gateway: Gateway) -> None:
    seen: list[Event] = []
    gateway.bus.subscribe(AlarmEvent, seen.append)
    ctl = controller(gateway)
    ctl.set_input(4, True)  # side door contact opens without a grant
    ctl.set_input(6, True)  # tamper
    ctl.set_input(4, False)
    kinds = [(e.kind, e.active) for e in seen if isinstance(e, AlarmEvent)]
    assert kinds == [
        (AlarmKind.DOOR_FORCED, True),
        (AlarmKind.TAMPER, True),
        (AlarmKind.DOOR_FORCED, False),
    ]
    ctl.set_input(8, True)  # lobby exit button
    await settle()
    assert ctl.outputs[3] is True


async def test_controller_offline_is_an_alarm_in_the_log(gateway: Gateway) -> None:
    controller(gateway).go_offline("bus timeout")
    controller(gateway).come_back()
    alarms = [e for e in stored(gateway) if e["type"] == "alarm"]
    assert [(a["alarm"], a["active"], a["device"]) for a in alarms][-2:] == [
        ("device_offline", True, "sim-1"),
        ("device_offline", False, "sim-1"),
    ]


async def test_modes_pass_uses_and_access_list_survive_a_restart(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    await gw.replace_access_list(demo_access_list(7, datetime.now(UTC), "side-door", list(gw.site.doors)))
    reader(gw, "side-door-in").present(CredentialKind.PASS, "V-7")
    gw.set_mode(DoorMode.LOCKDOWN, by="test")
    gw.set_mode(DoorMode.LOCKED, "lobby-a", by="test")
    await settle()
    await gw.stop()

    gw2 = Gateway(cfg, build_devices(cfg))
    await gw2.start()
    try:
        assert gw2.engine is not None and gw2.engine.acl.version == 7
        assert decide(gw2, "main-gate-in", LI_CARD) is Reason.LOCKDOWN
        assert decide(gw2, "main-gate-in", GUARD_CARD) is Reason.GRANTED_RESPONDER
        gw2.set_mode(DoorMode.NORMAL, by="test")  # lift the lockdown; the lobby stays locked
        await settle()
        assert decide(gw2, "lobby-a-in", LI_CARD) is Reason.DOOR_LOCKED
        assert decide(gw2, "side-door-in", "V-7", CredentialKind.PASS) is Reason.PASS_USED_UP
    finally:
        await gw2.stop()


def decide(gw: Gateway, rid: str, value: str, kind: CredentialKind = CredentialKind.CARD) -> Reason:
    return gw.present(CredentialRead(rid, kind, value)).reason


async def test_decisions_are_published_before_they_are_stored(gateway: Gateway) -> None:
    """The door does not wait for the disk: the decision is on the bus at once, stored a moment later."""
    got: list[DecisionEvent] = []
    gateway.bus.subscribe(DecisionEvent, lambda e: got.append(e) if isinstance(e, DecisionEvent) else None)
    before = len(stored(gateway))
    reader(gateway, "lobby-a-in").present(CredentialKind.CARD, LI_CARD)
    assert len(got) == 1  # synchronously, inside present()
    assert len(stored(gateway)) > before


async def test_stopping_twice_is_harmless(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    gw.present(CredentialRead("main-gate-in", CredentialKind.CARD, UNKNOWN_CARD))
    await gw.stop()
    await gw.stop()
    report = verify_chain(gw.db_path)
    assert report.ok and report.checked >= 1


async def test_pins_are_hashed_before_anything_sees_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = bytes(range(32))
    monkeypatch.setenv("MENWEI_SECRET_PIN_KEY", key.hex())
    cfg = demo_config(tmp_path)
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    try:
        acl = demo_access_list(2, datetime.now(UTC), "side-door", list(gw.site.doors))
        acl.credentials[(CredentialKind.PIN, pin_digest(key, "246810"))] = Credential(
            CredentialKind.PIN, pin_digest(key, "246810"), "p-li"
        )
        await gw.replace_access_list(acl)
        assert decide(gw, "lobby-a-in", "246810", CredentialKind.PIN) is Reason.GRANTED
        assert decide(gw, "lobby-a-in", "000000", CredentialKind.PIN) is Reason.UNKNOWN_CREDENTIAL
        assert decide(gw, "lobby-a-in", "12ab", CredentialKind.PIN) is Reason.UNKNOWN_CREDENTIAL
        logged = [e for e in stored(gw) if e.get("credential_kind") == "pin"]
        assert len(logged) == 3
        assert all("246810" not in str(e) and "000000" not in str(e) for e in logged)
    finally:
        await gw.stop()


async def test_without_a_pin_key_pins_are_refused(gateway: Gateway) -> None:
    assert decide(gateway, "lobby-a-in", "1234", CredentialKind.PIN) is Reason.UNKNOWN_CREDENTIAL
    assert all(e.get("credential") != "1234" for e in stored(gateway))
