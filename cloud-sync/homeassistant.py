"""HomeAssistantBridge: the doors in a site's Home Assistant over MQTT discovery ([homeassistant], off by default).

Its own MQTT client (link.py), usually to Home Assistant's broker on the site's network, or to the cloud's
broker with `use_cloud_broker`. What it publishes is declared in ha_discovery.py:

    on connect, and when Home Assistant announces itself (`<discovery_prefix>/status` = online):
        availability online, every door's discovery configs and states, all retained
    on every door event on the bus (relay, contact, alarm, mode):  the door's states that changed, retained
    will, and on a clean stop:  availability offline, retained

Commands: Home Assistant's lock entity publishes LOCK / UNLOCK on `<base>/doors/<door>/lock/set`. UNLOCK opens
the door (gateway.open_door, by "homeassistant") only with `allow_unlock = true`; otherwise it is refused. Every
command is logged and audited as a `command` event, like the cloud's. A retained command is refused whatever the
setting: it would replay on every reconnect. LOCK cannot end an unlock early (the door relocks by itself when
its time is up or it closes), so it only re-publishes the state.

The session is not kept (expiry 0): an UNLOCK published while the gateway was away must not open a door later.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from cloud_sync.ha_discovery import (
    LOCK,
    OFFLINE,
    ONLINE,
    UNLOCK,
    DoorView,
    HaTopics,
    discovery_messages,
    state_messages,
)
from cloud_sync.link import Incoming, LinkSettings, MqttLink
from cloud_sync.sync import BrokerKeys, broker_password, tls_files

from edge.config import HomeAssistantSection
from edge.errors import ConfigError
from edge.events import AlarmEvent, CommandEvent, DoorStateEvent, Event, ModeEvent, RelayCommand
from edge.gateway import Gateway

log = logging.getLogger(__name__)

BY = "homeassistant"
MAX_COMMAND = 64  # bytes; a lock command is a word


def link_settings(
    gateway: Gateway,
    ha: HomeAssistantSection,
    topics: HaTopics,
    *,
    reconnect_delay: tuple[float, float] = (1.0, 30.0),
) -> LinkSettings:
    """The bridge's MQTT connection; reads the password now, so a missing secret fails at start-up."""
    keys: BrokerKeys = ha
    where = "homeassistant"
    if ha.use_cloud_broker:
        if gateway.config.mqtt is None:
            raise ConfigError("homeassistant.use_cloud_broker: there is no [mqtt] section")
        keys, where = gateway.config.mqtt, "mqtt"
    password = broker_password(keys, where)
    site, gw = gateway.config.site.id, gateway.config.gateway.id
    return LinkSettings(
        host=keys.host,
        port=keys.port,
        client_id=ha.client_id or f"menwei-ha-{site}-{gw}",
        keepalive=ha.keepalive_seconds,
        session_expiry=0,
        username=keys.username,
        password=password,
        tls=tls_files(keys, where),
        reconnect_min=reconnect_delay[0],
        reconnect_max=reconnect_delay[1],
        will_topic=topics.availability,
        will_payload=OFFLINE,
        max_payload=4096,
    )


