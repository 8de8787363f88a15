"""BLE phone keys: the token scheme and its verifier (drift window, accept once, unknown and malformed
tokens), and BleReader through bleak's real BleakScanner with the replaying simulator backend."""

from __future__ import annotations

import asyncio
import secrets

import bleak  # noqa: F401 (scripts/setup installs it; a missing one must fail)

from drivers.ble.reader import TEST_COMPANY_ID, BleReader
from drivers.ble.token import STEP_SECONDS, TokenVerifier, payload, token
from drivers.reader import CredentialRead
from drivers.sim.ble import Air, Phone, ReplayScanner
from edge.model import CredentialKind

T0 = 1_764_000_000.0  # a fixed "now"
ALICE, BOB = secrets.token_bytes(32), secrets.token_bytes(32)


def test_token_is_a_truncated_hmac_of_the_time_step() -> None:
    assert len(token(ALICE, 1)) == 8
    assert token(ALICE, 1) != token(ALICE, 2) != token(BOB, 2)
    assert payload(ALICE, T0)[0] == 1 and payload(ALICE, T0)[1:] == token(ALICE, int(T0 // STEP_SECONDS))
    assert payload(ALICE, T0) == payload(ALICE, T0 - T0 % STEP_SECONDS)  # stable within a step


def test_verifier_allows_one_step_of_drift_and_no_more() -> None:
    v = TokenVerifier({"alice": ALICE})
    assert v.verify(payload(ALICE, T0 - STEP_SECONDS), T0) == "alice"  # phone a step behind
    assert v.verify(payload(ALICE, T0 + STEP_SECONDS), T0) == "alice"  # phone a step ahead
    assert v.verify(payload(ALICE, T0 + 2 * STEP_SECONDS), T0) is None
    assert v.verify(payload(ALICE, T0 - 2 * STEP_SECONDS), T0) is None
    assert v.counters["unknown"] == 2


def test_each_token_is_accepted_once() -> None:
    v = TokenVerifier({"alice": ALICE, "bob": BOB})
    adv = payload(ALICE, T0)
    assert v.verify(adv, T0) == "alice"
    assert v.verify(adv, T0 + 1) is None  # the same advertisement again, or a recording of it
    assert v.verify(payload(BOB, T0), T0) == "bob"
    assert v.verify(payload(ALICE, T0 + STEP_SECONDS), T0 + STEP_SECONDS) == "alice"  # the next token
    assert v.verify(adv, T0 + STEP_SECONDS) is None  # still refused a step later
    assert v.counters["repeated"] == 2


def test_malformed_and_revoked() -> None:
    v = TokenVerifier({"alice": ALICE})
    assert v.verify(b"\x02" + token(ALICE, int(T0 // STEP_SECONDS)), T0) is None  # unknown version
    assert v.verify(b"\x01abc", T0) is None
    assert v.counters["malformed"] == 2
    v.set_keys({})
    assert v.verify(payload(ALICE, T0), T0) is None


async def test_reader_through_bleak_with_the_replay_backend() -> None:
    air = Air()
    now = [T0]
    reader = BleReader(
        "gate-ble",
        {"alice": ALICE},
        rssi_threshold=-70,
        backend=ReplayScanner,
        backend_kwargs={"air": air},
        clock=lambda: now[0],
    )
    reads: list[CredentialRead] = []
    reader.bind(reads.append)
    await reader.start()
    try:
        alice = Phone(ALICE, TEST_COMPANY_ID, clock=lambda: now[0])
        stranger = Phone(secrets.token_bytes(32), TEST_COMPANY_ID, address="5A:00:00:00:00:02")
        alice.advertise(air, rssi=-85)  # across the street: no intent
        alice.advertise(air, rssi=-50)
        alice.advertise(air, rssi=-48)  # the same token again: one credential per step
        stranger.advertise(air, rssi=-40)
        air.advertise("11:22:33:44:55:66", {0x004C: b"\x02\x15other"}, -40)  # another company's beacon
        now[0] += STEP_SECONDS
        alice.advertise(air, rssi=-50)
        await asyncio.sleep(0)
    finally:
        await reader.stop()
    assert reads == [CredentialRead("gate-ble", CredentialKind.BLE, "alice")] * 2
    assert reader.counters["far"] == 1 and reader.verifier.counters["unknown"] == 1
    assert air.scanners == []


def test_documented_test_vector() -> None:
    # docs/ble-phone-keys.md gives this to app teams: it must stay true.
    assert payload(bytes(range(32)), 1_764_000_000).hex() == "0113a7a70f0c2b6d64"
