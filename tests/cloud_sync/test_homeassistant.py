"""Home Assistant MQTT discovery against a real mosquitto: the discovery configs of every door (retained), states
that follow a card grant, a forced door and tamper, unlock commands refused or honoured (and audited), retained
commands refused, re-discovery on Home Assistant's birth message, and availability: online while running, offline
after a clean stop and after a SIGKILLed `menwei run`. Home Assistant itself is played by a paho client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import pytest
from cloud_sync.ha_discovery import HaTopics
from cloud_sync.homeassistant import HomeAssistantBridge, link_settings

from drivers.reader import CredentialRead
from drivers.sim.door_controller import SimulatedDoorController
from edge.config import HomeAssistantSection, MqttSection, load_config
from edge.demo_data import ZHANG_CARD, demo_access_list
from edge.devices import build_devices
from edge.errors import ConfigError
from edge.events import CommandEvent, Event, RemoteOpenEvent
from edge.gateway import Gateway
from edge.model import CredentialKind, DoorMode

if TYPE_CHECKING:
    from cloud_sync.broker import LocalBroker

    from tests.cloud_sync.conftest import Probe, ProbeFactory

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo.toml"
DOORS = ("main-gate", "side-door", "lobby-a")
TOPICS = HaTopics.build("homeassistant", "menwei", "lotus-garden", "gw-demo")
WAIT = 10.0


def last(probe: Probe, topic: str) -> mqtt.MQTTMessage | None:
    with probe.cond:
        for msg in reversed(probe.messages):
            if msg.topic == topic:
                return msg
    return None


def payload(probe: Probe, topic: str) -> bytes | None:
    msg = last(probe, topic)
    return None if msg is None else bytes(msg.payload)


async def wait_payload(probe: Probe, topic: str, expected: bytes) -> None:
    ok = await asyncio.to_thread(probe.wait_until, lambda: payload(probe, topic) == expected, WAIT)
    assert ok, f"{topic}: {payload(probe, topic)!r}, expected {expected!r}"


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    """Poll on the loop (the gateway keeps running meanwhile); fail after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@dataclass
class Rig:
    gateway: Gateway
    bridge: HomeAssistantBridge
    ha: Probe  # plays Home Assistant: subscribed to everything
    sim: SimulatedDoorController
    events: list[Event]

    def commands(self) -> list[CommandEvent]:
        return [e for e in self.events if isinstance(e, CommandEvent)]

    async def stored(self, kind: str) -> list[dict[str, Any]]:
        log = self.gateway.events
        assert log is not None
        await asyncio.to_thread(log.flush)
        records = [e.record() for e in await asyncio.to_thread(log.pending, 10_000)]
        return [r for r in records if r["type"] == kind]


async def start_rig(tmp_path: Path, broker: LocalBroker, probe: Probe, **ha: Any) -> AsyncIterator[Rig]:
    cfg = load_config(DEMO)
    cfg = cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"data_dir": tmp_path})})
    gateway = Gateway(cfg, build_devices(cfg))
    await gateway.start()
    await gateway.replace_access_list(demo_access_list(1, datetime.now(UTC), "side-door", list(DOORS)))
    events: list[Event] = []
    gateway.bus.subscribe(Event, events.append)
    probe.connect(broker.host, broker.port)
    assert await asyncio.to_thread(probe.wait_connected)
    await asyncio.to_thread(probe.subscribe, "#")
    settings = HomeAssistantSection(
        enabled=True, host=broker.host, port=broker.port, keepalive_seconds=5, **ha
    )
    bridge = HomeAssistantBridge(gateway, settings, software_version="1.2.3", reconnect_delay=(1, 2))
    await bridge.start()
    sim = gateway.devices.controllers["sim-1"]
    assert isinstance(sim, SimulatedDoorController)
    rig = Rig(gateway, bridge, probe, sim, events)
    await wait_payload(probe, TOPICS.availability, b"online")
    for door in DOORS:
        await wait_payload(probe, TOPICS.state(door, "lock"), b"LOCKED")
    try:
        yield rig
    finally:
        await bridge.stop()
        await gateway.stop()


@pytest.fixture
async def rig(tmp_path: Path, broker: LocalBroker, make_probe: ProbeFactory) -> AsyncIterator[Rig]:
    async for r in start_rig(tmp_path, broker, make_probe("ha")):
        yield r


