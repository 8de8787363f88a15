"""What the cloud link feeds into the pass runtime, without the network: server time believed only forward and
within the skew, the revocation list (refusal, persistence, forgetting by the trusted time only), and the own
use counts announced again after a reconnect."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from drivers.reader import CredentialRead
from edge.clock import ManualClock
from edge.config import load_config
from edge.devices import build_devices
from edge.gateway import Gateway
from edge.model import CredentialKind
from edge.passes.clock_guard import STATE_KEY as LKG_KEY
from edge.passes.issue import PassSigner
from edge.passes.uses import UseLedger, UseReport
from edge.store.codec import text_to_dt
from edge.store.db import open_db
from edge.store.revocation_store import put_revocations
from edge.store.state import get_state

from .conftest import NOW, MakeClaims

ROOT = Path(__file__).resolve().parents[3]


async def started(data_dir: Path, clock: ManualClock, *, ntp: bool = False) -> Gateway:
    cfg = load_config(ROOT / "config" / "demo.toml")
    cfg = cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"data_dir": data_dir})})
    gw = Gateway(cfg, build_devices(cfg), clock=clock)
    gw.passes.ntp_probe = lambda: ntp
    await gw.start()
    return gw


def scan(gw: Gateway, token: str) -> str:
    return gw.present(CredentialRead("lobby-a-in", CredentialKind.PASS, token)).reason.value


async def settle(gw: Gateway) -> None:
    """Let the runtime's background flush finish (bounded)."""
    for _ in range(1000):
        if not gw.passes._flushing:
            return
        await asyncio.sleep(0.01)
    pytest.fail("the pass runtime's flush did not finish")


async def test_server_time_is_taken_only_forward_and_within_the_skew(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    gw = await started(tmp_path, clock)
    try:
        guard = gw.passes.clock_guard

        def lkg() -> datetime | None:
            return guard.last_known_good

        assert lkg() is None
        assert gw.passes.observe_server_time(NOW - timedelta(hours=2)) is False  # a stale (retained) copy
        assert gw.passes.observe_server_time(NOW + timedelta(minutes=10)) is False  # or our clock is off
        assert lkg() is None
        assert gw.passes.observe_server_time(NOW + timedelta(seconds=1)) is True
        assert (lkg(), guard.source) == (NOW + timedelta(seconds=1), "server")
        assert gw.passes.observe_server_time(NOW) is False  # only forward
        assert lkg() == NOW + timedelta(seconds=1)
        clock.advance(30)
        assert gw.passes.observe_server_time(clock.now()) is True
    finally:
        await gw.stop()


async def test_server_time_makes_passes_work_without_ntp(
    tmp_path: Path, signer: PassSigner, make_claims: MakeClaims
) -> None:
    clock = ManualClock(NOW)
    gw = await started(tmp_path, clock)
    try:
        gw.passes.apply_trust_list([signer.trusted_key()], 1)
        token = signer.issue(make_claims(doors=("lobby-a",), max_uses=None))
        assert scan(gw, token) == "clock_untrusted"
        gw.passes.observe_server_time(NOW - timedelta(seconds=1))
        assert scan(gw, token) == "granted"
    finally:
        await gw.stop()


async def test_revocation_list_refuses_persists_and_is_forgotten_by_trusted_time(
    tmp_path: Path, signer: PassSigner, make_claims: MakeClaims
) -> None:
    clock = ManualClock(NOW)
    gw = await started(tmp_path, clock, ntp=True)
    until = NOW + timedelta(hours=3)
    token = signer.issue(make_claims(doors=("lobby-a",), max_uses=None))
    try:
        gw.passes.apply_trust_list([signer.trusted_key()], 1)
        assert scan(gw, token) == "granted"
        db = open_db(gw.db_path)
        try:
            put_revocations(db, {"V-7K2M9QXD4R": until})  # as the delta's transaction does
            put_revocations(
                db, {"V-7K2M9QXD4R": until - timedelta(hours=1)}
            )  # an earlier time does not shorten
        finally:
            db.close()
        gw.passes.revoke({"V-7K2M9QXD4R": until})
        assert scan(gw, token) == "pass_revoked"
    finally:
        await gw.stop()

    gw = await started(tmp_path, clock)  # no NTP: only the stored last-known-good time
    try:
        assert gw.passes.revoked == {"V-7K2M9QXD4R": until}
        assert scan(gw, token) == "pass_revoked"
        clock.set(until + timedelta(days=1))  # a wall clock set forward forgets nothing ...
        gw.passes._tick()
        assert "V-7K2M9QXD4R" in gw.passes.revoked
        gw.passes.observe_trusted_time(clock.now(), clock.monotonic(), "test")  # ... trusted time does
        gw.passes._tick()
        assert gw.passes.revoked == {}
        await settle(gw)
        with sqlite3.connect(gw.db_path) as conn:
            assert conn.execute("SELECT count(*) FROM pass_revocations").fetchone() == (0,)
    finally:
        await gw.stop()


async def test_a_revocation_is_kept_two_skews_past_the_pass_expiry(tmp_path: Path) -> None:
    # A pass verifies until its expiry plus one skew, and the clock guard trusts a wall clock set back by up
    # to one skew from the last-known-good time: forgetting after one skew would let a clock set back a
    # little make the revoked pass good again.
    clock = ManualClock(NOW)
    gw = await started(tmp_path, clock, ntp=True)
    try:
        skew = gw.passes.skew
        until = NOW + timedelta(hours=1)
        gw.passes.revoke({"V-7K2M9QXD4R": until})
        clock.set(until + 2 * skew - timedelta(seconds=1))
        gw.passes.observe_trusted_time(clock.now(), clock.monotonic(), "test")
        gw.passes._tick()
        assert "V-7K2M9QXD4R" in gw.passes.revoked
        clock.set(until + 2 * skew)
        gw.passes.observe_trusted_time(clock.now(), clock.monotonic(), "test")
        gw.passes._tick()
        assert gw.passes.revoked == {}
        await settle(gw)
        db = open_db(gw.db_path)
        try:  # the last-known-good time that judged it is stored with the deletion
            assert text_to_dt(get_state(db, LKG_KEY)) >= until + 2 * skew
            assert db.conn.execute("SELECT count(*) FROM pass_revocations").fetchone() == (0,)
        finally:
            db.close()
    finally:
        await gw.stop()


def test_local_counts_are_the_latest_passes_used_here() -> None:
    ledger = UseLedger("gw-a", {})
    for pass_id in ("P1", "P2", "P3"):
        ledger.record_local(pass_id, NOW)
    ledger.record_local("P2", NOW)
    ledger.merge(UseReport("P4", "gw-b", 3, NOW))  # not used here: not ours to announce
    assert ledger.local_counts(10) == [("P1", 1), ("P2", 2), ("P3", 1)]
    assert ledger.local_counts(2) == [("P2", 2), ("P3", 1)]
    assert ledger.local_counts(0) == []