class HomeAssistantBridge:
    """Publishes a started gateway's doors to Home Assistant. Construct it on the event loop after
    `gateway.start()`; `start()`, and `stop()` before `gateway.stop()`."""

    def __init__(
        self,
        gateway: Gateway,
        settings: HomeAssistantSection,
        *,
        software_version: str,
        reconnect_delay: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        if gateway.engine is None:
            raise RuntimeError("start the gateway before its Home Assistant bridge")
        self.gateway = gateway
        self.ha = settings
        self.software = software_version
        cfg = gateway.config
        self.topics = HaTopics.build(
            settings.discovery_prefix, settings.topic_prefix, cfg.site.id, cfg.gateway.id
        )
        self.settings = link_settings(gateway, settings, self.topics, reconnect_delay=reconnect_delay)
        self.link = MqttLink(
            self.settings,
            on_message=self._on_message,
            on_connection=self._on_connection,
            on_published=lambda mid, ok: None,
            on_attempt_failed=self._on_attempt_failed,
            subscriptions=(self.topics.ha_status, self.topics.command_filter),
        )
        self._published: dict[str, bytes] = {}  # retained state last sent per topic, on this connection
        self._unsubscribe: Callable[[], None] | None = None
        self._outage_logged = False
        self._outage_since: float | None = None
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
        self.link.start()
        log.info(
            "Home Assistant discovery via %s:%d (prefix %r, states under %s, unlock %s)",
            self.settings.host,
            self.settings.port,
            self.topics.discovery_prefix,
            self.topics.base,
            "allowed" if self.ha.allow_unlock else "refused",
        )

    async def stop(self) -> None:
        """Publish availability offline (if connected) and disconnect. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        await asyncio.to_thread(self.link.stop, (self.topics.availability, OFFLINE))

    # --- publishing --------------------------------------------------------------------------------------

    def publish_all(self) -> None:
        """Availability, every discovery config and every state: on connect and on Home Assistant's birth."""
        if not self.link.connected:
            return
        self.link.publish(self.topics.availability, ONLINE, retain=True, content_type="text/plain")
        doors = list(self.gateway.site.doors.values())
        for topic, payload in discovery_messages(self.topics, doors, self.software):
            self.link.publish(topic, payload, retain=True)
        self._published.clear()
        for door_id in self.gateway.runners:
            self._publish_door(door_id)

    def _publish_door(self, door_id: str) -> None:
        runner = self.gateway.runners.get(door_id)
        if runner is None or not self.link.connected:
            return
        for topic, payload in state_messages(self.topics, runner.door, DoorView.of(runner.machine)):
            if self._published.get(topic) != payload:
                self._published[topic] = payload
                self.link.publish(topic, payload, retain=True, content_type="text/plain")

    # --- callbacks (on the loop) -------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        # The door machine has its new state when its events are published: read it rather than replay them.
        if isinstance(event, ModeEvent) and event.door_id is None:
            for door_id in self.gateway.runners:
                self._publish_door(door_id)
        elif isinstance(event, (DoorStateEvent, RelayCommand, AlarmEvent, ModeEvent)) and event.door_id:
            self._publish_door(event.door_id)

    def _on_connection(self, connected: bool, reason: str) -> None:
        if connected:
            if self._outage_logged and self._outage_since is not None:
                log.info("Home Assistant broker back after %.0f s", time.monotonic() - self._outage_since)
            self._outage_logged = False
            self._outage_since = None
            self.publish_all()
        else:
            self._published.clear()
            self._outage_since = time.monotonic()
            self._outage_logged = True  # link.py logged the disconnect

    def _on_attempt_failed(self, reason: str) -> None:
        if self.link.connected or self._stopped:
            return
        where = f"{self.settings.host}:{self.settings.port}"
        if not self._outage_logged:
            self._outage_logged = True
            self._outage_since = time.monotonic()
            log.warning("Home Assistant broker %s: %s; retrying", where, reason)
        else:
            log.debug("Home Assistant broker %s: %s", where, reason)

    def _on_message(self, msg: Incoming) -> None:
        if msg.topic == self.topics.ha_status:
            if msg.payload.strip() == ONLINE:
                log.info("Home Assistant is online: discovery published again")
                self.publish_all()
            return
        door_id = self.topics.door_of_command(msg.topic)
        if door_id is not None:
            self._command(door_id, msg)

    # --- commands ----------------------------------------------------------------------------------------

    def _command(self, door_id: str, msg: Incoming) -> None:
        word = msg.payload[:MAX_COMMAND].decode("utf-8", "replace").strip()
        command = "open_door" if word == UNLOCK else "lock" if word == LOCK else "unknown"
        runner = self.gateway.runners.get(door_id)
        if runner is None:
            self._refuse(command, door_id[:64], "unknown_door", f"no door {door_id[:64]!r} on this gateway")
        elif msg.retain:
            # Not a person pressing a button now: whatever left it on the broker would replay it on every connect.
            self._refuse(
                command, door_id, "invalid", f"retained {word!r} command ignored; clear it on the broker"
            )
        elif command == "unknown":
            self._refuse(
                command, door_id, "invalid", f"unknown payload {word!r}: expected {LOCK} or {UNLOCK}"
            )
        elif command == "lock":
            if runner.machine.relay_unlocked:
                self._refuse(
                    command,
                    door_id,
                    "failed",
                    "the door relocks by itself when its unlock time ends or it closes",
                )
            else:
                self._audit(command, door_id, True, None, "already locked")
        elif not self.ha.allow_unlock:
            self._refuse(command, door_id, "not_allowed", "[homeassistant] allow_unlock is false")
        elif not self.gateway.open_door(door_id, by=BY, reason="unlock from Home Assistant"):
            self._refuse(command, door_id, "failed", "door is in lockdown")
        else:
            log.info("Home Assistant unlocked %s", door_id)
            self._audit(command, door_id, True, None, "")
        # Home Assistant waits for the state topic after a command: answer with the state, changed or not.
        door_topics = self.topics.state(door_id, "")
        self._published = {t: p for t, p in self._published.items() if not t.startswith(door_topics)}
        self._publish_door(door_id)

    def _refuse(self, command: str, door_id: str, error: str, detail: str) -> None:
        log.warning("Home Assistant command %s for %s refused: %s (%s)", command, door_id, error, detail)
        self._audit(command, door_id, False, error, detail)

    def _audit(self, command: str, door_id: str, ok: bool, error: str | None, detail: str) -> None:
        self.gateway.bus.publish(
            CommandEvent(
                at=self.gateway.clock.now(),
                command_id=str(uuid.uuid4()),
                command=command,
                by=BY,
                ok=ok,
                error=error,
                door_id=door_id if door_id in self.gateway.runners else None,
                detail=detail[:500],
            )
        )
