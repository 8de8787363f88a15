"""CloudSync: the gateway's side of the cloud link, put together from the [mqtt] config.

One MQTT 5 connection (link.py) carries everything; this module builds it and routes its callbacks:

    link.on_message    -> downlink.handle        (snapshots, deltas, commands; downlink.py)
    link.on_published  -> uploader.on_published  (the outbox: marked sent only on PUBACK; uploader.py)
    link.on_connection -> uploader, downlink, status/acl-state/telemetry on connect
    gateway bus        -> uploader.notify_appended (new events go out as soon as they are committed)

Presence: the connection's last will is a retained GatewayStatus(online=false) on `status`; on every connect
a retained online=true replaces it, and a clean stop publishes online=false itself. The cloud therefore
always finds the current state retained, whether the gateway left cleanly or vanished.

The cloud being unreachable is normal life for this box, not an error: the gateway keeps deciding at the
doors, the outbox grows on disk, and the link reconnects by itself. So a failing broker is logged once at
warning (with the reason when the broker gave one: a refused password or certificate), then at debug while
it lasts, and at info on recovery.

Secrets: the password is read with edge.secrets (credentials directory, else environment). The TLS client key
must be a file in $CREDENTIALS_DIRECTORY (systemd LoadCredential=), because the TLS library opens it by path;
it is never copied elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cloud_sync.link import Incoming, LinkSettings, MqttLink, TlsFiles
from cloud_sync.messages import AclState, GatewayStatus
from cloud_sync.publisher import Publisher
from cloud_sync.telemetry import Heartbeat
from cloud_sync.topics import Topics
from cloud_sync.uploader import Uploader, overflow_detail

from edge.config import MqttSection
from edge.errors import ConfigError
from edge.events import AlarmEvent, AlarmKind, Event
from edge.gateway import Gateway
from edge.secrets import CREDENTIALS_DIRECTORY, read_secret
from edge.store.event_log import DroppedEvents, EventLog

log = logging.getLogger(__name__)


class DownlinkPort(Protocol):
    """What CloudSync needs from the downlink (cloud_sync.downlink.Downlink)."""

    def handle(self, msg: Incoming) -> None: ...

    def on_connection(self, connected: bool) -> None: ...

    def publish_acl_state(self) -> None: ...

    def close(self) -> None: ...


DownlinkFactory = Callable[[Gateway, Topics, MqttSection, Publisher], DownlinkPort]


def default_downlink(
    gateway: Gateway, topics: Topics, mqtt: MqttSection, publisher: Publisher
) -> DownlinkPort:
    """cloud_sync.downlink.Downlink. Imported here, not at the top: the upload side has no use for it, and
    tests of the upload side run without it (downlink=None)."""
    from cloud_sync.downlink import Downlink

    return Downlink(gateway, topics, mqtt, publisher)


def client_id(gateway: Gateway, mqtt: MqttSection) -> str:
    return mqtt.client_id or f"menwei-{gateway.config.site.id}-{gateway.config.gateway.id}"


class BrokerKeys(Protocol):
    """How to reach a broker: the keys [mqtt] and [homeassistant] share."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password_credential(self) -> str | None: ...
    @property
    def tls_ca_file(self) -> Path | None: ...
    @property
    def tls_cert_file(self) -> Path | None: ...
    @property
    def tls_key_credential(self) -> str | None: ...


def tls_files(keys: BrokerKeys, where: str = "mqtt") -> TlsFiles | None:
    """TLS from the config: the CA enables it; a client certificate with its key makes it mutual. `where` names
    the section in the errors."""
    if keys.tls_ca_file is None:
        if keys.tls_cert_file is not None or keys.tls_key_credential is not None:
            raise ConfigError(
                f"{where}: tls_cert_file / tls_key_credential need tls_ca_file (TLS is off without it)"
            )
        return None
    if (keys.tls_cert_file is None) != (keys.tls_key_credential is None):
        raise ConfigError(f"{where}: mutual TLS needs both tls_cert_file and tls_key_credential")
    key_file: Path | None = None
    if keys.tls_key_credential is not None:
        directory = os.environ.get(CREDENTIALS_DIRECTORY, "")
        if not directory:
            raise ConfigError(
                f"{where}: the TLS key {keys.tls_key_credential!r} must be a file in ${CREDENTIALS_DIRECTORY} "
                "(systemd LoadCredential=), which is not set"
            )
        key_file = Path(directory, keys.tls_key_credential)
        if not key_file.is_file():
            raise ConfigError(f"{where}: TLS key {keys.tls_key_credential!r} is missing: no file {key_file}")
    return TlsFiles(keys.tls_ca_file, keys.tls_cert_file, key_file)


