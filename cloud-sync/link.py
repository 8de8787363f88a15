"""The MQTT 5 connection (paho-mqtt 2.x), bridged to asyncio in one place.

paho runs its network loop in its own thread. Its callbacks must stay short (slow work there stalls
keep-alive), so every callback here does one thing: hand the event to the asyncio loop with
`call_soon_threadsafe`. The gateway's logic never runs on paho's thread.

paho reconnects by itself (capped exponential backoff, `reconnect_delay_set`) and, with clean_start=False and a
session expiry, the broker keeps our subscriptions and queued QoS 1 messages while we are away. paho's own
outgoing queue lives in memory only, which is why the gateway's events leave from the SQLite outbox and are
marked sent only in `on_publish` (the broker's PUBACK), never on publish().
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path | None = None  # with key_file: mutual TLS (client certificate)
    key_file: Path | None = None


@dataclass(frozen=True, slots=True)
class LinkSettings:
    host: str
    port: int
    client_id: str
    keepalive: int = 30
    session_expiry: int = 7 * 24 * 3600  # seconds the broker keeps our session while we are offline
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsFiles | None = None
    reconnect_min: float = 1.0
    reconnect_max: float = 30.0
    will_topic: str | None = None
    will_payload: bytes = b""
    max_inflight: int = 20
    max_payload: int = 4 * 1024 * 1024  # larger incoming messages are refused unread


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    response_topic: str | None
    correlation_data: bytes | None
    user_properties: tuple[tuple[str, str], ...]


OnMessage = Callable[[Incoming], None]
OnConnection = Callable[[bool, str], None]  # (connected, reason)
OnPublished = Callable[[int, bool], None]  # (mid, accepted by the broker)
OnAttemptFailed = Callable[[str], None]  # why a connection attempt failed (not a change of state)


class MqttLink:
    """One paho client. Create it on the event loop; callbacks arrive on that loop."""

    def __init__(
        self,
        settings: LinkSettings,
        *,
        on_message: OnMessage,
        on_connection: OnConnection,
        on_published: OnPublished,
        on_attempt_failed: OnAttemptFailed | None = None,
        subscriptions: tuple[str, ...] = (),
    ) -> None:
        self.settings = settings
        self._loop = asyncio.get_running_loop()
        self._on_message = on_message
        self._on_connection = on_connection
        self._on_published = on_published
        self._on_attempt_failed = on_attempt_failed or (lambda reason: None)
        self._subscriptions = subscriptions
        self.connected = False
        self._stopping = False
        self._refused = False  # paho's thread only: this attempt's refusal was reported already
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=mqtt.MQTTv5)
        client.reconnect_delay_set(int(settings.reconnect_min), int(settings.reconnect_max))
        client.max_inflight_messages_set(settings.max_inflight)
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls is not None:
            t = settings.tls
            client.tls_set(
                ca_certs=str(t.ca_file),
                certfile=str(t.cert_file) if t.cert_file else None,
                keyfile=str(t.key_file) if t.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if settings.will_topic is not None:
            client.will_set(settings.will_topic, settings.will_payload, qos=1, retain=True)
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_message = self._paho_message
        client.on_publish = self._paho_publish
        client.on_connect_fail = self._paho_connect_fail
        self._client = client

    # --- control (event loop) ------------------------------------------------------------------------------

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.session_expiry
        props.MaximumPacketSize = self.settings.max_payload + 64 * 1024
        self._client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()

    def stop(self, final: tuple[str, bytes] | None = None) -> None:
        """Disconnect cleanly (optionally publishing a last retained message first, e.g. status offline)."""
        if final is not None and self.connected:
            info = self._client.publish(final[0], final[1], qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                log.debug("final message not confirmed before disconnect")
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self.connected = False

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry: int | None = None,
        correlation_data: bytes | None = None,
        response_topic: str | None = None,
        content_type: str = "application/json",
    ) -> int:
        """Queue a message; returns its mid. Delivery is reported through on_published(mid, ok)."""
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = content_type
        if expiry is not None:
            props.MessageExpiryInterval = max(1, expiry)
        if correlation_data is not None:
            props.CorrelationData = correlation_data
        if response_topic is not None:
            props.ResponseTopic = response_topic
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        return int(info.mid)

    # --- paho's thread: hand over, nothing else ------------------------------------------------------------

    def _hand_over(self, callback: Callable[..., None], *args: Any) -> None:
        """Schedule a callback on the loop. After the loop has closed (a late callback while paho's thread
        winds down) there is nobody left to tell: drop it rather than raise in paho's thread."""
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            log.debug("event loop closed; dropped a late MQTT callback")

    def _paho_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Properties | None
    ) -> None:
        ok = not reason.is_failure
        if ok:
            # Small messages (a revocation's ack, a command reply) must not wait for Nagle's algorithm.
            sock = client.socket()
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._subscriptions:
                client.subscribe([(t, SubscribeOptions(qos=1)) for t in self._subscriptions])
        else:
            self._refused = True
            self._hand_over(self._on_attempt_failed, f"broker refused the connection: {reason}")
        self._hand_over(self._connection_changed, ok, str(reason))

    def _paho_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Properties | None
    ) -> None:
        if not self._refused:
            # Scheduled before the state change, so `connected` still tells an attempt that failed (e.g. a TLS
            # peer that rejected our certificate) from a connection that was lost.
            self._hand_over(self._closed_before_connack, str(reason))
        self._refused = False
        self._hand_over(self._connection_changed, False, str(reason))

    def _paho_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._hand_over(
            self._on_attempt_failed, "cannot connect (broker unreachable, or TLS handshake failed)"
        )

    def _closed_before_connack(self, reason: str) -> None:
        if not self.connected and not self._stopping:
            self._on_attempt_failed(
                f"connection closed before the broker accepted it ({reason}): TLS certificates or network?"
            )

    def _paho_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        incoming = Incoming(
            topic=msg.topic,
            payload=bytes(msg.payload),
            qos=msg.qos,
            retain=bool(msg.retain),
            response_topic=getattr(props, "ResponseTopic", None),
            correlation_data=getattr(props, "CorrelationData", None),
            user_properties=tuple(getattr(props, "UserProperty", ()) or ()),
        )
        self._hand_over(self._on_message, incoming)

    def _paho_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Properties | None
    ) -> None:
        self._hand_over(self._on_published, mid, not reason.is_failure)

    def _connection_changed(self, connected: bool, reason: str) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        if connected:
            log.info("MQTT connected to %s:%d", self.settings.host, self.settings.port)
        elif self._stopping:
            log.info("MQTT disconnected from %s:%d (stopping)", self.settings.host, self.settings.port)
        else:
            log.warning("MQTT disconnected from %s:%d: %s", self.settings.host, self.settings.port, reason)
        self._on_connection(connected, reason)