@pytest.fixture
async def open_rig(tmp_path: Path, broker: LocalBroker, make_probe: ProbeFactory) -> AsyncIterator[Rig]:
    async for r in start_rig(tmp_path, broker, make_probe("ha"), allow_unlock=True):
        yield r


# --- discovery ---------------------------------------------------------------------------------------------


async def test_discovery_configs_for_every_door_retained(
    rig: Rig, broker: LocalBroker, make_probe: ProbeFactory
) -> None:
    # A Home Assistant that connects later gets everything from the broker's retained store.
    late = make_probe("ha-late")
    late.connect(broker.host, broker.port)
    assert await asyncio.to_thread(late.wait_connected)
    await asyncio.to_thread(late.subscribe, "homeassistant/#")
    expected = len(DOORS) * 4
    assert await asyncio.to_thread(late.wait_messages, expected)
    configs = {m.topic: m for m in late.messages}
    assert all(m.retain for m in configs.values())
    unique_ids: set[str] = set()
    for door_id in DOORS:
        door = rig.gateway.site.doors[door_id]
        lock = json.loads(
            configs[f"homeassistant/lock/menwei-lotus-garden-gw-demo/{door_id}-lock/config"].payload
        )
        assert lock["command_topic"] == f"menwei/lotus-garden/gw-demo/doors/{door_id}/lock/set"
        assert lock["state_topic"] == f"menwei/lotus-garden/gw-demo/doors/{door_id}/lock"
        assert (lock["payload_lock"], lock["payload_unlock"]) == ("LOCK", "UNLOCK")
        assert (lock["state_locked"], lock["state_unlocked"]) == ("LOCKED", "UNLOCKED")
        assert lock["optimistic"] is False
        assert lock["retain"] is False
        assert lock["json_attributes_topic"] == f"menwei/lotus-garden/gw-demo/doors/{door_id}/attributes"
        sensors = {
            key: json.loads(
                configs[
                    f"homeassistant/binary_sensor/menwei-lotus-garden-gw-demo/{door_id}-{key}/config"
                ].payload
            )
            for key in ("contact", "alarm", "tamper")
        }
        assert {k: s["device_class"] for k, s in sensors.items()} == {
            "contact": "door",
            "alarm": "problem",
            "tamper": "tamper",
        }
        for entity in (lock, *sensors.values()):
            assert entity["availability_topic"] == "menwei/lotus-garden/gw-demo/availability"
            assert (entity["payload_available"], entity["payload_not_available"]) == ("online", "offline")
            assert entity["device"] == {
                "identifiers": [f"menwei-lotus-garden-gw-demo-{door_id}"],
                "name": door.name,
                "manufacturer": "menwei",
                "model": f"door ({door.lock_type.value})",
                "sw_version": "1.2.3",
            }
            assert entity["origin"] == {"name": "menwei", "sw_version": "1.2.3"}
            unique_ids.add(entity["unique_id"])
        for sensor in sensors.values():
            assert (sensor["payload_on"], sensor["payload_off"]) == ("ON", "OFF")
            assert sensor["state_topic"].startswith(f"menwei/lotus-garden/gw-demo/doors/{door_id}/")
    assert len(unique_ids) == expected


async def test_birth_message_publishes_discovery_again(rig: Rig, make_probe: ProbeFactory) -> None:
    config = f"homeassistant/lock/{TOPICS.node_id}/main-gate-lock/config"
    seen = sum(1 for m in rig.ha.messages if m.topic == config)
    hass = make_probe("hass-birth")
    hass.connect(rig.bridge.settings.host, rig.bridge.settings.port)
    assert await asyncio.to_thread(hass.wait_connected)
    assert await asyncio.to_thread(hass.wait_published, hass.publish("homeassistant/status", b"online"))
    again = await asyncio.to_thread(
        rig.ha.wait_until, lambda: sum(1 for m in rig.ha.messages if m.topic == config) > seen, WAIT
    )
    assert again


# --- states --------------------------------------------------------------------------------------------------


async def test_card_grant_unlocks_then_relocks_on_close(rig: Rig) -> None:
    lock, contact = TOPICS.state("main-gate", "lock"), TOPICS.state("main-gate", "contact")
    assert payload(rig.ha, contact) == b"OFF"
    decision = rig.gateway.present(CredentialRead("main-gate-in", CredentialKind.CARD, ZHANG_CARD))
    assert decision.granted
    await wait_payload(rig.ha, lock, b"UNLOCKED")
    rig.sim.set_input(1, True)  # the resident walks through
    await wait_payload(rig.ha, contact, b"ON")
    await wait_payload(
        rig.ha, TOPICS.attributes("main-gate"), b'{"state": "open", "mode": "normal", "alarms": []}'
    )
    rig.sim.set_input(1, False)
    await wait_payload(rig.ha, contact, b"OFF")
    await wait_payload(rig.ha, lock, b"LOCKED")  # relocked as the door closed
    assert payload(rig.ha, TOPICS.state("main-gate", "alarm")) == b"OFF"


