"""The cloud side of the contract: what a property backend needs to drive menwei gateways over MQTT 5.

The contract (docs/contract.md, docs/asyncapi.json) is enough to integrate without this module; it exists so
that the tests, the demo and any Python backend use one correct implementation of the fiddly parts:
snapshots split into sha-256-checked chunks, commands as MQTT 5 request/response (response topic,
correlation data, message expiry) and events consumed exactly once across processes.

- `CloudKit`: one connection per backend process for a site. Push snapshots, deltas, the site's visitor-pass
  trust list and each gateway's BLE phone keys (each call returns once the broker has acknowledged every
  message), send commands and wait for their replies, watch status, telemetry, acl/state, acl/request, errors
  and pass use counts.
- `EventConsumer`: its own persistent session (events queue at the broker while it is away), optionally in a
  shared subscription group so several processes split the load; each event goes to the handler once,
  through a `DedupeStore`, and a message is acknowledged only after the handler's transaction committed.
- `mosquitto_acl`: the broker ACL the contract recommends (a gateway only under its own tree).

Threads: paho runs each connection's network loop in its own thread, and nothing slow runs there. Watch
callbacks run on one dispatcher thread per kit, event handlers on one worker thread per consumer. Every
public method of both classes may be called from any thread, including from those callbacks; blocking calls
(push_*, send_command, wait_for) may be made from several threads at once.

Errors derive from `KitError`.
"""

from __future__ import annotations

import base64
import logging
import math
import queue
import secrets
import ssl
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self, TypeVar

import paho.mqtt.client as mqtt
from cloud_sync.dedupe import BatchResult, DedupeStore, EventHandler
from cloud_sync.link import TlsFiles
from cloud_sync.messages import (
    AccessListDocument,
    AclState,
    BleKeyList,
    CommandEnvelope,
    CommandReply,
    Delta,
    EnrolFace,
    ErrorReport,
    EventBatch,
    GatewayStatus,
    Message,
    OpenDoor,
    PassTrustList,
    PassUses,
    Ping,
    Resync,
    SetMode,
    SnapshotRequest,
    Telemetry,
    WireBleKey,
    WireTrustedKey,
)
from cloud_sync.snapshot_codec import DEFAULT_CHUNK_BYTES, encode_snapshot
from cloud_sync.topics import PREFIX, Topics, check_segment, parse, site_level, site_wildcard
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from edge.model import AccessList, DoorMode
from edge.passes.trust import TrustedKey

__all__ = [
    "WATCHED",
    "AnyCommand",
    "CloudKit",
    "CommandTimeoutError",
    "ConnectError",
    "Connection",
    "ConsumerStats",
    "EventConsumer",
    "KitError",
    "PublishError",
    "TlsFiles",
    "enrol_face",
    "mosquitto_acl",
    "open_door",
    "ping",
    "resync",
    "set_mode",
]

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


# --- commands -------------------------------------------------------------------------------------------------

DEFAULT_TTL = 30.0  # seconds a command stays valid


def _stamp(ttl: float) -> dict[str, Any]:
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    now = datetime.now(UTC)
    return {"id": str(uuid.uuid4()), "issued_at": now, "expires_at": now + timedelta(seconds=ttl)}


def open_door(door: str, *, operator: str, reason: str = "", ttl: float = DEFAULT_TTL) -> OpenDoor:
    """Release a door once (a pulse, like a granted credential)."""
    return OpenDoor(command="open_door", door=door, operator=operator, reason=reason, **_stamp(ttl))


def set_mode(
    mode: DoorMode, *, door: str | None = None, operator: str, reason: str = "", ttl: float = DEFAULT_TTL
) -> SetMode:
    """Set a door's mode, or with door=None the whole site's (e.g. lockdown)."""
    return SetMode(command="set_mode", door=door, mode=mode, operator=operator, reason=reason, **_stamp(ttl))


def ping(*, operator: str = "backend", ttl: float = DEFAULT_TTL) -> Ping:
    return Ping(command="ping", operator=operator, **_stamp(ttl))


def resync(*, operator: str, reason: str = "", ttl: float = DEFAULT_TTL) -> Resync:
    """Ask the gateway to request a fresh snapshot."""
    return Resync(command="resync", operator=operator, reason=reason, **_stamp(ttl))


