"""Fixtures for cloud-sync tests: a real Mosquitto per test, a throwaway PKI, and paho clients that record
what happened to them.

Each test gets its own broker in its own directory on its own port, because tests kill, restart and
reconfigure it. Starting mosquitto takes a few milliseconds, so there is no reason to share one.

``Probe`` wraps a paho 2.x MQTT 5 client and records CONNACKs, disconnects and messages under one condition
variable, so tests wait for events with a bounded ``wait_until`` instead of sleeping. Test modules import
them for annotations only (``if TYPE_CHECKING: from tests.cloud_sync.conftest import ...``): pytest runs
with --import-mode=importlib, so conftest is not importable by name at run time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cloud_sync.broker import LocalBroker, mosquitto_available
from cloud_sync.tls import CertPair, Pki, make_test_pki
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

WAIT = 10.0  # seconds; every wait is bounded by this unless a test says otherwise


class Probe:
    """A paho MQTT 5 client on its own network thread that records everything it sees."""

    def __init__(
        self,
        client_id: str,
        *,
        keepalive: int = 60,
        clean_start: bool = True,
        session_expiry: int = 0,
        username: str | None = None,
        password: str | None = None,
        ca: Path | None = None,
        cert: CertPair | None = None,
    ) -> None:
        self.client_id = client_id
        self.keepalive = keepalive
        self.clean_start = clean_start
        self.session_expiry = session_expiry
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        # Quick reconnects keep the fault tests short; paho's default starts at 1 s and doubles.
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca is not None:
            self.client.tls_set(
                ca_certs=str(ca),
                certfile=None if cert is None else str(cert.cert),
                keyfile=None if cert is None else str(cert.key),
            )
        self.cond = threading.Condition()
        self.connacks: list[tuple[ReasonCode, bool]] = []  # (reason, session_present)
        self.disconnects: list[ReasonCode] = []
        self.messages: list[mqtt.MQTTMessage] = []
        self.published: list[int] = []  # mids acknowledged by the broker
        self.subacks: dict[int, list[ReasonCode]] = {}  # mid -> granted QoS or failure per topic
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self._started = False

    # paho callbacks run on the client's network thread: record and notify, nothing slow.
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self.cond:
            self.connacks.append((reason_code, flags.session_present))
            self.cond.notify_all()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self.cond:
            self.disconnects.append(reason_code)
            self.cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append(message)
            self.cond.notify_all()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self.cond:
            self.published.append(mid)
            self.cond.notify_all()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self.cond:
            self.subacks[mid] = list(reason_codes)
            self.cond.notify_all()

    @property
    def successful_connects(self) -> int:
        with self.cond:
            return sum(1 for reason, _ in self.connacks if not reason.is_failure)

    def connect(self, host: str, port: int) -> None:
        """Open the TCP (and TLS) connection and start the network thread; does not wait for CONNACK."""
        props: Properties | None = None
        if self.session_expiry:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.session_expiry
        self.client.connect(
            host, port, keepalive=self.keepalive, clean_start=self.clean_start, properties=props
        )
        self.client.loop_start()
        self._started = True

    def wait_until(self, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def wait_connected(self, count: int = 1, timeout: float = WAIT) -> bool:
        """Wait for ``count`` successful CONNACKs in total."""
        return self.wait_until(
            lambda: sum(1 for reason, _ in self.connacks if not reason.is_failure) >= count, timeout
        )

    def wait_connack(self, timeout: float = WAIT) -> bool:
        """Wait for any CONNACK, success or refusal."""
        return self.wait_until(lambda: len(self.connacks) > 0, timeout)

    def wait_disconnected(self, count: int = 1, timeout: float = WAIT) -> bool:
        return self.wait_until(lambda: len(self.disconnects) >= count, timeout)

    def subscribe(self, topic: str, qos: int = 1, timeout: float = WAIT) -> None:
        """Subscribe and wait for the SUBACK, so a publish that follows cannot overtake the subscription."""
        result, mid = self.client.subscribe(topic, qos=qos)
        assert result == mqtt.MQTT_ERR_SUCCESS, result
        assert mid is not None
        assert self.wait_until(lambda: mid in self.subacks, timeout), f"no SUBACK for {topic}"
        granted = self.subacks[mid]
        assert not any(code.is_failure for code in granted), granted

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Publish and return the message id; wait for the broker's ack with ``wait_published``."""
        info = self.client.publish(topic, payload, qos=qos)
        return info.mid

    def wait_published(self, mid: int, timeout: float = WAIT) -> bool:
        return self.wait_until(lambda: mid in self.published, timeout)

    def wait_messages(self, count: int = 1, timeout: float = WAIT) -> bool:
        return self.wait_until(lambda: len(self.messages) >= count, timeout)

    def close(self) -> None:
        """Disconnect cleanly if possible and stop the network thread."""
        # Also when not connected: it tells paho's thread to stop retrying before loop_stop() joins it.
        self.client.disconnect()
        if self._started:
            self.client.loop_stop()
            self._started = False


class ProbeFactory:
    """Creates ``Probe`` clients and remembers them, so the fixture can close every one."""

    def __init__(self) -> None:
        self.probes: list[Probe] = []

    def __call__(
        self,
        client_id: str,
        *,
        keepalive: int = 60,
        clean_start: bool = True,
        session_expiry: int = 0,
        username: str | None = None,
        password: str | None = None,
        ca: Path | None = None,
        cert: CertPair | None = None,
    ) -> Probe:
        probe = Probe(
            client_id,
            keepalive=keepalive,
            clean_start=clean_start,
            session_expiry=session_expiry,
            username=username,
            password=password,
            ca=ca,
            cert=cert,
        )
        self.probes.append(probe)
        return probe

    def close_all(self) -> None:
        for probe in self.probes:
            probe.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """CA, server certificate (localhost, 127.0.0.1) and client certificates ``gw-1`` and ``cloud``."""
    return make_test_pki(tmp_path_factory.mktemp("pki"), clients=["gw-1", "cloud"])


class BrokerFactory:
    """Starts ``LocalBroker``s in fresh directories under ``root`` and stops them all at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.brokers: list[LocalBroker] = []

    def __call__(self, *, start: bool = True, **options: Any) -> LocalBroker:
        """``options`` are ``LocalBroker`` keyword arguments."""
        b = LocalBroker(self.root / f"broker-{len(self.brokers)}", **options)
        self.brokers.append(b)
        if start:
            b.start()
        return b

    def stop_all(self) -> None:
        for b in self.brokers:
            b.stop()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[BrokerFactory]:
    """``make_broker(users={...}, tls=..., ...)`` returns a started broker; all are stopped at teardown."""
    if not mosquitto_available():
        pytest.fail("mosquitto is not installed: run scripts/setup (Debian package 'mosquitto')")
    factory = BrokerFactory(tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture
def broker(make_broker: BrokerFactory) -> LocalBroker:
    """A started anonymous broker with persistence on a free port, stopped at teardown."""
    return make_broker()


@pytest.fixture
def make_probe() -> Iterator[ProbeFactory]:
    """``make_probe("client-id", keepalive=..., ...)`` returns a new ``Probe``; all are closed at teardown."""
    factory = ProbeFactory()
    yield factory
    factory.close_all()