async def test_forced_door_raises_the_alarm_until_closed(
    rig: Rig, broker: LocalBroker, make_probe: ProbeFactory
) -> None:
    alarm = TOPICS.state("lobby-a", "alarm")
    rig.sim.set_input(7, True)  # lobby-a's contact opens without a grant
    await wait_payload(rig.ha, alarm, b"ON")
    assert payload(rig.ha, TOPICS.state("lobby-a", "contact")) == b"ON"
    assert payload(rig.ha, TOPICS.state("lobby-a", "lock")) == b"LOCKED"
    await wait_payload(
        rig.ha,
        TOPICS.attributes("lobby-a"),
        b'{"state": "forced", "mode": "normal", "alarms": ["door_forced"]}',
    )
    # Retained: a Home Assistant that restarts now still sees the alarm.
    late = make_probe("ha-late")
    late.connect(broker.host, broker.port)
    assert await asyncio.to_thread(late.wait_connected)
    await asyncio.to_thread(late.subscribe, alarm)
    assert await asyncio.to_thread(late.wait_messages, 1)
    assert late.messages[0].retain and late.messages[0].payload == b"ON"
    rig.sim.set_input(7, False)
    await wait_payload(rig.ha, alarm, b"OFF")


async def test_tamper_is_its_own_sensor_and_an_alarm(rig: Rig) -> None:
    rig.sim.set_input(6, True)  # side-door's tamper switch
    await wait_payload(rig.ha, TOPICS.state("side-door", "tamper"), b"ON")
    await wait_payload(rig.ha, TOPICS.state("side-door", "alarm"), b"ON")
    rig.sim.set_input(6, False)
    await wait_payload(rig.ha, TOPICS.state("side-door", "tamper"), b"OFF")
    await wait_payload(rig.ha, TOPICS.state("side-door", "alarm"), b"OFF")


async def test_site_lockdown_shows_in_every_door_attributes(rig: Rig) -> None:
    rig.gateway.set_mode(DoorMode.LOCKDOWN, by="test")
    for door in DOORS:
        await wait_payload(
            rig.ha, TOPICS.attributes(door), b'{"state": "locked", "mode": "lockdown", "alarms": []}'
        )


# --- commands ------------------------------------------------------------------------------------------------


async def test_unlock_refused_when_not_allowed(rig: Rig) -> None:
    rig.ha.publish(TOPICS.command("main-gate"), b"UNLOCK")
    await eventually(lambda: bool(rig.commands()), "the refusal")
    [refusal] = rig.commands()
    assert (refusal.ok, refusal.error, refusal.by, refusal.door_id) == (
        False,
        "not_allowed",
        "homeassistant",
        "main-gate",
    )
    assert not rig.gateway.runners["main-gate"].machine.relay_unlocked
    assert not any(isinstance(e, RemoteOpenEvent) for e in rig.events)
    assert rig.sim.outputs[1] is False  # fail-secure: de-energised = locked
    [stored] = await rig.stored("command")
    assert (stored["command"], stored["ok"], stored["error"]) == ("open_door", False, "not_allowed")
    assert payload(rig.ha, TOPICS.state("main-gate", "lock")) == b"LOCKED"


async def test_unlock_opens_the_door_when_allowed(open_rig: Rig) -> None:
    rig = open_rig
    rig.ha.publish(TOPICS.command("side-door"), b"UNLOCK")
    await wait_payload(rig.ha, TOPICS.state("side-door", "lock"), b"UNLOCKED")
    assert rig.gateway.runners["side-door"].machine.relay_unlocked
    [opened] = await rig.stored("remote_open")
    assert (opened["door"], opened["by"]) == ("side-door", "homeassistant")
    [command] = await rig.stored("command")
    assert (command["command"], command["ok"], command["door"]) == ("open_door", True, "side-door")