def enrol_face(
    person: str,
    face_id: str,
    *,
    photo: bytes | None = None,
    embedding: list[float] | None = None,
    pack: str | None = None,
    operator: str,
    reason: str = "",
    ttl: float = 300.0,
) -> EnrolFace:
    """Enrol a consenting resident's face (docs/faces.md): a JPEG/PNG photo, or an embedding and the model pack
    that made it. The gateway answers when it is done (seconds), with the reason if it refused."""
    return EnrolFace(
        command="enrol_face",
        person=person,
        face_id=face_id,
        photo_b64=base64.b64encode(photo).decode("ascii") if photo is not None else None,
        embedding=embedding,
        pack=pack,
        operator=operator,
        reason=reason,
        **_stamp(ttl),
    )


AnyCommand = OpenDoor | SetMode | Resync | Ping | EnrolFace

# What a kit watches: model -> topic leaf under each gateway.
WATCHED: dict[type[Message], str] = {
    GatewayStatus: "status",
    Telemetry: "telemetry",
    AclState: "acl/state",
    SnapshotRequest: "acl/request",
    ErrorReport: "errors",
    PassUses: "passes/uses",
}
_LEAF_MODEL = {leaf: model for model, leaf in WATCHED.items()}

M = TypeVar("M", bound=Message)


# --- one paho session -----------------------------------------------------------------------------------------


class _Session:
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


# --- the kit --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Waiting:
    command_id: str
    reply: CommandReply | None = None
    error: str | None = None


