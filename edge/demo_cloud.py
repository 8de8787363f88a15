"""The demo's "property cloud": the real cloud kit talking to the real gateway sync over a real broker.

It pushes the access list as a chunked snapshot, revokes a card with a delta, sends a remote-open command and
prints the events it consumes (exactly once, through the kit's dedupe store), so the demo shows both ends of
the contract. The kit is blocking (it has its own threads); the demo's loop calls it through to_thread.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from cloud_sync.dedupe import DedupeStore, ReceivedEvent
from cloud_sync.kit import CloudKit, EventConsumer, open_door
from cloud_sync.messages import CommandReply, Delta, RevokeCredential
from cloud_sync.pass_issuer import IssuedPass, PassIssuer
from cloud_sync.sync import CloudSync

from edge.cli import package_version
from edge.config import MqttSection
from edge.gateway import Gateway
from edge.model import AccessList, CredentialKind

APPLY_TIMEOUT = 30.0


class DemoCloud:
    def __init__(self, gateway: Gateway, mqtt: MqttSection, data_dir: Path, out: TextIO) -> None:
        self.gateway = gateway
        self.mqtt = mqtt
        self.site = gateway.site.id
        self.gateway_id = gateway.config.gateway.id
        self.out = out
        self.sync = CloudSync(gateway, mqtt, software_version=package_version())
        self.kit = CloudKit(mqtt.host, mqtt.port, client_id="demo-cloud", site=self.site)
        self.dedupe = DedupeStore(data_dir / "cloud-events.db")
        self.data_dir = data_dir
        self.issuer = PassIssuer.generate(self.site)
        self.consumer = EventConsumer(
            self.kit, self.site, self._on_event, dedupe=self.dedupe, client_id="demo-cloud-events"
        )

    async def start(self) -> None:
        await self.sync.start()
        await asyncio.to_thread(self.kit.connect)
        await asyncio.to_thread(self.consumer.start)
        # The site's pass-issuing key goes to every gateway on the retained trust list before any pass is shown.
        await asyncio.to_thread(self.kit.push_trust_list, [self.issuer.trusted_key()], 1)
        kid = self.issuer.trusted_key().kid
        deadline = time.monotonic() + APPLY_TIMEOUT
        while self.gateway.passes.trust.get(kid) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the gateway did not take the trust list")
            await asyncio.sleep(0.02)
        self._print(f"trust list v1 with pass-issuing key {kid.hex()} in force at the gateway")

    def issue_pass(self, door: str, label: str, host_unit: str) -> IssuedPass:
        """What the resident app does when a resident invites a visitor: a one-time signed pass for two hours.
        The QR image is saved beside the demo's data for a person to look at."""
        now = self.gateway.clock.now()
        issued = self.issuer.issue(
            doors=(door,),
            valid_from=now - timedelta(minutes=1),
            valid_until=now + timedelta(hours=2),
            max_uses=1,
            host_unit=host_unit,
            label=label,
        )
        png = self.data_dir / f"pass-{issued.pass_id}.png"
        png.write_bytes(issued.qr_png or b"")
        self._print(
            f"issued pass {issued.pass_id} ({label}, host {host_unit}): a {len(issued.token)}-character signed "
            f"token, QR version {issued.qr_version}, image {png}"
        )
        return issued

    async def stop(self) -> None:
        await self.sync.stop()  # uploads what it can, then publishes "offline"
        await asyncio.sleep(0.5)  # let the consumer take the last batch before it goes
        await asyncio.to_thread(self.consumer.stop)
        await asyncio.to_thread(self.kit.close)
        self.dedupe.close()

    async def push_snapshot(self, acl: AccessList) -> None:
        started = time.monotonic()
        await asyncio.to_thread(self.kit.push_snapshot, self.gateway_id, acl)
        await self._until_version(acl.version)
        self._print(
            f"snapshot v{acl.version} applied by the gateway {time.monotonic() - started:.2f}s after push"
        )

    async def revoke_card(self, card: str) -> None:
        version = self._version()
        delta = Delta(
            from_version=version,
            to_version=version + 1,
            ops=[RevokeCredential(op="revoke_credential", kind=CredentialKind.CARD, value=card)],
        )
        started = time.monotonic()
        await asyncio.to_thread(self.kit.push_delta, self.gateway_id, delta)
        await self._until_version(version + 1)
        self._print(
            f"delta v{version}->v{version + 1} (revoke card {card}) in force "
            f"{(time.monotonic() - started) * 1000:.0f} ms after push"
        )

    async def command_open(self, door: str) -> CommandReply:
        command = open_door(door, operator="resident-app:p-zhang", reason="parcel delivery")
        return await asyncio.to_thread(self.kit.send_command, self.gateway_id, command, timeout=10.0)

    def _version(self) -> int:
        return self.gateway.engine.acl.version if self.gateway.engine else 0

    async def _until_version(self, version: int) -> None:
        deadline = time.monotonic() + APPLY_TIMEOUT
        while self._version() < version:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway did not apply access list version {version}")
            await asyncio.sleep(0.02)

    def _print(self, text: str) -> None:
        # One write per line: this runs on the consumer's thread as well as on the loop.
        self.out.write(f"  cloud   {text}\n")
        self.out.flush()

    def _on_event(self, received: ReceivedEvent) -> None:
        """Runs on the consumer's worker thread, once per event."""
        e = received.uploaded.event
        kind = e.get("type")
        if kind == "decision":
            what = f"{'granted' if e.get('granted') else 'denied'} {e.get('door')} ({e.get('reason')})"
        elif kind == "alarm":
            where = e.get("door") or e.get("device")
            what = f"{e.get('alarm')} {'raised' if e.get('active') else 'cleared'} at {where}"
        elif kind in ("mode", "remote_open", "command"):
            hidden = ("type", "at", "command_id")
            what = " ".join(f"{k}={v}" for k, v in e.items() if k not in hidden and v not in (None, ""))
        else:
            return  # door open/close states are stored and uploaded too; the demo keeps its screen short
        self._print(f"<- {received.gateway} #{received.seq} {kind}: {what}")
