"""The faults the cloud sync must survive, each against a real mosquitto: the broker killed mid-upload, the
gateway killed mid-upload, a partition longer than the keep-alive, and the security set-ups (mutual TLS,
username/password, and a wrong password that must not take the gateway down).

The "cloud" in these tests is a plain paho client with a persistent session subscribed at QoS 1, which
de-duplicates by (gateway, seq) the way a backend would. Every wait is bounded; nothing asserts speed.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cloud_sync.broker import BrokerTls
from cloud_sync.faults import FaultProxy
from cloud_sync.messages import EventBatch, GatewayStatus
from cloud_sync.sync import CloudSync
from cloud_sync.topics import Topics

from drivers.reader import CredentialRead
from edge.config import MqttSection
from edge.demo_data import UNKNOWN_CARD, ZHANG_CARD, demo_access_list
from edge.devices import build_devices
from edge.errors import ConfigError
from edge.gateway import Gateway
from edge.model import CredentialKind
from edge.store.audit import verify_chain
from tests.demo_site import demo_config

if TYPE_CHECKING:
    from cloud_sync.broker import LocalBroker
    from cloud_sync.tls import Pki

    from tests.cloud_sync.conftest import BrokerFactory, Probe, ProbeFactory

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("sync_child.py")
TOPICS = Topics("lotus-garden", "gw-demo")
DOORS = ("main-gate", "side-door", "lobby-a")


# --- helpers -------------------------------------------------------------------------------------------------


class Cloud:
    """A backend consumer: persistent session, QoS 1, de-duplication by (gateway, seq), first-arrival order."""

    def __init__(self, probe: Probe, broker: LocalBroker, *, port: int | None = None) -> None:
        self.probe = probe
        probe.connect(broker.host, port or broker.port)
        assert probe.wait_connected()
        probe.subscribe(f"{TOPICS.base}/#")
        self._read = 0
        self.events: dict[tuple[str, int], dict[str, Any]] = {}
        self.order: list[tuple[int, str | None]] = []  # (seq, door) in first-arrival order
        self.copies = 0

    def collect(self) -> int:
        """Read new messages; returns how many distinct events have arrived."""
        with self.probe.cond:
            new = self.probe.messages[self._read :]
            self._read += len(new)
        for msg in new:
            if msg.topic != TOPICS.events:
                continue
            batch = EventBatch.model_validate_json(msg.payload)
            for e in batch.events:
                self.copies += 1
                key = (batch.gateway, e.seq)
                if key not in self.events:
                    self.events[key] = e.event
                    self.order.append((e.seq, e.event.get("door")))
        return len(self.events)

    def batches_arrived(self) -> int:
        """Event batches received so far (cheap: callable under the probe's condition)."""
        return sum(1 for m in self.probe.messages if m.topic == TOPICS.events)

    def has_all(self, last_seq: int) -> bool:
        self.collect()
        return all(("gw-demo", s) in self.events for s in range(1, last_seq + 1))

    def statuses(self) -> list[bool]:
        with self.probe.cond:
            return [
                GatewayStatus.model_validate_json(m.payload).online
                for m in self.probe.messages
                if m.topic == TOPICS.status
            ]

    def assert_exactly_once_in_door_order(self, last_seq: int) -> None:
        self.collect()
        assert sorted(s for _, s in self.events) == list(range(1, last_seq + 1)), "every event, no others"
        for door in DOORS:
            seqs = [s for s, d in self.order if d == door]
            assert seqs == sorted(seqs), f"events of {door} arrived out of order"


async def eventually(predicate: Callable[[], bool], within: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


def wait(predicate: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    cfg = demo_config(tmp_path / "gw")
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    await gw.replace_access_list(demo_access_list(1, datetime.now(UTC), "side-door", list(gw.site.doors)))
    yield gw
    await gw.stop()


def fill(gw: Gateway, n: int) -> None:
    """n events straight into the log (fast), spread over the three doors."""
    assert gw.events is not None
    at = datetime.now(UTC).isoformat()
    for start in range(0, n, 1000):
        gw.events.append_many(
            {"type": "decision", "at": at, "door": DOORS[i % 3], "granted": False, "reason": "test", "n": i}
            for i in range(start, min(n, start + 1000))
        )
    gw.events.flush()


def present(gw: Gateway, i: int) -> bool:
    """One card read; returns whether it was granted. The unknown card is denied at any door."""
    reader = ("side-door-in", "lobby-a-in", "main-gate-in")[i % 3]
    card = ZHANG_CARD if reader == "side-door-in" else UNKNOWN_CARD
    return gw.present(CredentialRead(reader, CredentialKind.CARD, card)).granted


def last_seq(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT max(seq) FROM events").fetchone()[0] or 0)


# --- the broker killed mid-upload ----------------------------------------------------------------------------


async def test_broker_killed_and_restarted_mid_upload_loses_nothing_and_keeps_door_order(
    gateway: Gateway, make_broker: BrokerFactory, make_probe: ProbeFactory
) -> None:
    # Saved after every change, so the restarted broker still knows the cloud's persistent session.
    broker = make_broker(autosave_on_changes=True, autosave_interval=1)
    cloud = Cloud(make_probe("cloud", clean_start=False, session_expiry=600), broker)
    events = gateway.events
    assert events is not None
    fill(gateway, 10_000)
    mqtt = MqttSection(host=broker.host, port=broker.port, keepalive_seconds=5, upload_batch=100)
    sync = CloudSync(gateway, mqtt, software_version="t", downlink=None, reconnect_delay=(1, 2))
    await sync.start()
    try:
        await eventually(lambda: cloud.batches_arrived() >= 20, within=20, what="upload under way")
        broker.kill()
        backlog = await asyncio.to_thread(events.depth)
        assert backlog > 0, "the upload was still under way when the broker died"
        for i in range(30):  # the doors go on meanwhile
            present(gateway, i)
        await asyncio.sleep(0.5)
        broker.start()
        await eventually(lambda: sync.connected, within=15, what="reconnect")
        await eventually(lambda: events.depth() == 0, within=30, what="outbox drained")
        final = events.last_seq()
        await eventually(lambda: cloud.has_all(final), within=15, what="every event in the cloud")
        cloud.assert_exactly_once_in_door_order(final)
        assert cloud.copies >= final
    finally:
        await sync.stop()
    assert verify_chain(gateway.db_path).ok


# --- the gateway killed mid-upload ---------------------------------------------------------------------------


def _child(data_dir: Path, broker: LocalBroker, mode: str) -> subprocess.Popen[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / f"child-{mode}.log").open("w") as err:  # the child's log, for a failing test's report
        return subprocess.Popen(
            [sys.executable, str(CHILD), str(data_dir), broker.host, str(broker.port), mode],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=ROOT,
        )


def test_gateway_killed_mid_upload_then_restarted_loses_nothing(
    tmp_path: Path, broker: LocalBroker, make_probe: ProbeFactory
) -> None:
    cloud = Cloud(make_probe("cloud", clean_start=False, session_expiry=600), broker)
    data = tmp_path / "child"
    child = _child(data, broker, "run")
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "started", (data / "child-run.log").read_text()
        # Kill on the fifth batch to arrive (woken by the probe's condition, not a poll): mid-backlog.
        assert cloud.probe.wait_until(lambda: cloud.batches_arrived() >= 5, 30), (
            "the child's upload under way"
        )
        child.send_signal(signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    db = data / "menwei.db"
    killed_at = last_seq(db)
    assert verify_chain(db).ok
    with sqlite3.connect(db) as conn:
        unsent = conn.execute("SELECT count(*) FROM events WHERE sync_state = 0").fetchone()[0]
    assert unsent > 1000, "killed in the middle of the upload"

    child = _child(data, broker, "drain")
    try:
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0 and out.split() == ["started", "empty"], (
        data / "child-drain.log"
    ).read_text()
    final = last_seq(db)
    assert final >= killed_at
    wait(lambda: cloud.has_all(final), within=15, what="every event in the cloud")
    cloud.assert_exactly_once_in_door_order(final)
    assert verify_chain(db).ok


# --- a partition longer than the keep-alive ------------------------------------------------------------------


async def test_partition_longer_than_keepalive_gateway_decides_reconnects_and_drains(
    gateway: Gateway, broker: LocalBroker, make_probe: ProbeFactory
) -> None:
    cloud = Cloud(make_probe("cloud", clean_start=False, session_expiry=600), broker)
    events = gateway.events
    assert events is not None
    with FaultProxy(broker.host, broker.port) as proxy:
        mqtt = MqttSection(host=proxy.host, port=proxy.port, keepalive_seconds=5, heartbeat_seconds=2.0)
        sync = CloudSync(gateway, mqtt, software_version="t", downlink=None, reconnect_delay=(1, 2))
        await sync.start()
        try:
            await eventually(lambda: sync.connected, what="connected through the proxy")
            for i in range(30):
                present(gateway, i)
            await eventually(lambda: events.depth() == 0, what="first events uploaded")

            proxy.stall()
            stalled = time.monotonic()
            granted = 0
            decided = 0
            # Until both sides noticed: the gateway's keep-alive dropped the link, and the broker's published
            # the gateway's will (status offline, retained) to the cloud.
            while sync.connected or cloud.statuses()[-1:] != [False]:
                if time.monotonic() - stalled > 30:
                    pytest.fail("the stalled link was never noticed")
                granted += present(gateway, decided)
                decided += 1
                await asyncio.sleep(0.05)
            assert time.monotonic() - stalled >= mqtt.keepalive_seconds, (
                "the partition outlasted the keep-alive"
            )
            assert decided > 50 and granted > 0, "doors kept deciding during the partition"
            assert await asyncio.to_thread(events.depth) > 0, "a backlog built up"

            proxy.resume()
            await eventually(lambda: sync.connected, within=20, what="reconnected by itself")
            await eventually(lambda: events.depth() == 0, within=20, what="backlog drained")
            final = events.last_seq()
            await eventually(lambda: cloud.has_all(final), within=15, what="every event in the cloud")
            cloud.assert_exactly_once_in_door_order(final)
            await eventually(lambda: cloud.statuses()[-1], what="status back online")
        finally:
            await sync.stop()


# --- security ------------------------------------------------------------------------------------------------


def _credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **files: bytes) -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir(exist_ok=True)
    for name, data in files.items():
        (directory / name.replace("_", "-")).write_bytes(data)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(directory))
    return directory


async def test_mutual_tls_with_a_client_certificate_from_the_credentials_directory(
    gateway: Gateway,
    make_broker: BrokerFactory,
    make_probe: ProbeFactory,
    pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tls = BrokerTls(pki.ca_cert, pki.server.cert, pki.server.key, require_certificate=True)
    broker = make_broker(tls=tls)
    cloud = Cloud(make_probe("cloud"), broker)  # the cloud reads on the plain listener
    creds = _credentials(tmp_path, monkeypatch)
    shutil.copy(pki.clients["gw-1"].key, creds / "mqtt-key")
    assert broker.tls_port is not None
    mqtt = MqttSection(
        host="localhost",
        port=broker.tls_port,
        tls_ca_file=pki.ca_cert,
        tls_cert_file=pki.clients["gw-1"].cert,
        tls_key_credential="mqtt-key",
    )
    sync = CloudSync(gateway, mqtt, software_version="t", downlink=None)
    assert sync.settings.tls is not None and sync.settings.tls.key_file == creds / "mqtt-key"
    await sync.start()
    try:
        await eventually(lambda: sync.connected, what="TLS connection")
        present(gateway, 0)
        assert gateway.events is not None
        final = gateway.events.last_seq()
        await eventually(lambda: cloud.has_all(final), what="events over TLS")
    finally:
        await sync.stop()


async def test_tls_without_a_client_certificate_is_refused_and_logged(
    gateway: Gateway, make_broker: BrokerFactory, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    broker = make_broker(
        tls=BrokerTls(pki.ca_cert, pki.server.cert, pki.server.key, require_certificate=True)
    )
    assert broker.tls_port is not None
    mqtt = MqttSection(host="localhost", port=broker.tls_port, tls_ca_file=pki.ca_cert)
    sync = CloudSync(gateway, mqtt, software_version="t", downlink=None)
    with caplog.at_level(logging.WARNING, logger="cloud_sync"):
        await sync.start()
        try:
            await eventually(lambda: any("cloud broker" in r.getMessage() for r in caplog.records))
            assert not sync.connected
        finally:
            await sync.stop()


def test_tls_config_mistakes_fail_at_start_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cloud_sync.sync import tls_files

    ca = tmp_path / "ca.crt"
    with pytest.raises(ConfigError, match="both"):
        tls_files(MqttSection(tls_ca_file=ca, tls_cert_file=tmp_path / "c.crt"))
    with pytest.raises(ConfigError, match="need tls_ca_file"):
        tls_files(MqttSection(tls_cert_file=tmp_path / "c.crt", tls_key_credential="k"))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY"):
        tls_files(MqttSection(tls_ca_file=ca, tls_cert_file=tmp_path / "c.crt", tls_key_credential="k"))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(ConfigError, match="missing"):
        tls_files(MqttSection(tls_ca_file=ca, tls_cert_file=tmp_path / "c.crt", tls_key_credential="k"))


async def test_username_and_password_from_the_credentials_directory(
    gateway: Gateway,
    make_broker: BrokerFactory,
    make_probe: ProbeFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = make_broker(allow_anonymous=False, users={"gw-demo": "door-s3cret", "cloud": "cloud-pw"})
    cloud = Cloud(make_probe("cloud", username="cloud", password="cloud-pw"), broker)
    _credentials(tmp_path, monkeypatch, mqtt_password=b"door-s3cret\n")
    mqtt = MqttSection(
        host=broker.host, port=broker.port, username="gw-demo", password_credential="mqtt-password"
    )
    sync = CloudSync(gateway, mqtt, software_version="t", downlink=None)
    assert "door-s3cret" not in repr(sync.settings)
    await sync.start()
    try:
        await eventually(lambda: sync.connected, what="authenticated")
        present(gateway, 0)
        assert gateway.events is not None
        final = gateway.events.last_seq()
        await eventually(lambda: cloud.has_all(final), what="events")
    finally:
        await sync.stop()


async def test_a_wrong_password_is_refused_and_logged_and_the_gateway_keeps_working(
    gateway: Gateway,
    make_broker: BrokerFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = make_broker(allow_anonymous=False, users={"gw-demo": "door-s3cret"})
    monkeypatch.setenv("MENWEI_SECRET_MQTT_PASSWORD", "wrong")
    mqtt = MqttSection(
        host=broker.host, port=broker.port, username="gw-demo", password_credential="mqtt-password"
    )
    sync = CloudSync(gateway, mqtt, software_version="t", downlink=None, reconnect_delay=(1, 1))
    with caplog.at_level(logging.DEBUG, logger="cloud_sync"):
        await sync.start()
        try:
            await eventually(lambda: len(_refusals(caplog)) >= 2, what="two refused attempts")
            assert not sync.connected
            first, *rest = _refusals(caplog)
            assert first.levelno == logging.WARNING and "refused" in first.getMessage()
            assert all(r.levelno == logging.DEBUG for r in rest), "logged once at warning, then at debug"
            assert "wrong" not in caplog.text
            assert present(gateway, 0), "the door still decides"
        finally:
            await sync.stop()


def _refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "cloud_sync.sync" and "refused" in r.getMessage()]
