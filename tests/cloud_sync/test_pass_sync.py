"""Visitor passes over the real broker: two gateways of one site, each with its own data directory and CloudSync,
and the backend's CloudKit.

- The trust list arrives retained on the site-wide topic, and its server time makes a gateway without NTP
  trust its clock; rotation, retirement, an old version, a conflicting key and garbage behave as documented.
- A one-time pass used at gateway A is refused (pass_used_up) at gateway B within a bounded wait; with B
  offline, B decides on its own counter, and both converge once B is back.
- revoke_pass for a pass the access list does not hold refuses the token, and survives a restart and a
  snapshot.
- Use reports that lie about their gateway, or are malformed, are refused like any down message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cloud_sync.kit import CloudKit
from cloud_sync.messages import (
    AclState,
    Delta,
    ErrorReport,
    GatewayStatus,
    PassUseCount,
    PassUses,
    RevokePass,
)
from cloud_sync.sync import CloudSync
from cloud_sync.topics import Topics

from drivers.reader import CredentialRead
from edge.config import GatewayConfig, MqttSection, load_config
from edge.demo_data import demo_access_list
from edge.devices import build_devices
from edge.gateway import Gateway
from edge.model import CredentialKind
from edge.passes.claims import PassClaims
from edge.passes.issue import PassSigner

if TYPE_CHECKING:
    from cloud_sync.broker import LocalBroker

    from tests.cloud_sync.conftest import Probe, ProbeFactory

ROOT = Path(__file__).resolve().parents[2]
SITE = "lotus-garden"
WAIT = 10.0


def config(data_dir: Path, gateway_id: str) -> GatewayConfig:
    cfg = load_config(ROOT / "config" / "demo.toml")
    gateway = cfg.gateway.model_copy(update={"id": gateway_id, "data_dir": data_dir})
    return cfg.model_copy(update={"gateway": gateway})


async def eventually(predicate: Callable[[], bool], what: str, within: float = WAIT) -> None:
    """Poll on the loop (the gateways keep running meanwhile); fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)


def claims(pass_id: str, *, max_uses: int | None = 1) -> PassClaims:
    now = datetime.now(UTC).replace(microsecond=0)
    return PassClaims(
        pass_id,
        SITE,
        ("lobby-a",),
        now - timedelta(hours=1),
        now + timedelta(hours=3),
        now,
        max_uses=max_uses,
    )


def scan(gw: Gateway, token: str, reader: str = "lobby-a-in") -> str:
    """Present a token at a reader without anti-passback (passes are scanned many times here)."""
    return gw.present(CredentialRead(reader, CredentialKind.PASS, token)).reason.value


def stored(gw: Gateway, kind: str) -> list[dict[str, object]]:
    assert gw.events is not None
    gw.events.flush()
    with sqlite3.connect(gw.db_path) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE type = ? ORDER BY seq", (kind,)).fetchall()
    return [json.loads(p) for (p,) in rows]


@dataclass
class Site:
    broker: LocalBroker
    kit: CloudKit
    cloud: PassSigner
    root: Path
    gateways: dict[str, Gateway] = field(default_factory=dict)
    syncs: dict[str, CloudSync] = field(default_factory=dict)

    def mqtt(self) -> MqttSection:
        return MqttSection(host=self.broker.host, port=self.broker.port, heartbeat_seconds=60)

    async def start_gateway(self, gid: str) -> Gateway:
        cfg = config(self.root / gid, gid)
        gw = Gateway(cfg, build_devices(cfg))
        gw.passes.ntp_probe = lambda: False  # trusted time only from the cloud link's server time
        await gw.start()
        if gw.engine is not None and gw.engine.acl.version == 0:
            await gw.replace_access_list(
                demo_access_list(1, datetime.now(UTC), "side-door", list(gw.site.doors))
            )
        self.gateways[gid] = gw
        return gw

    async def connect(self, gid: str) -> CloudSync:
        since = datetime.now(UTC) - timedelta(seconds=1)
        sync = CloudSync(self.gateways[gid], self.mqtt(), software_version="t", reconnect_delay=(1, 2))
        await sync.start()
        self.syncs[gid] = sync
        # status online is published after the SUBSCRIBE on the same connection: once the kit sees it (dated
        # after this call), the gateway's subscriptions are in place.
        await asyncio.to_thread(
            self.kit.wait_for, GatewayStatus, gid, lambda s: s.online and s.at >= since, timeout=WAIT
        )
        return sync

    async def disconnect(self, gid: str) -> None:
        await self.syncs.pop(gid).stop()

    async def push_trust(self, version: int, *keys: PassSigner) -> None:
        trusted = [k.trusted_key() for k in keys]
        await asyncio.to_thread(self.kit.push_trust_list, trusted, version)

    async def stop(self) -> None:
        for sync in self.syncs.values():
            await sync.stop()
        for gw in self.gateways.values():
            await gw.stop()