def broker_password(keys: BrokerKeys, where: str = "mqtt") -> str | None:
    """The broker password from its credential (read now: a missing secret fails at start-up)."""
    if keys.password_credential is None:
        return None
    if keys.username is None:
        raise ConfigError(f"{where}: password_credential needs a username")
    secret = read_secret(keys.password_credential)
    assert secret is not None  # required=True: absent raises
    return secret.get_secret_value()


def link_settings(
    gateway: Gateway,
    mqtt: MqttSection,
    topics: Topics,
    will: bytes,
    *,
    reconnect_delay: tuple[float, float] = (1.0, 30.0),
) -> LinkSettings:
    """LinkSettings from the config; reads the password now, so a missing secret fails at start-up."""
    password = broker_password(mqtt)
    return LinkSettings(
        host=mqtt.host,
        port=mqtt.port,
        client_id=client_id(gateway, mqtt),
        keepalive=mqtt.keepalive_seconds,
        session_expiry=mqtt.session_expiry_seconds,
        username=mqtt.username,
        password=password,
        tls=tls_files(mqtt),
        reconnect_min=reconnect_delay[0],
        reconnect_max=reconnect_delay[1],
        will_topic=topics.status,
        will_payload=will,
        max_inflight=max(20, mqtt.upload_window + 8),  # room for telemetry and command replies
        max_payload=mqtt.max_payload_bytes,
    )


