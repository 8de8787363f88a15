"""Pass use counts as rows (migration 9): one row per use instead of the whole ledger, restarts and old JSON
state keep every count, and a pass's counts are forgotten only once it can never be used again, judged by
the last-known-good time: a clock set back does not re-open a used-up pass, a wall clock set forward alone
does not forget early. Real gateway, real SQLite files, a ManualClock."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
import sqlite_utils

from drivers.reader import CredentialRead
from edge.clock import ManualClock
from edge.config import load_config
from edge.devices import build_devices
from edge.gateway import Gateway
from edge.model import CredentialKind
from edge.passes.issue import PassSigner
from edge.passes.uses import KEEP_UNKNOWN, UseReport
from edge.store.codec import dt_to_text
from edge.store.migrations import migrate
from edge.store.state import get_state, put_state

from .conftest import NOW, SKEW, MakeClaims

ROOT = Path(__file__).resolve().parents[3]
GW = "gw-demo"  # config/demo.toml
EXP = NOW + timedelta(hours=3)  # make_claims' default expiry


async def started(data_dir: Path, clock: ManualClock, cloud: PassSigner, *, ntp: bool = True) -> Gateway:
    cfg = load_config(ROOT / "config" / "demo.toml")
    cfg = cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"data_dir": data_dir})})
    gw = Gateway(cfg, build_devices(cfg), clock=clock)
    gw.passes.ntp_probe = lambda: ntp
    await gw.start()
    if gw.passes.trust.version == 0:
        gw.passes.apply_trust_list([cloud.trusted_key()], 1)
    await gw.passes.settled()
    return gw


def scan(gw: Gateway, token: str) -> str:
    return gw.present(CredentialRead("main-gate-in", CredentialKind.PASS, token)).reason.value


async def settled(gw: Gateway) -> None:
    await asyncio.wait_for(gw.passes.settled(), 30)


def stored_rows(gw: Gateway) -> dict[tuple[str, str], int]:
    with sqlite3.connect(gw.db_path) as conn:
        return {
            (p, g): n for p, g, n in conn.execute("SELECT pass_id, gateway_id, count FROM pass_use_counts")
        }


@pytest.fixture
def cloud() -> PassSigner:
    return PassSigner.generate()


async def test_a_use_writes_one_row_however_big_the_ledger(
    tmp_path: Path, cloud: PassSigner, make_claims: MakeClaims
) -> None:
    touched: list[int] = []
    for size, sub in ((10, "small"), (5000, "big")):
        clock = ManualClock(NOW)
        gw = await started(tmp_path / sub, clock, cloud)
        try:
            for i in range(size):  # other gateways' counts
                gw.passes.merge_use(UseReport(f"V-PEER-{i}", "gw-north", 1, NOW))
            await settled(gw)
            assert len(stored_rows(gw)) == size
            before = gw.passes.rows_written
            assert scan(gw, cloud.issue(make_claims(max_uses=2))) == "granted"
            await settled(gw)
            touched.append(gw.passes.rows_written - before)
            assert stored_rows(gw)[("V-7K2M9QXD4R", GW)] == 1
            with sqlite3.connect(gw.db_path) as conn:  # no JSON copy of the totals any more
                assert conn.execute("SELECT count(*) FROM state WHERE key LIKE 'pass_use%'").fetchone() == (
                    0,
                )
        finally:
            await gw.stop()
    assert touched == [1, 1]


async def test_counts_survive_a_restart(tmp_path: Path, cloud: PassSigner, make_claims: MakeClaims) -> None:
    clock = ManualClock(NOW)
    token = cloud.issue(make_claims(max_uses=2))
    gw = await started(tmp_path, clock, cloud)
    assert scan(gw, token) == "granted"
    gw.passes.merge_use(UseReport("V-7K2M9QXD4R", "gw-north", 1, NOW))
    await gw.stop()
    clock.advance(700)
    gw2 = await started(tmp_path, clock, cloud, ntp=False)
    try:
        assert gw2.passes.ledger.counts("V-7K2M9QXD4R") == {GW: 1, "gw-north": 1}
        assert gw2.passes.ledger.expiry("V-7K2M9QXD4R") == EXP
        assert scan(gw2, token) == "pass_used_up"
    finally:
        await gw2.stop()


async def test_old_json_state_moves_to_rows(
    tmp_path: Path, cloud: PassSigner, make_claims: MakeClaims
) -> None:
    db = sqlite_utils.Database(tmp_path / "menwei.db")  # a database of the release before migration 9
    assert migrate(db, target=8) == 8
    put_state(db, "pass_use_ledger", {"V-7K2M9QXD4R": {"gw-north": 1}, "V-JUNK": {"gw-x": "?"}})
    put_state(db, "pass_uses", {"V-7K2M9QXD4R": 2, "V-OLD": 1})  # V-OLD: counted before the ledger existed
    put_state(db, "pass_clock_lkg", dt_to_text(NOW - timedelta(hours=1)))
    db.close()
    clock = ManualClock(NOW)
    gw = await started(tmp_path, clock, cloud)
    try:
        assert gw.passes.ledger.counts("V-7K2M9QXD4R") == {"gw-north": 1, GW: 1}
        assert gw.passes.ledger.counts("V-OLD") == {GW: 1}
        assert stored_rows(gw) == {("V-7K2M9QXD4R", "gw-north"): 1, ("V-7K2M9QXD4R", GW): 1, ("V-OLD", GW): 1}
        with sqlite_utils.Database(gw.db_path) as check:
            assert get_state(check, "pass_use_ledger") is None and get_state(check, "pass_uses") is None
            seen = {s for (s,) in check.conn.execute("SELECT seen_at FROM pass_use_counts")}
        assert seen == {int((NOW - timedelta(hours=1)).timestamp())}  # the 400 days count from the stored LKG
        assert scan(gw, cloud.issue(make_claims(max_uses=2))) == "pass_used_up"
    finally:
        await gw.stop()
    gw2 = await started(tmp_path, clock, cloud)  # moved once: a restart reads the same rows
    try:
        assert gw2.engine is not None and gw2.engine.state.pass_uses == {"V-7K2M9QXD4R": 2, "V-OLD": 1}
    finally:
        await gw2.stop()


async def test_forgotten_after_expiry_plus_skew_by_lkg_and_a_clock_set_back_does_not_resurrect(
    tmp_path: Path, cloud: PassSigner, make_claims: MakeClaims
) -> None:
    clock = ManualClock(NOW)
    token = cloud.issue(make_claims(max_uses=1))
    gw = await started(tmp_path, clock, cloud)
    try:
        assert scan(gw, token) == "granted"
        await settled(gw)
        clock.set(EXP + 2 * SKEW - timedelta(seconds=1))  # NTP-synchronised: the wall clock is trusted
        gw.passes._tick()
        await settled(gw)
        assert gw.passes.ledger.total("V-7K2M9QXD4R") == 1 and len(stored_rows(gw)) == 1
        clock.set(EXP + 2 * SKEW)
        gw.passes._tick()
        await settled(gw)
        assert gw.passes.ledger.total("V-7K2M9QXD4R") == 0 and stored_rows(gw) == {}
        for back in (timedelta(seconds=1), SKEW, timedelta(hours=1)):  # set back to inside the window
            clock.set(EXP + SKEW - back)
            assert scan(gw, token) == "clock_untrusted"
    finally:
        await gw.stop()
    clock.set(EXP - timedelta(hours=1))  # and after a restart, still set back, without NTP
    gw2 = await started(tmp_path, clock, cloud, ntp=False)
    try:
        assert gw2.passes.clock_guard.last_known_good is not None
        assert gw2.passes.clock_guard.last_known_good >= EXP + 2 * SKEW
        assert scan(gw2, token) == "clock_untrusted"
    finally:
        await gw2.stop()


async def test_a_wall_clock_set_forward_alone_does_not_forget(
    tmp_path: Path, cloud: PassSigner, make_claims: MakeClaims
) -> None:
    clock = ManualClock(NOW)
    token = cloud.issue(make_claims(max_uses=1))
    gw = await started(tmp_path, clock, cloud)
    try:
        assert scan(gw, token) == "granted"
        gw.passes.ntp_probe = lambda: False  # NTP lost; then someone sets the clock a year ahead
        clock.set(NOW + timedelta(days=365))
        for _ in range(3):
            clock.advance(60)
            gw.passes._tick()
        await settled(gw)
        assert gw.passes.ledger.total("V-7K2M9QXD4R") == 1 and len(stored_rows(gw)) == 1
        clock.set(NOW + timedelta(minutes=3))  # set right again: the pass is still used up
        assert scan(gw, token) == "pass_used_up"
    finally:
        await gw.stop()


async def test_counts_known_only_from_peers(
    tmp_path: Path, cloud: PassSigner, make_claims: MakeClaims
) -> None:
    clock = ManualClock(NOW)
    gw = await started(tmp_path, clock, cloud)
    try:
        gw.passes.merge_use(UseReport("V-PEER", "gw-north", 1, NOW))
        gw.passes.merge_use(UseReport("V-7K2M9QXD4R", "gw-north", 1, NOW))
        # Scanning the token teaches this gateway the expiry (the scan itself is refused: used up elsewhere).
        assert scan(gw, cloud.issue(make_claims(max_uses=1))) == "pass_used_up"
        await settled(gw)
        assert gw.passes.ledger.expiry("V-7K2M9QXD4R") == EXP and gw.passes.ledger.expiry("V-PEER") is None
        clock.set(EXP + 2 * SKEW)
        gw.passes._tick()
        assert gw.passes.ledger.total("V-7K2M9QXD4R") == 0
        assert gw.passes.ledger.total("V-PEER") == 1  # expiry unknown: kept for KEEP_UNKNOWN
        clock.set(NOW + KEEP_UNKNOWN)
        gw.passes._tick()
        assert gw.passes.ledger.total("V-PEER") == 1
        clock.set(NOW + KEEP_UNKNOWN + 2 * SKEW)
        gw.passes._tick()
        await settled(gw)
        assert gw.passes.ledger.total("V-PEER") == 0 and stored_rows(gw) == {}
    finally:
        await gw.stop()


async def test_a_use_whose_write_failed_is_written_with_the_next_flush(
    tmp_path: Path, cloud: PassSigner, make_claims: MakeClaims, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(NOW)
    gw = await started(tmp_path, clock, cloud)
    try:
        real = gw.passes.db_path
        gw.passes.db_path = tmp_path / "gone" / "menwei.db"  # the card went away for a moment
        assert scan(gw, cloud.issue(make_claims(max_uses=1))) == "granted"
        for _ in range(3000):
            if "could not store visitor pass state" in caplog.text:
                break
            await asyncio.sleep(0.01)
        assert "could not store visitor pass state" in caplog.text
        assert stored_rows(gw) == {}
        gw.passes.db_path = real
        await settled(gw)
        assert stored_rows(gw) == {("V-7K2M9QXD4R", GW): 1}
    finally:
        await gw.stop()