@pytest.fixture
async def site(broker: LocalBroker, tmp_path: Path) -> AsyncIterator[Site]:
    with CloudKit(broker.host, broker.port, "backend-1", SITE) as kit:
        s = Site(broker, kit, PassSigner.generate(), tmp_path)
        try:
            for gid in ("gw-a", "gw-b"):
                await s.start_gateway(gid)
                await s.connect(gid)
            yield s
        finally:
            await s.stop()


@pytest.fixture
def raw(site: Site, make_probe: ProbeFactory) -> Probe:
    """A plain MQTT client, for what the kit would never send."""
    probe = make_probe("raw-backend")
    probe.connect(site.broker.host, site.broker.port)
    assert probe.wait_connected()
    return probe


async def refused_on(site: Site, raw: Probe, topic: str, payload: bytes, gateway: str = "gw-a") -> str:
    """Publish `payload` and wait for `gateway`'s ErrorReport about it; its error code."""
    before = site.kit.latest(ErrorReport, gateway)
    assert raw.wait_published(raw.publish(topic, payload))
    report = await asyncio.to_thread(
        site.kit.wait_for,
        ErrorReport,
        gateway,
        lambda r: r is not before and r.topic == topic,
        timeout=WAIT,
    )
    return report.error


def trusted(gw: Gateway) -> bool:
    return gw.passes.trust.version >= 1 and gw.passes.clock_guard.last_known_good is not None


# --- the trust list ---------------------------------------------------------------------------------------------


async def test_trust_list_reaches_every_gateway_and_its_server_time_trusts_the_clock(site: Site) -> None:
    a, b = site.gateways["gw-a"], site.gateways["gw-b"]
    token = site.cloud.issue(claims("V-TRUST1", max_uses=None))
    assert scan(a, token) == "pass_unknown_key"
    await site.push_trust(1, site.cloud)
    await eventually(lambda: trusted(a) and trusted(b), "both gateways to take the trust list")
    assert a.passes.clock_guard.source == "server"
    assert scan(a, token) == "granted"
    assert scan(b, token) == "granted"
    # Stored: a restart of gateway B keeps the key and the last-known-good time.
    await site.disconnect("gw-b")
    await b.stop()
    b = await site.start_gateway("gw-b")
    assert b.passes.trust.version == 1 and len(b.passes.trust) == 1
    assert b.passes.clock_guard.last_known_good is not None


async def test_a_gateway_that_connects_later_gets_the_retained_list(site: Site) -> None:
    await site.push_trust(1, site.cloud)
    late = await site.start_gateway("gw-late")
    assert late.passes.trust.version == 0
    await site.connect("gw-late")
    await eventually(lambda: late.passes.trust.version == 1, "the retained trust list")
    # Its server time is seconds old here, within the skew, so it counts (a copy minutes old would not).
    assert late.passes.clock_guard.last_known_good is not None