class CloudKit:
    """A backend's connection to one site's gateways. Use as a context manager, or `connect()` / `close()`."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        site: str,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: TlsFiles | None = None,
        prefix: str = PREFIX,
        keepalive: int = 30,
        session_expiry: int = 600,
    ) -> None:
        # The client id names the kit's reply topic, so it must be a valid topic level too.
        self.client_id = check_segment(client_id, "kit client id")
        self.site = check_segment(site, "site id")
        self.prefix = prefix
        self.connection = Connection(host, port, username, password, tls, keepalive)
        self._cond = threading.Condition()
        self._waiting: dict[bytes, _Waiting] = {}
        self._latest: dict[tuple[type[Message], str], Message] = {}
        self._watchers: dict[type[Message], list[Callable[[str, Any], None]]] = {}
        self.rejected: deque[tuple[str, str]] = deque(maxlen=100)  # (topic, why) of messages not understood
        self._calls: queue.SimpleQueue[tuple[Callable[[str, Any], None], str, Message] | None] = (
            queue.SimpleQueue()
        )
        self._dispatcher: threading.Thread | None = None
        subs = [(site_wildcard(self.site, f"cmd/reply/{self.client_id}", prefix), SubscribeOptions(qos=1))]
        # retainHandling=1: retained status/telemetry only on a new subscription, not again on each reconnect.
        subs += [
            (
                site_wildcard(self.site, leaf, prefix),
                SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB),
            )
            for leaf in WATCHED.values()
        ]
        # First connect clean (no stale replies), later reconnects resume the session (no lost replies).
        self._session = _Session(
            self.connection,
            self.client_id,
            subscriptions=subs,
            on_message=self._on_message,
            clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            session_expiry=session_expiry,
        )

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def connect(self, timeout: float = WAIT) -> Self:
        """Connect and subscribe; returns once the broker acknowledged both. Raises ConnectError."""
        if self._dispatcher is None:
            self._dispatcher = threading.Thread(
                target=self._dispatch, name=f"kit-{self.client_id}", daemon=True
            )
            self._dispatcher.start()
        self._session.open(timeout)
        return self

    def close(self) -> None:
        # End the session: a kit that is gone awaits no replies, so nothing should queue for it.
        self._session.close(end_session=True)
        if self._dispatcher is not None:
            self._calls.put(None)
            if self._dispatcher is not threading.current_thread():
                self._dispatcher.join(timeout=WAIT)
            self._dispatcher = None

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._session.connected

    def topics(self, gateway: str) -> Topics:
        return Topics(self.site, gateway, self.prefix)

    def reply_topic(self, gateway: str) -> str:
        """Where this kit asks `gateway` to reply: under the gateway's tree, so the gateway's ACL allows it."""
        return f"{self.topics(gateway).command_reply}/{self.client_id}"

    # --- down: snapshots, deltas -------------------------------------------------------------------------------

    def push_snapshot(
        self,
        gateway: str,
        acl: AccessList | AccessListDocument,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        timeout: float = 30.0,
    ) -> str:
        """Send a full access list; returns its snapshot id once the broker acknowledged every chunk.

        A gateway that is offline but has connected before gets it from its persistent session. One that never
        connected has no subscription yet and the broker drops it (logged); it asks for a snapshot at start-up.
        """
        doc = acl if isinstance(acl, AccessListDocument) else AccessListDocument.of(acl, self.site)
        if doc.site != self.site:
            raise ValueError(f"access list of site {doc.site!r} pushed through the kit of site {self.site!r}")
        chunks = encode_snapshot(doc, chunk_bytes=chunk_bytes, server_time=datetime.now(UTC))
        topic = self.topics(gateway).snapshot
        mids = [self._session.publish(topic, c.model_dump_json(by_alias=True).encode()) for c in chunks]
        reasons = self._session.wait_acks(mids, timeout)
        self._warn_unrouted(topic, reasons)
        return chunks[0].snapshot_id

    def push_delta(self, gateway: str, delta: Delta, *, timeout: float = WAIT) -> None:
        """Send a delta (stamped with the server time if it has none); returns once the broker has it."""
        if delta.server_time is None:
            delta = delta.model_copy(update={"server_time": datetime.now(UTC)})
        topic = self.topics(gateway).delta
        mid = self._session.publish(topic, delta.model_dump_json(by_alias=True).encode())
        self._warn_unrouted(topic, self._session.wait_acks([mid], timeout))

    def push_trust_list(
        self, keys: Iterable[TrustedKey], version: int, *, timeout: float = WAIT
    ) -> PassTrustList:
        """Publish the site's full visitor-pass trust list (every key ever trusted, retired ones included),
        retained on the site-wide topic, stamped with the server time; returns it once the broker has it.
        Every gateway of the site applies it, now or when it next connects. `version` must grow with every
        change: a gateway ignores a list at or below the version it holds."""
        now = datetime.now(UTC)
        trust = PassTrustList(
            site=self.site, version=version, keys=[WireTrustedKey.of(k, now) for k in keys], server_time=now
        )
        topic = site_level(self.site, "passes/trust", self.prefix)
        mid = self._session.publish(topic, trust.model_dump_json(by_alias=True).encode(), retain=True)
        self._session.wait_acks([mid], timeout)  # retained: nobody subscribing yet is fine
        return trust

    def push_ble_keys(
        self, gateway: str, keys: Iterable[WireBleKey], version: int, *, timeout: float = WAIT
    ) -> BleKeyList:
        """Publish `gateway`'s full list of BLE phone keys (revoked ones may stay listed as revoked), retained
        on its `ble/keys`, stamped with the server time; returns it once the broker has it. The gateway applies
        it now or when it next connects. `version` must grow with every change: a gateway ignores a list at or
        below the version it holds. The topic carries secrets: only this gateway may read it (mosquitto_acl)."""
        now = datetime.now(UTC)
        ble = BleKeyList(site=self.site, gateway=gateway, version=version, keys=list(keys), server_time=now)
        topic = self.topics(gateway).ble_keys
        mid = self._session.publish(topic, ble.model_dump_json(by_alias=True).encode(), retain=True)
        self._session.wait_acks([mid], timeout)  # retained: a gateway not subscribed yet gets it on connect
        return ble

    # --- commands ----------------------------------------------------------------------------------------------

    open_door = staticmethod(open_door)
    set_mode = staticmethod(set_mode)
    ping = staticmethod(ping)
    resync = staticmethod(resync)

    def send_command(
        self, gateway: str, command: AnyCommand, *, timeout: float | None = None
    ) -> CommandReply:
        """Send a command and wait for the gateway's reply (which may say ok=False: read `error`).

        The broker discards the command when it expires (MQTT message expiry), so an offline gateway does
        not execute it late. By default this waits until the expiry plus REPLY_GRACE. Raises
        CommandTimeoutError, PublishError (also when no gateway ever subscribed), ValueError if the command
        already expired.
        """
        ttl = (command.expires_at - datetime.now(UTC)).total_seconds()
        if ttl <= 0:
            raise ValueError(f"command {command.id} expired before it was sent")
        wait = ttl + REPLY_GRACE if timeout is None else timeout
        correlation = secrets.token_bytes(16)
        waiting = _Waiting(command.id)
        with self._cond:
            self._waiting[correlation] = waiting
        try:
            topic = self.topics(gateway).command
            mid = self._session.publish(
                topic,
                CommandEnvelope(cmd=command).model_dump_json(by_alias=True).encode(),
                ResponseTopic=self.reply_topic(gateway),
                CorrelationData=correlation,
                MessageExpiryInterval=max(1, math.ceil(ttl)),
            )
            (reason,) = self._session.wait_acks([mid], min(wait, WAIT))
            if reason.value == NO_MATCHING_SUBSCRIBERS:
                raise PublishError(f"no gateway subscribes to {topic}: it never connected")
            with self._cond:
                self._cond.wait_for(lambda: waiting.reply is not None or waiting.error is not None, wait)
        finally:
            with self._cond:
                self._waiting.pop(correlation, None)
        if waiting.error is not None:
            raise KitError(waiting.error)
        if waiting.reply is None:
            raise CommandTimeoutError(
                f"no reply from {gateway} to {command.command} {command.id} in {wait:.0f} s"
            )
        return waiting.reply

    # --- watching ----------------------------------------------------------------------------------------------

    def watch(self, model: type[M], callback: Callable[[str, M], None]) -> None:
        """Call `callback(gateway, message)` for each message of this kind from any gateway of the site
        (model: GatewayStatus, Telemetry, AclState, SnapshotRequest, ErrorReport or PassUses). Runs on the kit's
        dispatcher thread, one call at a time; it may call the kit (e.g. push a snapshot on a request)."""
        if model not in WATCHED:
            raise ValueError(
                f"{model.__name__} is not watched; choose one of {[m.__name__ for m in WATCHED]}"
            )
        with self._cond:
            self._watchers.setdefault(model, []).append(callback)

    def latest(self, model: type[M], gateway: str) -> M | None:
        """The last message of this kind from the gateway (retained status and telemetry arrive at once)."""
        with self._cond:
            value = self._latest.get((model, gateway))
        return value if isinstance(value, model) else None

    def wait_for(
        self,
        model: type[M],
        gateway: str,
        predicate: Callable[[M], bool] | None = None,
        *,
        timeout: float = WAIT,
    ) -> M:
        """Block until the latest message of this kind from the gateway satisfies `predicate` (default: any).
        Raises TimeoutError."""

        def ok() -> bool:
            value = self._latest.get((model, gateway))
            return isinstance(value, model) and (predicate is None or predicate(value))

        with self._cond:
            if not self._cond.wait_for(ok, timeout):
                raise TimeoutError(f"no matching {model.__name__} from {gateway} within {timeout} s")
            value = self._latest[(model, gateway)]
        assert isinstance(value, model)
        return value

    # --- paho's thread -----------------------------------------------------------------------------------------

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        where = parse(msg.topic, self.prefix)
        if where is None or where[0] != self.site:
            self.rejected.append((msg.topic, "not in this site's tree"))
            return
        _, gateway, leaf = where
        if leaf.startswith("cmd/reply/"):
            self._on_reply(msg)
            return
        model = _LEAF_MODEL.get(leaf)
        if model is None:
            self.rejected.append((msg.topic, "unexpected topic"))
            return
        if not msg.payload:  # a retained message being cleared
            return
        try:
            value = model.model_validate_json(msg.payload)
        except ValidationError as err:
            self.rejected.append((msg.topic, str(err)))
            log.warning("kit %s: invalid %s from %s: %s", self.client_id, leaf, gateway, err)
            return
        with self._cond:
            self._latest[(model, gateway)] = value
            callbacks = list(self._watchers.get(model, ()))
            self._cond.notify_all()
        for callback in callbacks:
            self._calls.put((callback, gateway, value))

    def _on_reply(self, msg: mqtt.MQTTMessage) -> None:
        correlation = getattr(msg.properties, "CorrelationData", None)
        with self._cond:
            waiting = self._waiting.get(bytes(correlation)) if correlation is not None else None
            if waiting is None:
                self.rejected.append((msg.topic, "reply without a pending command (late or duplicate)"))
                return
            try:
                reply = CommandReply.model_validate_json(msg.payload)
            except ValidationError as err:
                waiting.error = f"invalid reply to {waiting.command_id}: {err}"
            else:
                if reply.id != waiting.command_id:
                    waiting.error = f"reply names command {reply.id}, expected {waiting.command_id}"
                else:
                    waiting.reply = reply
            self._cond.notify_all()

    def _dispatch(self) -> None:
        while (item := self._calls.get()) is not None:
            callback, gateway, value = item
            try:
                callback(gateway, value)
            except Exception:  # a task boundary: one bad callback must not stop the others
                log.exception("kit %s: watch callback failed", self.client_id)

    def _warn_unrouted(self, topic: str, reasons: list[ReasonCode]) -> None:
        if any(r.value == NO_MATCHING_SUBSCRIBERS for r in reasons):
            log.warning(
                "kit %s: nobody subscribes to %s (gateway never connected); dropped", self.client_id, topic
            )


# --- event consumption ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Delivery:
    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    batches: int  # messages acknowledged (processed, or rejected as undecodable)
    new: int  # events handed to the handler and committed
    duplicates: int  # events already seen (redelivered, re-sent, or handled by another consumer)
    rejected: int  # messages kept in the store's rejected_messages
    failures: int  # attempts that raised (handler or store); the batch was retried
    last_error: str | None


class EventConsumer:
    """Consumes the events of every gateway of a site, each event handled once.

    `group`: join the shared subscription `$share/{group}/...`; the broker gives each message to one member.
    Members may be threads or processes; give them one DedupeStore file so that a message delivered to two
    of them (redelivery, a gateway's re-send) is still handled once.

    The session is persistent (clean_start False, `session_expiry`): events published while the consumer is
    away wait at the broker, so the client id must be stable per consumer and unique within the group. A
    message is acknowledged only after its batch committed; a batch whose handler raises is retried (with
    capped backoff) and stays unacknowledged meanwhile, so stopping the consumer then leaves it at the broker
    for the next start. Handlers run on the consumer's worker thread, one batch at a time.
    """

    def __init__(
        self,
        source: CloudKit | Connection,
        site: str,
        handler: EventHandler,
        *,
        dedupe: DedupeStore,
        group: str | None = None,
        client_id: str | None = None,
        session_expiry: int = 7 * 24 * 3600,
        prefix: str = PREFIX,
        receive_maximum: int = 50,
        retry_delay: tuple[float, float] = (0.2, 10.0),
    ) -> None:
        if isinstance(source, CloudKit):
            conn = source.connection
            client_id = client_id or f"{source.client_id}-events"
        else:
            conn = source
        if client_id is None:
            raise ValueError("a consumer needs a stable client_id (its persistent session is keyed by it)")
        self.site = check_segment(site, "site id")
        self.prefix = prefix
        self.handler = handler
        self.dedupe = dedupe
        topic = site_wildcard(self.site, "events", prefix)
        if group is not None:
            topic = f"$share/{check_segment(group, 'group')}/{topic}"
        self.topic = topic
        self._retry_delay = retry_delay
        self._queue: queue.SimpleQueue[_Delivery] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._stats_lock = threading.Lock()
        self._counts = {"batches": 0, "new": 0, "duplicates": 0, "rejected": 0, "failures": 0}
        self._last_error: str | None = None
        self._session = _Session(
            conn,
            client_id,
            subscriptions=[(topic, SubscribeOptions(qos=1))],
            on_message=self._on_message,
            clean_start=False,
            session_expiry=session_expiry,
            manual_ack=True,
            receive_maximum=receive_maximum,  # bounds what is in flight, unacknowledged, at once
        )

    @property
    def client_id(self) -> str:
        return self._session.client_id

    def start(self, timeout: float = WAIT) -> Self:
        """Connect and subscribe; returns once the subscription is acknowledged. Raises ConnectError."""
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name=f"consumer-{self.client_id}", daemon=True)
        self._worker.start()
        try:
            self._session.open(timeout)
        except BaseException:
            self._stop_worker()
            raise
        return self

    def stop(self) -> None:
        """Finish the batch in hand, then disconnect. Unacknowledged messages stay in the broker's session."""
        self._stop_worker()
        self._session.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stats(self) -> ConsumerStats:
        with self._stats_lock:
            return ConsumerStats(**self._counts, last_error=self._last_error)

    def _stop_worker(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=60.0)
            self._worker = None

    def _count(self, **by: int) -> None:
        with self._stats_lock:
            for key, n in by.items():
                self._counts[key] += n

    # paho's network thread: hand over, nothing else.
    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(_Delivery(self._session.generation, msg.mid, msg.qos, msg.topic, bytes(msg.payload)))

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                delivery = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if self._handle(delivery):
                self._session.ack(delivery.mid, delivery.qos, delivery.generation)
                self._count(batches=1)

    def _handle(self, d: _Delivery) -> bool:
        """Process one message; True when it may be acknowledged, False when stopping before it was done."""
        batch, error = self._decode(d)
        if batch is None:
            log.error("consumer %s: rejected message on %s: %s", self.client_id, d.topic, error)
            return self._attempt(d, lambda: self.dedupe.reject(d.topic, d.payload, error), rejected=1)
        return self._attempt(d, lambda: self.dedupe.process(batch, self.handler))

    def _decode(self, d: _Delivery) -> tuple[EventBatch | None, str]:
        where = parse(d.topic, self.prefix)
        if where is None or where[2] != "events" or where[0] != self.site:
            return None, "not an events topic of this site"
        try:
            batch = EventBatch.model_validate_json(d.payload)
        except ValidationError as err:
            return None, f"schema: {err}"
        # The topic is what the broker's ACL vouches for; the payload must not claim another source.
        if (batch.site, batch.gateway) != where[:2]:
            return None, f"batch claims {batch.site}/{batch.gateway} but came on {d.topic}"
        return batch, ""

    def _attempt(self, d: _Delivery, work: Callable[[], BatchResult | None], *, rejected: int = 0) -> bool:
        delay = self._retry_delay[0]
        while True:
            try:
                result = work()
            except Exception as err:  # a task boundary: the batch stays unacknowledged and is retried
                log.exception(
                    "consumer %s: batch on %s failed; retrying in %.1f s", self.client_id, d.topic, delay
                )
                with self._stats_lock:
                    self._counts["failures"] += 1
                    self._last_error = f"{type(err).__name__}: {err}"
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, self._retry_delay[1])
                continue
            if result is not None:
                self._count(new=result.new, duplicates=result.duplicates)
            self._count(rejected=rejected)
            return True


