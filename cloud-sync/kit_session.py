"""The kit's connection settings, errors and one paho MQTT 5 session with blocking helpers (connect
with CONNACK and SUBACK, publish with PUBACK), shared by `CloudKit` and `EventConsumer`."""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from cloud_sync.link import TlsFiles
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

log = logging.getLogger(__name__)


WAIT = 10.0  # default bound, in seconds, on a connect or on the broker's acknowledgements
REPLY_GRACE = 5.0  # a reply may arrive this long after the command's expiry (it was executed just before)
NO_MATCHING_SUBSCRIBERS = 16  # PUBACK reason: accepted, but nobody subscribes (gateway never connected)


class KitError(Exception):
    """Base of the kit's errors."""


class ConnectError(KitError):
    """The broker refused the connection, or did not answer in time."""


class PublishError(KitError):
    """The broker refused a message, or did not acknowledge it in time."""


class CommandTimeoutError(KitError):
    """No reply to a command in time (the gateway is offline, or the command expired unseen)."""


@dataclass(frozen=True, slots=True)
class Connection:
    """Where and how to connect; shared by a kit and its consumers (each opens its own MQTT session)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsFiles | None = None  # with cert_file and key_file: mutual TLS
    keepalive: int = 30


# --- one paho session -----------------------------------------------------------------------------------------


class KitSession:
    """A paho MQTT 5 client with blocking helpers: connect (CONNACK and SUBACK), publish (PUBACK).

    on_publish runs under paho's outgoing-message lock, so results are recorded for any mid and collected by
    the waiter; publishing while holding our own lock could deadlock against it.
    """

    def __init__(
        self,
        conn: Connection,
        client_id: str,
        *,
        subscriptions: list[tuple[str, SubscribeOptions]],
        on_message: Callable[[mqtt.MQTTMessage], None],
        clean_start: mqtt.CleanStartOption,
        session_expiry: int,
        manual_ack: bool = False,
        receive_maximum: int | None = None,
    ) -> None:
        self.conn = conn
        self.client_id = client_id
        self._subscriptions = subscriptions
        self._on_message_cb = on_message
        self._clean_start = clean_start
        self._session_expiry = session_expiry
        self._receive_maximum = receive_maximum
        self._cond = threading.Condition()
        self.generation = 0  # successful CONNACKs so far
        self._connected = False
        self._refused: ReasonCode | None = None
        self._subscribed_generation = 0
        self._sub_mids: dict[int, int] = {}  # SUBSCRIBE mid -> generation
        self._sub_error: str | None = None
        self._acks: dict[int, ReasonCode] = {}
        self._abandoned: set[int] = set()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=manual_ack
        )
        client.reconnect_delay_set(1, 30)
        if conn.username is not None:
            client.username_pw_set(conn.username, conn.password)
        if conn.tls is not None:
            t = conn.tls
            client.tls_set(
                ca_certs=str(t.ca_file),
                certfile=str(t.cert_file) if t.cert_file else None,
                keyfile=str(t.key_file) if t.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_subscribe = self._paho_subscribe
        client.on_publish = self._paho_publish
        client.on_message = self._paho_message
        self.client = client
        self._started = False

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    def open(self, timeout: float) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry
        if self._receive_maximum is not None:
            props.ReceiveMaximum = self._receive_maximum
        try:
            self.client.connect_async(
                self.conn.host,
                self.conn.port,
                keepalive=self.conn.keepalive,
                clean_start=self._clean_start,
                properties=props,
            )
        except (OSError, ValueError) as err:
            raise ConnectError(f"cannot connect to {self.conn.host}:{self.conn.port}: {err}") from err
        self.client.loop_start()
        self._started = True
        with self._cond:
            ready = self._cond.wait_for(
                lambda: (
                    self._refused is not None
                    or self._sub_error is not None
                    or (self._connected and self._subscribed_generation == self.generation)
                ),
                timeout,
            )
            refused, sub_error = self._refused, self._sub_error
        if refused is not None or sub_error is not None or not ready:
            self.close()
            if refused is not None:
                raise ConnectError(f"broker refused {self.client_id!r}: {refused}")
            if sub_error is not None:
                raise ConnectError(f"broker refused a subscription of {self.client_id!r}: {sub_error}")
            raise ConnectError(f"no CONNACK/SUBACK from {self.conn.host}:{self.conn.port} within {timeout} s")

    def close(self, *, end_session: bool = False) -> None:
        """Disconnect; with end_session the broker drops the session now instead of after its expiry."""
        if self._started:
            props = None
            if end_session:
                props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = 0
            self.client.disconnect(properties=props)
            self.client.loop_stop()
            self._started = False
        with self._cond:
            self._connected = False

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, **props: Any) -> int:
        """Queue a message and return its mid (paho sends it when connected); see `wait_acks`."""
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ContentType = "application/json"
        for name, value in props.items():
            setattr(properties, name, value)
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise PublishError(f"cannot publish to {topic}: {mqtt.error_string(info.rc)}")
        return int(info.mid)

    def wait_acks(self, mids: Iterable[int], timeout: float) -> list[ReasonCode]:
        """Wait for the broker's PUBACK of each mid; raise PublishError on a refusal or after timeout."""
        wanted = list(mids)
        with self._cond:
            done = self._cond.wait_for(lambda: all(m in self._acks for m in wanted), timeout)
            reasons = [self._acks.pop(m) for m in wanted if m in self._acks]
            if not done:
                self._abandoned.update(m for m in wanted)
        if not done:
            raise PublishError(
                f"{len(wanted) - len(reasons)} of {len(wanted)} messages unacknowledged after {timeout} s"
            )
        refused = [r for r in reasons if r.is_failure]
        if refused:
            raise PublishError(f"broker refused {len(refused)} of {len(wanted)} messages: {refused[0]}")
        return reasons

    def ack(self, mid: int, qos: int, generation: int) -> None:
        """Acknowledge a message received on connection `generation` (a later connection gets it again)."""
        with self._cond:
            current = self.generation
        if qos > 0 and generation == current:
            self.client.ack(mid, qos)

    # paho's network thread: record and notify, nothing slow.

    def _paho_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Properties | None
    ) -> None:
        with self._cond:
            if reason.is_failure:
                self._refused = reason
            else:
                self.generation += 1
                self._connected = True
                if self._subscriptions:
                    _, mid = client.subscribe(self._subscriptions)
                    if mid is not None:
                        self._sub_mids[mid] = self.generation
                else:
                    self._subscribed_generation = self.generation
            self._cond.notify_all()

    def _paho_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Properties | None
    ) -> None:
        with self._cond:
            self._connected = False
            self._cond.notify_all()
        if reason.value != 0:
            log.warning("MQTT %s disconnected: %s", self.client_id, reason)

    def _paho_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        props: Properties | None,
    ) -> None:
        with self._cond:
            generation = self._sub_mids.pop(mid, None)
            refused = [str(r) for r in reasons if r.is_failure]
            if refused:
                self._sub_error = ", ".join(refused)
                log.error("MQTT %s: subscription refused: %s", self.client_id, self._sub_error)
            elif generation is not None:
                self._subscribed_generation = max(self._subscribed_generation, generation)
            self._cond.notify_all()

    def _paho_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Properties | None
    ) -> None:
        with self._cond:
            if mid in self._abandoned:
                self._abandoned.discard(mid)
            else:
                self._acks[mid] = reason
                self._cond.notify_all()

    def _paho_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_message_cb(msg)