class CloudSync:
    """The cloud link of one started gateway. Construct it on the event loop after `gateway.start()`; call
    `start()`, and `stop()` before `gateway.stop()` (the outbox marks what was acknowledged on the way out).

    `downlink=None` runs without a downlink (upload, presence and telemetry only), e.g. in tests.
    `reconnect_delay` is paho's (min, max) back-off in seconds.
    """

    def __init__(
        self,
        gateway: Gateway,
        mqtt: MqttSection,
        *,
        software_version: str,
        downlink: DownlinkFactory | None = default_downlink,
        reconnect_delay: tuple[float, float] = (1.0, 30.0),
        poll_interval: float = 1.0,
    ) -> None:
        if gateway.events is None or gateway.engine is None:
            raise RuntimeError("start the gateway before its cloud sync")
        self.gateway = gateway
        self.mqtt = mqtt
        self.software = software_version
        self.events: EventLog = gateway.events
        self.topics = Topics(gateway.config.site.id, gateway.config.gateway.id, mqtt.topic_prefix)
        will = self._status(online=False)
        self.settings = link_settings(gateway, mqtt, self.topics, will, reconnect_delay=reconnect_delay)
        self.link: MqttLink = MqttLink(
            self.settings,
            on_attempt_failed=self._on_attempt_failed,
            on_message=self._on_message,
            on_connection=self._on_connection,
            on_published=self._on_published,
            subscriptions=self.topics.down() if downlink is not None else (),
        )
        self.uploader = Uploader(
            self.events,
            self.link,
            self.topics,
            batch=mqtt.upload_batch,
            window=mqtt.upload_window,
            cap=mqtt.outbox_max_events,
            on_dropped=self._on_dropped,
            poll_interval=poll_interval,
        )
        self.heartbeat = Heartbeat(
            gateway,
            self.link,
            self.topics,
            software=software_version,
            interval=mqtt.heartbeat_seconds,
            is_connected=lambda: self.link.connected,
            last_upload_at=lambda: self.uploader.last_upload_at,
        )
        self.downlink: DownlinkPort | None = (
            downlink(gateway, self.topics, mqtt, self.link) if downlink is not None else None
        )
        self._acl_seen: tuple[int, datetime] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._outage_since: float | None = time.monotonic()  # not connected yet
        self._outage_logged = False
        self._started = False
        self._stopped = False

    @property
    def connected(self) -> bool:
        return self.link.connected

    # --- life cycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._unsubscribe = self.gateway.bus.subscribe(Event, self._on_event)
        self.uploader.start()
        self.heartbeat.start()
        self.link.start()
        log.info(
            "cloud sync for %s/%s via %s:%d (tls %s)",
            self.topics.site,
            self.topics.gateway,
            self.settings.host,
            self.settings.port,
            "mutual" if self.settings.tls and self.settings.tls.cert_file else bool(self.settings.tls),
        )

    async def stop(self) -> None:
        """Publish status offline (if connected), disconnect, then let the outbox mark what was acknowledged.
        Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.downlink is not None:
            self.downlink.close()
        await self.heartbeat.stop()
        await asyncio.to_thread(self.link.stop, (self.topics.status, self._status(online=False)))
        await asyncio.sleep(0)  # PUBACKs handed over by paho's thread before it stopped
        await self.uploader.stop()

    # --- outgoing ----------------------------------------------------------------------------------------

    def publish_acl_state(self) -> None:
        """Publish the access-list version in force, retained. The downlink owns this message (it knows when a
        version was applied and publishes it on connect and after every change); without a downlink CloudSync
        publishes it on connect, dated when this process first saw the version."""
        if self.downlink is not None:
            self.downlink.publish_acl_state()
            return
        engine = self.gateway.engine
        if engine is None or not self.link.connected:
            return
        version = engine.acl.version
        if self._acl_seen is None or self._acl_seen[0] != version:
            self._acl_seen = (version, self.gateway.clock.now())
        state = AclState(version=version, applied_at=self._acl_seen[1])
        self.link.publish(self.topics.acl_state, state.model_dump_json().encode(), qos=1, retain=True)

    def _status(self, *, online: bool) -> bytes:
        status = GatewayStatus(online=online, at=self.gateway.clock.now(), software=self.software)
        return status.model_dump_json().encode()

    # --- callbacks (on the loop) -------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if event.persist:
            self.uploader.notify_appended()

    def _on_message(self, msg: Incoming) -> None:
        if self.downlink is not None:
            self.downlink.handle(msg)

    def _on_published(self, mid: int, ok: bool) -> None:
        self.uploader.on_published(mid, ok)

    def _on_connection(self, connected: bool, reason: str) -> None:
        if connected:
            if self._outage_since is not None and self._outage_logged:
                log.info("cloud link restored after %.0f s", time.monotonic() - self._outage_since)
            self._outage_since = None
            self._outage_logged = False
            self.link.publish(self.topics.status, self._status(online=True), qos=1, retain=True)
            if self.downlink is None:  # else the downlink's on_connection publishes it
                self.publish_acl_state()
            self.heartbeat.kick()
        else:
            self._outage_since = time.monotonic()
            self._outage_logged = True  # link.py has logged the disconnect at warning
        self.uploader.on_connection(connected)
        if self.downlink is not None:
            self.downlink.on_connection(connected)

    def _on_attempt_failed(self, reason: str) -> None:
        if self.link.connected or self._stopped:
            return
        where = f"{self.settings.host}:{self.settings.port}"
        if not self._outage_logged:
            self._outage_logged = True
            log.warning("cloud broker %s: %s; retrying, the gateway keeps working offline", where, reason)
        else:
            log.debug("cloud broker %s: %s", where, reason)

    def _on_dropped(self, dropped: DroppedEvents) -> None:
        self.gateway.bus.publish(
            AlarmEvent(
                at=self.gateway.clock.now(),
                kind=AlarmKind.OUTBOX_OVERFLOW,
                detail=overflow_detail(dropped, self.mqtt.outbox_max_events),
            )
        )
