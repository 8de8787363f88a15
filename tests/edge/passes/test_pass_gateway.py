"""Visitor pass tokens through the real gateway: a simulated reader presents the token string, the gateway
verifies it offline and decides, the relay opens, the reader gets its feedback, and the event log holds the
pass id (never the token). Use counts, the trust list and the last-known-good time survive a restart; a
use reported by another gateway of the site counts here; walk-in registration issues a pass and audits it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from drivers.sim.door_controller import SimulatedDoorController
from drivers.sim.reader import SimulatedReader
from edge.clock import ManualClock
from edge.config import GatewayConfig, load_config
from edge.demo_data import demo_access_list
from edge.devices import build_devices
from edge.events import Event
from edge.gateway import Gateway
from edge.model import CredentialKind, Status, VisitorPass
from edge.passes.claims import PassClaims
from edge.passes.errors import PassError, PassErrorReason
from edge.passes.events import PassUseEvent, WalkInEvent
from edge.passes.issue import PassSigner
from edge.passes.uses import UseReport
from edge.passes.walkin import WalkInRequest

from .conftest import NOW, MakeClaims

ROOT = Path(__file__).resolve().parents[3]
WALKIN_KEY = bytes(range(32))


def config(data_dir: Path) -> GatewayConfig:
    cfg = load_config(ROOT / "config" / "demo.toml")
    passes = cfg.passes.model_copy(update={"walkin_doors": ["main-gate"]})
    gateway = cfg.gateway.model_copy(update={"data_dir": data_dir})
    return cfg.model_copy(update={"gateway": gateway, "passes": passes})


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def started(data_dir: Path, clock: ManualClock, *, ntp: bool = True) -> Gateway:
    cfg = config(data_dir)
    gw = Gateway(cfg, build_devices(cfg), clock=clock)
    gw.passes.ntp_probe = lambda: ntp
    await gw.start()
    return gw


@pytest.fixture
def cloud() -> PassSigner:
    return PassSigner.generate()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
async def gateway(
    tmp_path: Path, clock: ManualClock, cloud: PassSigner, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Gateway]:
    monkeypatch.setenv("MENWEI_SECRET_PASS_WALKIN_KEY", WALKIN_KEY.hex())
    gw = await started(tmp_path, clock)
    await gw.replace_access_list(demo_access_list(1, NOW, "side-door", list(gw.site.doors)))
    gw.passes.apply_trust_list([cloud.trusted_key()], 1)
    yield gw
    await gw.stop()


def reader(gw: Gateway, rid: str = "main-gate-in") -> SimulatedReader:
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


async def scan(gw: Gateway, token: str, rid: str = "main-gate-in") -> tuple[bool, str]:
    reader(gw, rid).present(CredentialKind.PASS, token)
    await settle()
    fb = reader(gw, rid).feedback_log[-1]
    return fb.granted, fb.reason


async def test_scanned_pass_opens_the_gate_and_logs_the_pass_id(
    gateway: Gateway, cloud: PassSigner, make_claims: MakeClaims
) -> None:
    token = cloud.issue(make_claims())
    assert controller(gateway).outputs[1] is False
    assert await scan(gateway, token) == (True, "granted")
    assert controller(gateway).outputs[1] is True
    [decision] = [e for e in stored(gateway) if e["type"] == "decision"]
    assert decision["credential"] == decision["pass"] == "V-7K2M9QXD4R"
    assert decision["credential_kind"] == "pass" and decision["granted"] is True
    with sqlite3.connect(gateway.db_path) as conn:
        assert not [p for (p,) in conn.execute("SELECT payload FROM events") if token[4:40] in p]


async def test_one_time_pass_used_twice(
    gateway: Gateway, clock: ManualClock, cloud: PassSigner, make_claims: MakeClaims
) -> None:
    uses: list[Event] = []
    gateway.bus.subscribe(PassUseEvent, uses.append)
    token = cloud.issue(make_claims(max_uses=1))
    assert await scan(gateway, token) == (True, "granted")
    assert await scan(gateway, token, "side-door-in") == (False, "pass_wrong_door")
    clock.advance(700)  # past the anti-passback timeout
    assert await scan(gateway, token) == (False, "pass_used_up")
    assert [e.report.count for e in uses if isinstance(e, PassUseEvent)] == [1]


async def test_forged_pass_is_refused_and_logged_by_fingerprint(
    gateway: Gateway, cloud: PassSigner, make_claims: MakeClaims
) -> None:
    from edge.passes.token import encode_token

    forged = encode_token(make_claims(pass_id="V-FORGED"), cloud.kid, PassSigner.generate()._key.sign)
    writes = len(controller(gateway).writes)
    assert await scan(gateway, forged) == (False, "pass_bad_signature")
    assert len(controller(gateway).writes) == writes
    decision = [e for e in stored(gateway) if e["type"] == "decision"][-1]
    assert str(decision["credential"]).startswith("token:") and decision["pass"] is None


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"site": "pine-court"}, "pass_wrong_site"),
        ({"expires": NOW - timedelta(minutes=30)}, "pass_expired"),
        ({"not_before": NOW + timedelta(hours=1)}, "pass_not_yet_valid"),
    ],
)
async def test_refusals_reach_the_reader(
    gateway: Gateway, cloud: PassSigner, make_claims: MakeClaims, claims: dict[str, object], reason: str
) -> None:
    assert await scan(gateway, cloud.issue(make_claims(**claims))) == (False, reason)


async def test_unknown_and_retired_keys(gateway: Gateway, cloud: PassSigner, make_claims: MakeClaims) -> None:
    stranger = PassSigner.generate()
    assert await scan(gateway, stranger.issue(make_claims())) == (False, "pass_unknown_key")
    gateway.passes.merge_key(stranger.trusted_key())
    assert await scan(gateway, stranger.issue(make_claims(pass_id="V-2"))) == (True, "granted")
    gateway.passes.apply_trust_list([cloud.trusted_key()], 2)  # the stranger's key left out: retired now
    assert await scan(gateway, stranger.issue(make_claims(pass_id="V-3"))) == (False, "pass_key_retired")


async def test_revoked_through_the_access_list(
    gateway: Gateway, cloud: PassSigner, make_claims: MakeClaims
) -> None:
    claims = make_claims()
    acl = demo_access_list(2, NOW, "side-door", list(gateway.site.doors))
    acl.passes[claims.pass_id] = VisitorPass(
        claims.pass_id, claims.doors, claims.not_before, claims.expires, status=Status.REVOKED
    )
    await gateway.replace_access_list(acl)
    assert await scan(gateway, cloud.issue(claims)) == (False, "pass_revoked")


async def test_a_use_at_another_gateway_counts_here(
    gateway: Gateway, cloud: PassSigner, make_claims: MakeClaims
) -> None:
    token = cloud.issue(make_claims(max_uses=1))
    assert gateway.passes.merge_use(UseReport("V-7K2M9QXD4R", "gw-north", 1, NOW)) is True
    assert gateway.passes.merge_use(UseReport("V-7K2M9QXD4R", "gw-north", 1, NOW)) is False
    assert await scan(gateway, token) == (False, "pass_used_up")


async def test_untrusted_clock_refuses_passes(
    tmp_path: Path, clock: ManualClock, cloud: PassSigner, make_claims: MakeClaims
) -> None:
    gw = await started(tmp_path, clock, ntp=False)
    try:
        gw.passes.apply_trust_list([cloud.trusted_key()], 1)
        assert await scan(gw, cloud.issue(make_claims())) == (False, "clock_untrusted")
        gw.passes.observe_trusted_time(NOW, clock.monotonic(), "server")  # signed server time arrives
        assert await scan(gw, cloud.issue(make_claims())) == (True, "granted")
    finally:
        await gw.stop()


async def test_state_survives_a_restart(tmp_path: Path, cloud: PassSigner, make_claims: MakeClaims) -> None:
    clock = ManualClock(NOW)
    gw = await started(tmp_path, clock)
    gw.passes.apply_trust_list([cloud.trusted_key()], 5)
    token = cloud.issue(make_claims(max_uses=1))
    assert await scan(gw, token) == (True, "granted")
    gw.passes.merge_use(UseReport("V-OTHER", "gw-north", 2, NOW))
    await gw.stop()

    clock.advance(700)
    gw2 = await started(tmp_path, clock, ntp=False)  # no NTP now: the stored last-known-good time vouches
    try:
        assert gw2.passes.trust.version == 5 and gw2.passes.trust.get(cloud.kid) is not None
        assert gw2.passes.ledger.counts("V-OTHER") == {"gw-north": 2}
        assert await scan(gw2, token) == (False, "pass_used_up")
        clock.set(NOW - timedelta(days=1))  # the clock is set back a day
        assert await scan(gw2, cloud.issue(make_claims(pass_id="V-9"))) == (False, "clock_untrusted")
    finally:
        await gw2.stop()


# --- walk-in registration -----------------------------------------------------------------------------------


async def test_walk_in_pass_is_issued_audited_and_opens_the_gate(gateway: Gateway) -> None:
    desk = gateway.passes.walk_in
    assert desk is not None
    issued = desk.register(WalkInRequest(host_unit="a-1201", label="  Ms.  Li "), by="guard-wang")
    claims = issued.claims
    assert isinstance(claims, PassClaims)
    assert (claims.host_unit, claims.label, claims.doors, claims.max_uses) == (
        "A-1201",
        "Ms. Li",
        ("main-gate",),
        1,
    )
    assert claims.expires - claims.not_before == timedelta(hours=4)
    assert issued.qr_png().startswith(b"\x89PNG")
    assert await scan(gateway, issued.token) == (True, "granted")
    [audit] = [e for e in stored(gateway) if e["type"] == WalkInEvent.type]
    assert audit["pass"] == claims.pass_id and audit["by"] == "guard-wang" and audit["host_unit"] == "A-1201"
    assert audit["kid"] == desk.signer.kid.hex() and issued.token not in json.dumps(audit)


@pytest.mark.parametrize(
    ("request_", "detail"),
    [
        (WalkInRequest("Z-9999", "Courier"), "no active resident"),
        (WalkInRequest("A-1201", ""), "label"),
        (WalkInRequest("A-1201", "x" * 41), "label"),
        (WalkInRequest("A-1201", "Courier", door_ids=("garage",)), "unknown door"),
        (WalkInRequest("A-1201", "Courier", hours=25), "hours"),
        (WalkInRequest("A-1201", "Courier", uses=5), "uses"),
    ],
)
async def test_walk_in_registration_is_checked(
    gateway: Gateway, request_: WalkInRequest, detail: str
) -> None:
    assert gateway.passes.walk_in is not None
    with pytest.raises(PassError, match=detail) as info:
        gateway.passes.walk_in.register(request_, by="guard-wang")
    assert info.value.reason is PassErrorReason.INVALID_REQUEST


async def test_no_walk_in_key_no_walk_in_desk(tmp_path: Path, clock: ManualClock) -> None:
    gw = await started(tmp_path, clock)
    try:
        assert gw.passes.walk_in is None
    finally:
        await gw.stop()


async def test_walk_in_refused_while_the_clock_is_untrusted(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MENWEI_SECRET_PASS_WALKIN_KEY", WALKIN_KEY.hex())
    gw = await started(tmp_path, clock, ntp=False)
    try:
        await gw.replace_access_list(demo_access_list(1, NOW, "side-door", list(gw.site.doors)))
        assert gw.passes.walk_in is not None
        with pytest.raises(PassError) as info:
            gw.passes.walk_in.register(WalkInRequest("A-1201", "Courier"), by="guard-wang")
        assert info.value.reason is PassErrorReason.CLOCK_UNTRUSTED
    finally:
        await gw.stop()