async def test_unlock_refused_in_lockdown_even_when_allowed(open_rig: Rig) -> None:
    rig = open_rig
    rig.gateway.set_mode(DoorMode.LOCKDOWN, by="test")
    rig.ha.publish(TOPICS.command("main-gate"), b"UNLOCK")
    await eventually(lambda: bool(rig.commands()), "the refusal")
    assert [(c.ok, c.error) for c in rig.commands()] == [(False, "failed")]
    assert not rig.gateway.runners["main-gate"].machine.relay_unlocked


async def test_unknown_and_misaddressed_commands_are_refused(open_rig: Rig) -> None:
    rig = open_rig
    rig.ha.publish(TOPICS.command("main-gate"), b"OPEN SESAME")
    rig.ha.publish(TOPICS.command("no-such-door"), b"UNLOCK")
    await eventually(lambda: len(rig.commands()) >= 2, "two refusals")
    assert sorted((c.error or "") for c in rig.commands()) == ["invalid", "unknown_door"]
    assert not rig.gateway.runners["main-gate"].machine.relay_unlocked
    assert not any(isinstance(e, RemoteOpenEvent) for e in rig.events)


async def test_a_retained_unlock_never_opens_on_connect(open_rig: Rig) -> None:
    """An UNLOCK left retained on the broker reaches every new subscription: refused, or it would open the
    door at each reconnect."""
    rig = open_rig
    await rig.bridge.stop()
    stale = rig.ha.client.publish(TOPICS.command("main-gate"), b"UNLOCK", qos=1, retain=True)
    assert await asyncio.to_thread(rig.ha.wait_published, stale.mid)
    settings = HomeAssistantSection(
        enabled=True, host=rig.bridge.settings.host, port=rig.bridge.settings.port, allow_unlock=True
    )
    again = HomeAssistantBridge(rig.gateway, settings, software_version="1.2.3")
    await again.start()
    try:
        await eventually(lambda: bool(rig.commands()), "the refusal")
        [refusal] = rig.commands()
        assert (refusal.ok, refusal.error) == (False, "invalid")
        assert "retained" in refusal.detail
        assert not rig.gateway.runners["main-gate"].machine.relay_unlocked
        assert not any(isinstance(e, RemoteOpenEvent) for e in rig.events)
    finally:
        await again.stop()
        rig.ha.client.publish(TOPICS.command("main-gate"), b"", qos=1, retain=True)


async def test_lock_command_only_reports_the_state(open_rig: Rig) -> None:
    rig = open_rig
    rig.ha.publish(TOPICS.command("main-gate"), b"LOCK")
    await eventually(lambda: len(rig.commands()) == 1, "the lock command")
    assert [(c.command, c.ok) for c in rig.commands()] == [("lock", True)]
    rig.gateway.open_door("main-gate", by="test")
    rig.ha.publish(TOPICS.command("main-gate"), b"LOCK")
    await eventually(lambda: len(rig.commands()) == 2, "the second lock command")
    assert (rig.commands()[1].ok, rig.commands()[1].error) == (False, "failed")
    assert rig.gateway.runners["main-gate"].machine.relay_unlocked  # the unlock runs its time


# --- availability ----------------------------------------------------------------------------------------------


async def test_clean_stop_publishes_offline(rig: Rig, broker: LocalBroker, make_probe: ProbeFactory) -> None:
    await rig.bridge.stop()
    await wait_payload(rig.ha, TOPICS.availability, b"offline")
    late = make_probe("ha-late")
    late.connect(broker.host, broker.port)
    assert await asyncio.to_thread(late.wait_connected)
    await asyncio.to_thread(late.subscribe, TOPICS.availability)
    assert await asyncio.to_thread(late.wait_messages, 1)
    assert late.messages[0].retain and late.messages[0].payload == b"offline"


def test_use_cloud_broker_excludes_own_broker_keys() -> None:
    with pytest.raises(ValueError, match="remove host, port"):
        HomeAssistantSection(use_cloud_broker=True, host="10.0.0.2", port=1884)
    assert HomeAssistantSection(use_cloud_broker=True).use_cloud_broker
    assert not HomeAssistantSection().enabled


def test_topic_prefixes_are_checked() -> None:
    assert (
        HomeAssistantSection(discovery_prefix="ha/discovery", topic_prefix="site_7/menwei").enabled is False
    )
    for bad in ("a/+/b", "a/#", "/a", "a/", "a//b", "$SYS", "a b"):
        with pytest.raises(ValueError, match="is not a topic prefix"):
            HomeAssistantSection(topic_prefix=bad)


