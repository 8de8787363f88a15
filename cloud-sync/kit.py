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

import logging
import math
import queue
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

import paho.mqtt.client as mqtt
from cloud_sync.broker_acl import mosquitto_acl
from cloud_sync.kit_commands import AnyCommand, enrol_face, open_door, ping, resync, set_mode
from cloud_sync.kit_consumer import ConsumerStats, EventConsumer
from cloud_sync.kit_session import (
    NO_MATCHING_SUBSCRIBERS,
    REPLY_GRACE,
    WAIT,
    CommandTimeoutError,
    ConnectError,
    Connection,
    KitError,
    KitSession,
    PublishError,
)
from cloud_sync.link import TlsFiles
from cloud_sync.messages import (
    AccessListDocument,
    AclState,
    BleKeyList,
    CommandEnvelope,
    CommandReply,
    Delta,
    ErrorReport,
    GatewayStatus,
    Message,
    PassTrustList,
    PassUses,
    SnapshotRequest,
    Telemetry,
    WireBleKey,
    WireTrustedKey,
)
from cloud_sync.snapshot_codec import DEFAULT_CHUNK_BYTES, encode_snapshot
from cloud_sync.topics import PREFIX, Topics, check_segment, parse, site_level, site_wildcard
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from edge.model import AccessList
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
        self._session = KitSession(
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
