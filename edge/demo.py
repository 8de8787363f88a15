"""`menwei demo`: the real gateway on this machine with simulated devices, through a short scripted day at
the gate. Every line it prints comes from an event on the gateway's bus, the same events the event log stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from zoneinfo import ZoneInfo

from cloud_sync.broker import LocalBroker, mosquitto_available

from drivers.sim.door_controller import SimulatedDoorController
from drivers.sim.reader import SimulatedReader
from edge.config import ConsoleSection, GatewayConfig, MqttSection, load_config
from edge.demo_cloud import DemoCloud
from edge.demo_data import CHEN_CARD, GUARD_CARD, LI_CARD, LI_PIN, UNKNOWN_CARD, ZHANG_CARD, demo_access_list
from edge.devices import build_devices
from edge.errors import ConfigError
from edge.events import (
    AlarmEvent,
    DecisionEvent,
    DoorStateEvent,
    Event,
    ExitRequestEvent,
    ModeEvent,
)
from edge.gateway import Gateway
from edge.model import CredentialKind, Direction, DoorMode
from edge.secrets import read_secret_bytes
from edge.store.audit import verify_chain

if TYPE_CHECKING:
    from edge.console.server import ConsoleServer

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.toml"


@dataclass(slots=True)
class Printer:
    """Turns bus events into one line each for a person watching the demo."""

    gateway: Gateway
    out: TextIO
    started: float

    def __call__(self, event: Event) -> None:
        line = self.describe(event)
        if line:
            stamp = f"{time.monotonic() - self.started:6.1f}s"
            self.out.write(f"  {stamp}  {line}\n")
            self.out.flush()

    def door_name(self, door_id: str | None) -> str:
        door = self.gateway.site.doors.get(door_id or "")
        return door.name if door else (door_id or "site")

    def describe(self, event: Event) -> str:
        if isinstance(event, DecisionEvent):
            d = event.decision
            who = ""
            if d.person_id and self.gateway.engine:
                person = self.gateway.engine.acl.people.get(d.person_id)
                if person:
                    unit = f" ({person.building}-{person.unit})" if person.unit else ""
                    who = f" {person.name}{unit}"
            if d.pass_id and self.gateway.engine:
                vp = self.gateway.engine.acl.passes.get(d.pass_id)
                who = f" ({vp.label}, host {vp.host_unit})" if vp else ""
            verdict = "GRANTED" if d.granted else "DENIED "
            shown = f"{d.credential[:8]}..." if d.kind is CredentialKind.PIN else d.credential
            door = self.door_name(d.door_id)
            return f"{verdict} {door} [{d.reader_id}] {d.kind} {shown}{who}: {d.reason}"
        if isinstance(event, AlarmEvent):
            what = "ALARM  " if event.active else "cleared"
            where = self.door_name(event.door_id) if event.door_id else event.device_id
            return f"{what} {event.kind} at {where}"
        if isinstance(event, DoorStateEvent):
            return f"door    {self.door_name(event.door_id)}: {event.previous} -> {event.state}"
        if isinstance(event, ModeEvent):
            return f"mode    {self.door_name(event.door_id)} -> {event.mode} by {event.by} ({event.reason})"
        if isinstance(event, ExitRequestEvent):
            return f"exit    request-to-exit button at {self.door_name(event.door_id)}"
        if event.persist:
            record = event.to_record()
            fields = " ".join(
                f"{k}={v}"
                for k, v in record.items()
                if k not in ("type", "at", "command_id") and v not in (None, "")
            )
            return f"{record['type']:7s} {fields}"
        return ""


class DemoDay:
    """The scripted day. Devices are the shipped simulators; everything else is the real gateway."""

    def __init__(
        self,
        gateway: Gateway,
        say: Callable[[str], None],
        pace: float,
        pin_key: bytes | None = None,
        cloud: DemoCloud | None = None,
    ) -> None:
        self.gw = gateway
        self.pin_key = pin_key
        self.cloud = cloud
        self.say = say
        self.pace = pace
        site = gateway.site
        self.gate_in = self._reader(lambda r: r.direction is Direction.IN and r.area is not None)
        self.gate_out = self._reader(lambda r: r.direction is Direction.OUT and r.area is not None)
        self.gate = site.readers[self.gate_in].door_id
        others = [d for d in site.doors if d != self.gate]
        self.side, self.lobby = others[0], others[-1]
        self.side_in = next(r.id for r in site.readers.values() if r.door_id == self.side)
        self.lobby_in = next(r.id for r in site.readers.values() if r.door_id == self.lobby)

    def _reader(self, pred: Callable[..., bool]) -> str:
        return next(r.id for r in self.gw.site.readers.values() if pred(r))

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds * self.pace)

    def card(self, reader_id: str, number: str, kind: CredentialKind = CredentialKind.CARD) -> None:
        reader = self.gw.devices.readers[reader_id]
        assert isinstance(reader, SimulatedReader)
        reader.present(kind, number)

    def contact(self, door_id: str, is_open: bool) -> None:
        self._input(door_id, "contact_input", is_open)

    def _input(self, door_id: str, attr: str, active: bool) -> None:
        door = self.gw.site.doors[door_id]
        number = getattr(door, attr)
        controller = self.gw.devices.controllers[door.controller]
        assert isinstance(controller, SimulatedDoorController)
        assert number is not None
        controller.set_input(number, active)

    async def walk_through(self, door_id: str, seconds: float = 1.0) -> None:
        await self.wait(0.3)
        self.contact(door_id, True)
        await self.wait(seconds)
        self.contact(door_id, False)

    async def run_once(self, round_no: int) -> None:
        gw = self.gw
        # Each push must carry a newer version than the one in force (the revocation delta of the previous
        # round moved it on too); the gateway ignores a snapshot it already has.
        version = (gw.engine.acl.version if gw.engine else 0) + 1
        acl = demo_access_list(
            version, gw.clock.now(), self.side, list(gw.site.doors), self.pin_key, ZoneInfo(gw.site.timezone)
        )
        if self.cloud is not None:
            self.say(
                f"Round {round_no}: the property's cloud pushes access list version {acl.version} over MQTT"
            )
            await self.cloud.push_snapshot(acl)
        else:
            self.say(f"Round {round_no}: access list version {acl.version} is loaded (offline demo)")
            await gw.replace_access_list(acl)

        self.say("Zhang Wei taps his card at the main gate and walks in")
        self.card(self.gate_in, ZHANG_CARD)
        await self.walk_through(self.gate)
        await self.wait(1)

        self.say("An unknown card is tried at the main gate")
        self.card(self.gate_in, UNKNOWN_CARD)
        await self.wait(1)

        self.say("Zhang Wei's card is passed back through the fence to a friend (anti-passback)")
        self.card(self.gate_in, ZHANG_CARD)
        await self.wait(1)

        if self.cloud is not None:
            self.say(
                "Zhang Wei invites a courier in the resident app; the courier's QR pass is scanned at the "
                "side door (verified offline), then shown again"
            )
            issued = self.cloud.issue_pass(self.side, "Courier", "A-1201")
            pass_value = issued.token
        else:
            self.say(f"A courier shows visitor pass V-{version} at the side door, then tries it again")
            pass_value = f"V-{version}"
        self.card(self.side_in, pass_value, CredentialKind.PASS)
        await self.walk_through(self.side)
        self.card(self.side_in, pass_value, CredentialKind.PASS)
        await self.wait(1)

        held = gw.site.doors[self.lobby].held_seconds
        self.say(f"Li Na opens the lobby door and props it open (held time {held:g}s)")
        self.card(self.lobby_in, LI_CARD)
        await self.wait(0.3)
        self.contact(self.lobby, True)
        await asyncio.sleep(held + 0.5)
        self.contact(self.lobby, False)
        await self.wait(1)

        if self.pin_key is not None:
            self.say("Li Na keys her PIN at the lobby (the gateway keeps only its HMAC), then a wrong one")
            self.card(self.lobby_in, LI_PIN, CredentialKind.PIN)
            await self.walk_through(self.lobby)
            self.card(self.lobby_in, "999999", CredentialKind.PIN)
            await self.wait(1)

        cleaning = gw.engine.acl.schedules["daytime"].name if gw.engine else ""
        self.say(f"Chen the cleaner tries the lobby outside his hours ({cleaning}, site time)")
        self.card(self.lobby_in, CHEN_CARD)
        await self.wait(1)

        self.say("Someone forces the side door open")
        self.contact(self.side, True)
        await self.wait(1)
        self.contact(self.side, False)
        await self.wait(1)

        self.say("The guard starts a lockdown")
        gw.set_mode(DoorMode.LOCKDOWN, by="guard:wang", reason="suspicious person at the gate")
        await self.wait(0.5)
        self.card(self.lobby_in, LI_CARD)
        await self.wait(0.5)
        self.card(self.lobby_in, GUARD_CARD)
        await self.walk_through(self.lobby)
        self.say("Exit buttons still release doors during a lockdown")
        self._input(self.lobby, "rex_input", True)
        self._input(self.lobby, "rex_input", False)
        await self.wait(1)
        gw.set_mode(DoorMode.NORMAL, by="guard:wang", reason="all clear")
        await self.wait(0.5)

        if self.cloud is not None:
            self.say("The resident app opens the side door for a delivery (a remote command, with a reason)")
            reply = await self.cloud.command_open(self.side)
            self.say(f"the gateway replied to the command: ok={reply.ok} {reply.error or ''}".rstrip())
            await self.wait(1.5)

            self.say("Li Na has moved out: the property revokes her card (a delta), then she taps it")
            await self.cloud.revoke_card(LI_CARD)
            self.card(self.lobby_in, LI_CARD)
            await self.wait(1)

        self.say("Zhang Wei leaves through the main gate")
        self.card(self.gate_out, ZHANG_CARD)
        await self.walk_through(self.gate)
        await self.wait(1.5)


async def run_demo(
    config: GatewayConfig,
    *,
    seconds: float | None,
    out: TextIO = sys.stdout,
    pace: float = 1.0,
    console_port: int | None = None,
) -> int:
    gateway = Gateway(config, build_devices(config))
    started = time.monotonic()
    gateway.bus.subscribe(Event, Printer(gateway, out, started))

    def say(text: str) -> None:
        out.write(f"\n* {text}\n")
        out.flush()

    await gateway.start()
    say(
        f"menwei gateway '{config.gateway.id}' at site '{config.site.id}' is running; data in "
        f"{config.gateway.data_dir}"
    )
    cloud: DemoCloud | None = None
    if config.mqtt is not None:
        say(f"cloud link: MQTT 5 broker at {config.mqtt.host}:{config.mqtt.port}, topics menwei/v1/...")
        cloud = DemoCloud(gateway, config.mqtt, config.gateway.data_dir, out)
        await cloud.start()
    else:
        say("no MQTT broker (install mosquitto or add [mqtt] to the config): running offline only")
    console = await _start_console(gateway, console_port, say) if console_port is not None else None
    pin_key = read_secret_bytes(config.secrets.pin_key, required=False, length=32)
    day = DemoDay(gateway, say, pace, pin_key.get_secret_value() if pin_key else None, cloud)
    deadline = None if seconds is None else started + seconds
    round_no = 1
    try:
        while True:
            round_task = asyncio.ensure_future(day.run_once(round_no))
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait({round_task}, timeout=remaining)
            if not done:
                round_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await round_task
                break
            round_task.result()
            round_no += 1
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        if console is not None:
            await console.stop()
        if cloud is not None:
            await cloud.stop()
        await gateway.stop()
    report = verify_chain(gateway.db_path)
    say(
        f"Stopped. Event log: {report.checked} events, hash chain {'verified' if report.ok else 'BROKEN'}"
        f"{'' if report.ok else ': ' + report.detail}"
    )
    return 0 if report.ok else 1


async def _start_console(gateway: Gateway, port: int, say: Callable[[str], None]) -> ConsoleServer | None:
    """The guard console on loopback, for a person trying the demo in a browser; the demo runs on without it
    if the port is taken or the `console` extra is not installed."""
    try:
        from edge.console.server import ConsoleServer
    except ImportError:
        say("guard console: not installed (the `console` extra); the demo runs without it")
        return None
    console = ConsoleServer(gateway, ConsoleSection(address="127.0.0.1", port=port))
    try:
        listening = await console.start()
    except ConfigError as err:
        say(f"guard console not started: {err}")
        return None
    say(
        f"guard console: open {listening.url} in a browser; create the first admin there with the "
        "one-time setup code from the log line above (it is new on every run of the demo)"
    )
    return console


def demo_main(
    config_path: Path | None,
    seconds: float | None,
    data_dir: Path | None,
    pace: float = 1.0,
    console_port: int | None = None,
) -> int:
    config = load_config(config_path or DEFAULT_CONFIG)
    with tempfile.TemporaryDirectory(prefix="menwei-demo-") as tmp, contextlib.ExitStack() as stack:
        target = data_dir or Path(tmp)
        _demo_credentials(Path(tmp), config.secrets.pin_key, config.passes.walkin_key)
        update: dict[str, object] = {"gateway": config.gateway.model_copy(update={"data_dir": target})}
        if config.mqtt is None and mosquitto_available():
            # The demo's own broker: a real Mosquitto on a free loopback port, gone when the demo ends.
            broker = stack.enter_context(LocalBroker(Path(tmp) / "broker"))
            update["mqtt"] = MqttSection(host=broker.host, port=broker.port, heartbeat_seconds=10.0)
        config = config.model_copy(update=update)
        try:
            return asyncio.run(run_demo(config, seconds=seconds, pace=pace, console_port=console_port))
        except KeyboardInterrupt:
            return 0


def _demo_credentials(tmp: Path, pin_key_name: str, walkin_key_name: str) -> None:
    """The demo's secrets: a random site PIN key and walk-in pass key (the guard console registers walk-in
    visitors with it) in a private credentials directory, as systemd's LoadCredential= would provide, unless
    the caller already set one up."""
    if os.environ.get("CREDENTIALS_DIRECTORY"):
        return
    creds = tmp / "credentials"
    creds.mkdir(mode=0o700)
    (creds / pin_key_name).write_text(secrets.token_bytes(32).hex())
    (creds / walkin_key_name).write_text(secrets.token_bytes(32).hex())
    os.environ["CREDENTIALS_DIRECTORY"] = str(creds)