async def test_use_cloud_broker_reaches_the_mqtt_broker(
    tmp_path: Path, broker: LocalBroker, make_probe: ProbeFactory
) -> None:
    cfg = load_config(DEMO)
    cfg = cfg.model_copy(
        update={
            "gateway": cfg.gateway.model_copy(update={"data_dir": tmp_path}),
            "mqtt": MqttSection(host=broker.host, port=broker.port),
        }
    )
    gateway = Gateway(cfg, build_devices(cfg))
    await gateway.start()
    ha = make_probe("ha")
    ha.connect(broker.host, broker.port)
    assert await asyncio.to_thread(ha.wait_connected)
    await asyncio.to_thread(ha.subscribe, TOPICS.availability)
    bridge = HomeAssistantBridge(
        gateway, HomeAssistantSection(enabled=True, use_cloud_broker=True), software_version="1.2.3"
    )
    try:
        assert (bridge.settings.port, bridge.settings.client_id) == (
            broker.port,
            "menwei-ha-lotus-garden-gw-demo",
        )
        await bridge.start()
        await wait_payload(ha, TOPICS.availability, b"online")
    finally:
        await bridge.stop()
        await gateway.stop()


def test_broker_mistakes_name_the_homeassistant_section(tmp_path: Path) -> None:
    cfg = load_config(DEMO)
    gateway = Gateway(cfg, build_devices(cfg))
    with pytest.raises(ConfigError, match=r"^homeassistant: password_credential needs a username"):
        link_settings(gateway, HomeAssistantSection(password_credential="ha-pw"), TOPICS)
    with pytest.raises(ConfigError, match=r"^homeassistant: mutual TLS needs both"):
        link_settings(
            gateway, HomeAssistantSection(tls_ca_file=tmp_path / "ca.pem", tls_key_credential="k"), TOPICS
        )


def test_use_cloud_broker_needs_mqtt(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(DEMO.read_text() + "\n[homeassistant]\nenabled = true\nuse_cloud_broker = true\n")
    with pytest.raises(ConfigError, match=r"homeassistant\.use_cloud_broker: needs an \[mqtt\] section"):
        load_config(config)


def run_gateway(tmp_path: Path, extra: str) -> subprocess.Popen[str]:
    config = tmp_path / "gateway.toml"
    config.write_text(
        DEMO.read_text().replace('data_dir = "../var/demo"', f'data_dir = "{tmp_path}"') + "\n" + extra
    )
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
        cwd=ROOT,
    )


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
def test_menwei_run_availability_follows_the_process(
    tmp_path: Path, broker: LocalBroker, make_probe: ProbeFactory, how: str
) -> None:
    ha = make_probe("ha")
    ha.connect(broker.host, broker.port)
    assert ha.wait_connected()
    ha.subscribe(TOPICS.availability)
    proc = run_gateway(
        tmp_path, f"[homeassistant]\nenabled = true\nport = {broker.port}\nkeepalive_seconds = 60\n"
    )
    try:
        assert ha.wait_until(lambda: payload(ha, TOPICS.availability) == b"online", 30), proc.poll()
        if how == "sigkill":
            proc.kill()  # no clean stop: the broker publishes the will at once (the socket closes)
        else:
            proc.send_signal(signal.SIGTERM)
        assert ha.wait_until(lambda: payload(ha, TOPICS.availability) == b"offline", WAIT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if how == "sigterm":
        assert proc.returncode == 0, err
        assert "Home Assistant discovery via 127.0.0.1" in err
    else:
        assert proc.returncode == -signal.SIGKILL


def test_menwei_run_publishes_nothing_when_disabled(
    tmp_path: Path, broker: LocalBroker, make_probe: ProbeFactory
) -> None:
    watcher = make_probe("watcher")
    watcher.connect(broker.host, broker.port)
    assert watcher.wait_connected()
    watcher.subscribe("#")
    # The cloud link to the same broker shows the gateway ran long enough to connect and publish.
    proc = run_gateway(
        tmp_path,
        f"[mqtt]\nport = {broker.port}\n\n[homeassistant]\nenabled = false\nport = {broker.port}\n",
    )
    try:
        cloud_status = "menwei/v1/lotus-garden/gw-demo/status"
        assert watcher.wait_until(lambda: b'"online":true' in (payload(watcher, cloud_status) or b""), 30)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    topics = {m.topic for m in watcher.messages}
    assert topics and all(t.startswith("menwei/v1/") for t in topics), topics
    assert "Home Assistant" not in err