# --- broker ACL -----------------------------------------------------------------------------------------------


def mosquitto_acl(
    site: str, gateways: Iterable[str], *, backend_users: Iterable[str] = ("backend",), prefix: str = PREFIX
) -> str:
    """A mosquitto acl_file for one site: each gateway (MQTT user name = gateway id, e.g. through
    `use_identity_as_username` with mutual TLS) reads only its own down topics and writes only its own up
    topics; backend users read and write the site's whole tree. Every gateway also reads the site's pass
    trust list and every gateway's pass use counts, and writes its own."""
    check_segment(site, "site id")
    lines = ["# menwei/v1 broker ACL, generated by cloud_sync.kit.mosquitto_acl", ""]
    for user in backend_users:
        lines += [f"user {user}", f"topic readwrite {prefix}/{site}/#", ""]
    for gateway in gateways:
        t = Topics(site, gateway, prefix)
        lines.append(f"user {gateway}")
        lines += [f"topic read {topic}" for topic in t.down()]
        # '#' also matches the parent level: the default reply topic and any requester's reply topic.
        lines.append(f"topic write {t.command_reply}/#")
        lines += [
            f"topic write {topic}"
            for topic in (t.events, t.acl_state, t.acl_request, t.status, t.telemetry, t.errors, t.pass_uses)
        ]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