async def test_rotation_retirement_and_replays(site: Site) -> None:
    a = site.gateways["gw-a"]
    new = PassSigner.generate()
    await site.push_trust(1, site.cloud)
    await eventually(lambda: trusted(a), "the first list")
    old_token = site.cloud.issue(claims("V-OLD", max_uses=None))
    new_token = new.issue(claims("V-NEW", max_uses=None))
    assert scan(a, new_token) == "pass_unknown_key"
    await site.push_trust(2, site.cloud, new)  # rotation: both trusted
    await eventually(lambda: a.passes.trust.version == 2, "version 2")
    assert (scan(a, old_token), scan(a, new_token)) == ("granted", "granted")
    await site.push_trust(3, new)  # the old key left out: retired as of now
    await eventually(lambda: a.passes.trust.version == 3, "version 3")
    assert scan(a, old_token) == "pass_key_retired"
    assert scan(a, new_token) == "granted"
    await site.push_trust(2, site.cloud, new)  # an old list again: ignored, the old key stays retired
    await site.push_trust(4, site.cloud, new)  # and a new list cannot bring it back either
    await eventually(lambda: a.passes.trust.version == 4, "version 4")
    assert scan(a, old_token) == "pass_key_retired"


async def test_bad_trust_lists_are_refused_and_change_nothing(
    site: Site, raw: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    a = site.gateways["gw-a"]
    await site.push_trust(1, site.cloud)
    await eventually(lambda: trusted(a), "the first list")
    await site.disconnect("gw-b")  # one gateway in this process, one warning line per refusal
    token = site.cloud.issue(claims("V-KEEP", max_uses=None))
    kid = site.cloud.trusted_key().kid.hex()
    good = {"kid": kid, "public_key": PassSigner.generate().trusted_key().public_key.hex()}
    topic = Topics(SITE, "gw-a").pass_trust
    cases = [
        (b"{not json", "not_json"),
        (
            json.dumps({"site": SITE, "version": 5, "keys": [{"kid": "zz", "public_key": "00"}]}).encode(),
            "schema",
        ),
        (json.dumps({"site": "elsewhere", "version": 5, "keys": []}).encode(), "wrong_site"),
        (
            json.dumps({"site": SITE, "version": 5, "keys": [good]}).encode(),
            "rejected",
        ),  # kid names another key
    ]
    caplog.set_level(logging.WARNING, logger="cloud_sync.downlink")
    for payload, error in cases:
        caplog.clear()
        assert await refused_on(site, raw, topic, payload) == error
        warnings = [r for r in caplog.records if r.name == "cloud_sync.downlink" and r.levelname == "WARNING"]
        assert len(warnings) == 1 and "refused" in warnings[0].getMessage()
        assert a.passes.trust.version == 1 and scan(a, token) == "granted"
    assert [e["error"] for e in stored(a, "sync_error")] == [error for _, error in cases]
    with sqlite3.connect(a.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM pass_keys").fetchone() == (1,)


# --- use counts ---------------------------------------------------------------------------------------------------


async def test_a_one_time_pass_used_at_a_is_refused_at_b(site: Site) -> None:
    a, b = site.gateways["gw-a"], site.gateways["gw-b"]
    await site.push_trust(1, site.cloud)
    await eventually(lambda: trusted(a) and trusted(b), "the trust list")
    uses: list[PassUses] = []
    site.kit.watch(PassUses, lambda _gw, msg: uses.append(msg))
    token = site.cloud.issue(claims("V-ONCE"))
    assert scan(a, token) == "granted"
    await eventually(lambda: b.passes.ledger.total("V-ONCE") == 1, "gateway B to hear of the use")
    assert scan(b, token) == "pass_used_up"
    assert b.passes.ledger.counts("V-ONCE") == {"gw-a": 1}
    # The backend hears it too; the record of the use is A's granted decision event.
    await eventually(lambda: any(u.gateway == "gw-a" for u in uses), "the kit to see the report")
    [granted] = [e for e in stored(a, "decision") if e["granted"]]
    assert granted["pass"] == "V-ONCE"
    assert stored(a, "pass_use") == []  # use reports are not events


async def test_offline_b_decides_on_its_own_count_and_both_converge(site: Site) -> None:
    a, b = site.gateways["gw-a"], site.gateways["gw-b"]
    await site.push_trust(1, site.cloud)
    await eventually(lambda: trusted(a) and trusted(b), "the trust list")
    await site.disconnect("gw-b")
    token = site.cloud.issue(claims("V-SPLIT"))
    assert scan(a, token) == "granted"
    assert scan(b, token) == "granted"  # B cannot know: offline, it decides on what it has
    assert scan(b, token) == "pass_used_up"  # its own counter still holds
    await site.connect("gw-b")
    both = {"gw-a": 1, "gw-b": 1}
    # A's report waited in B's session; B announces its own count on connect.
    await eventually(lambda: b.passes.ledger.counts("V-SPLIT") == both, "B to get A's use")
    await eventually(lambda: a.passes.ledger.counts("V-SPLIT") == both, "A to get B's use")
    assert (a.passes.ledger.total("V-SPLIT"), b.passes.ledger.total("V-SPLIT")) == (2, 2)


async def test_lying_or_malformed_use_reports_are_refused(site: Site, raw: Probe) -> None:
    a, b = site.gateways["gw-a"], site.gateways["gw-b"]
    lie = PassUses(gateway="gw-c", uses=[PassUseCount.of("V-DOS", 60000)])  # on gw-b's topic
    bad = b'{"gateway": "gw-b", "uses": []}'
    topic = Topics(SITE, "gw-b").pass_uses
    assert await refused_on(site, raw, topic, lie.model_dump_json(by_alias=True).encode()) == "rejected"
    assert await refused_on(site, raw, topic, bad) == "schema"
    # gw-b ignores the reports on its own topic (it is their publisher), so it refuses nothing.
    assert site.kit.latest(ErrorReport, "gw-b") is None
    # Counts on the site-wide level are nobody's: refused by every gateway.
    odd = PassUses(gateway="_site", uses=[PassUseCount.of("V-DOS", 60000)]).model_dump_json(by_alias=True)
    odd_topic = f"menwei/v1/{SITE}/_site/passes/uses"
    assert await refused_on(site, raw, odd_topic, odd.encode(), gateway="gw-b") == "rejected"
    assert a.passes.ledger.total("V-DOS") == b.passes.ledger.total("V-DOS") == 0


# --- revocation -------------------------------------------------------------------------------------------------


async def test_revoking_a_qr_pass_the_list_does_not_hold(site: Site) -> None:
    a = site.gateways["gw-a"]
    await site.push_trust(1, site.cloud)
    await eventually(lambda: trusted(a), "the trust list")
    token = site.cloud.issue(claims("V-REVOKE", max_uses=None))
    other = site.cloud.issue(claims("V-OTHER", max_uses=None))
    assert scan(a, token) == "granted"
    assert a.engine is not None and "V-REVOKE" not in a.engine.acl.passes
    expires = datetime.now(UTC) + timedelta(hours=3)
    delta = Delta(
        from_version=1, to_version=2, ops=[RevokePass(op="revoke_pass", id="V-REVOKE", valid_until=expires)]
    )
    await asyncio.to_thread(site.kit.push_delta, "gw-a", delta)
    await asyncio.to_thread(site.kit.wait_for, AclState, "gw-a", lambda s: s.version == 2, timeout=WAIT)
    assert scan(a, token) == "pass_revoked"
    assert scan(a, other) == "granted"
    with sqlite3.connect(a.db_path) as conn:
        rows = conn.execute("SELECT pass_id, forget_after FROM pass_revocations").fetchall()
    assert rows == [("V-REVOKE", int(expires.timestamp()))]
    # A snapshot (which knows nothing of QR passes) does not bring it back ...
    acl = demo_access_list(3, datetime.now(UTC), "side-door", list(a.site.doors))
    await asyncio.to_thread(site.kit.push_snapshot, "gw-a", acl)
    await asyncio.to_thread(site.kit.wait_for, AclState, "gw-a", lambda s: s.version == 3, timeout=WAIT)
    assert scan(a, token) == "pass_revoked"
    # ... and neither does a restart.
    await site.disconnect("gw-a")
    await a.stop()
    a = await site.start_gateway("gw-a")
    a.passes.observe_trusted_time(datetime.now(UTC), a.clock.monotonic(), "test")
    assert scan(a, token) == "pass_revoked"
    assert [e["pass"] for e in stored(a, "decision") if e["reason"] == "pass_revoked"] == ["V-REVOKE"] * 3
