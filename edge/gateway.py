"""The gateway runtime: one asyncio loop that owns the decision engine, the doors and the devices.

    reader driver --CredentialRead--> Gateway.present() --decide (memory only)--> DecisionEvent on the bus
        bus --> DoorRunner (grant -> RelayCommand) --> DoorIO --> controller.set_output()
        bus --> EventLog writer thread (durable, hash-chained)        bus --> reader feedback

Blocking work (SQLite writes, replacing the access list) runs in threads; the loop never waits on the disk
between a credential and the relay command.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import sqlite_utils

from drivers.reader import CredentialRead
from edge.alarms import AlarmRecorder, AlarmStore
from edge.clock import Clock, SystemClock
from edge.config import GatewayConfig
from edge.decision import AccessRequest, Decision, DecisionEngine, GatewayState
from edge.devices import Devices, DoorIO
from edge.door import DoorRunner
from edge.events import AlarmEvent, AlarmKind, DecisionEvent, Event, EventBus, ModeEvent, RemoteOpenEvent
from edge.face.consent import FaceTemplateKeeper
from edge.face.factors import CombinedFactors, FactorRule
from edge.face.service import FaceEnrolment
from edge.heap import release_free_memory
from edge.model import AccessList, CredentialKind, DoorMode, Site
from edge.passes.runtime import PassRuntime
from edge.passes.token import is_token
from edge.pin import pin_digest
from edge.secrets import read_secret_bytes
from edge.store.access_store import load_access_list, save_access_list, set_version
from edge.store.db import open_db, transaction
from edge.store.event_log import EventLog, StoredEvent
from edge.store.recovery import Recovery, boot_check
from edge.store.state import get_state, put_state
from edge.store.upkeep import DataUpkeep, backup_dir

log = logging.getLogger(__name__)

DB_NAME = "menwei.db"


class Gateway:
    def __init__(self, config: GatewayConfig, devices: Devices, *, clock: Clock | None = None) -> None:
        self.config = config
        self.site: Site = config.to_site()
        self.devices = devices
        self.clock: Clock = clock or SystemClock()
        self.bus = EventBus()
        self.db_path: Path = config.gateway.data_dir / DB_NAME
        self.engine: DecisionEngine | None = None
        self.events: EventLog | None = None
        self.runners: dict[str, DoorRunner] = {}
        self._io: DoorIO | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: list[Any] = []
        self._stopping = asyncio.Event()
        self._pin_key = read_secret_bytes(config.secrets.pin_key, required=False, length=32)
        self._warned_no_pin_key = False
        self.passes = PassRuntime(config, self.site, self.bus, self.clock, self.db_path, self.spawn)
        self.stored_failures = 0
        # Alarms kept until a guard acknowledges them (edge/alarms.py), recorded from start() on whether or not
        # a console runs; the console reads and acknowledges them here.
        self.alarms = AlarmStore(self.db_path, config.store.synchronous)
        self.alarm_recorder: AlarmRecorder | None = None
        # The boot check's report when the database had to be restored (edge/store/recovery.py); while
        # `snapshot_wanted` is set, the cloud downlink asks for a fresh snapshot on every connect.
        self.recovery: Recovery | None = None
        self.snapshot_wanted: str | None = None
        self.upkeep: DataUpkeep | None = None
        self.upkeep_start_delay = 60.0  # seconds before the first retention run and backup
        # Called on the loop with each decision and the seconds it took (edge/ops/metrics.py); must be cheap.
        self.decision_observer: Callable[[Decision, float], None] | None = None
        face = config.face
        self.factors: CombinedFactors | None = (
            CombinedFactors(
                FactorRule(d, within_seconds=face.second_factor_seconds) for d in face.second_factor_doors
            )
            if face is not None and face.second_factor_doors
            else None
        )
        self.face_templates = (
            FaceTemplateKeeper(config.gateway.data_dir, self._face_reloaders) if face is not None else None
        )
        # Enrolment on the running gateway (the cloud contract's photo or embedding, local tools).
        self.face_enrolment = (
            FaceEnrolment(
                face.pack_dir,
                face.manifest,
                config.gateway.data_dir,
                lambda: self._engine().acl,
                self._reload_face_readers,
            )
            if face is not None
            else None
        )

    # --- life cycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.config.gateway.data_dir.mkdir(parents=True, exist_ok=True)
        self.recovery = await asyncio.to_thread(
            boot_check,
            self.db_path,
            backup_dir(self.config),
            full=self.config.store.boot_check == "full",
            synchronous=self.config.store.synchronous,
        )
        self.alarm_recorder = AlarmRecorder(self.alarms, self.bus)  # before anything can raise an alarm
        acl, modes, lockdown, pass_uses = await asyncio.to_thread(self._load)
        state = GatewayState(door_modes=modes, lockdown=lockdown, pass_uses=pass_uses)
        self.engine = DecisionEngine(self.site, acl, state)
        if self.face_templates is not None:  # before the face readers start: no stale template is ever loaded
            await asyncio.to_thread(self.face_templates.sync, self.face_templates.consenting(acl))
        # The access list lives for hours or days: take it out of the cyclic collector's scans, or a full
        # collection walks 400,000 objects and stalls the doors for ~100 ms. (It is freed by reference
        # counting when a newer list replaces it.)
        gc.collect()
        gc.freeze()
        await asyncio.to_thread(release_free_memory)  # what the load freed goes back to the OS (edge/heap.py)
        await self.passes.start(state.pass_uses, lambda: self._engine().acl, self._stopping)
        log.info("access list version %d loaded: %s", acl.version, acl.counts())
        self.events = EventLog(self.db_path, synchronous=self.config.store.synchronous)
        self._unsubscribe.append(self.bus.subscribe(Event, self._persist))
        if self.recovery is not None:  # on the record (synced, shown), and a fresh list asked for
            # The first event after the restore's seq jump: the audit accepts the gap because of it.
            detail = self.recovery.describe()
            log.error("store restored: %s", detail)
            self.bus.publish(AlarmEvent(at=self.clock.now(), kind=AlarmKind.STORE_RESTORED, detail=detail))
            self.snapshot_wanted = detail
        self._unsubscribe.append(self.bus.subscribe(DecisionEvent, self._feedback))
        for door in self.site.doors.values():
            self.runners[door.id] = DoorRunner(door, self.bus, self.clock)
        self._io = DoorIO(
            self.runners,
            self.devices.controllers,
            self.bus,
            self.clock,
            self.spawn,
            fire_inputs=self.devices.fire_inputs,
        )
        for reader in self.devices.readers.values():
            reader.bind(self._on_read)
            reader.bind_condition(self._io.reader_condition)
            if hasattr(reader, "on_face_event"):  # a face camera (drivers/face): unknown faces become alarms
                reader.on_face_event = self._on_face_event
        for controller in self.devices.controllers.values():
            await controller.start()
        for reader in self.devices.readers.values():
            await reader.start()
        for runner in self.runners.values():
            runner.start()
            # A door restored in a non-default mode (or a site still in lockdown) is driven to it now.
            if state.door_modes.get(runner.door.id, runner.door.mode) is not runner.door.mode:
                self.bus.publish(
                    ModeEvent(
                        at=self.clock.now(), mode=state.door_modes[runner.door.id], door_id=runner.door.id
                    )
                )
        if lockdown:
            self.bus.publish(ModeEvent(at=self.clock.now(), mode=DoorMode.LOCKDOWN, reason="restored"))
        self.spawn(self._housekeeping())
        self.upkeep = DataUpkeep(
            self.config, self.db_path, self._stopping, start_delay=self.upkeep_start_delay
        )
        self.spawn(self.upkeep.run())
        log.info("gateway %s started with %d doors", self.config.gateway.id, len(self.runners))

    async def stop(self) -> None:
        """Stop taking credentials, let in-flight relay writes and events finish, then release the devices.
        Safe to call twice."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        for reader in self.devices.readers.values():
            await reader.stop()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self.alarm_recorder is not None:  # stops with the event log's subscription; writes what is queued
            await self.alarm_recorder.close()
        for runner in self.runners.values():
            runner.close()
        if self._io is not None:
            self._io.close()
        while self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)
        for controller in self.devices.controllers.values():
            await controller.stop()
        if self.events is not None:
            await asyncio.to_thread(self.events.close)
        log.info("gateway stopped")

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a coroutine in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the hot path ----------------------------------------------------------------------------------------

    def present(self, read: CredentialRead) -> Decision:
        """Decide a credential read at a reader. Called on the loop; memory only."""
        started = time.perf_counter()
        engine = self._engine()
        if read.kind is CredentialKind.PASS and is_token(read.value):  # a QR pass: verified offline first
            now, mono = self.clock.now(), self.clock.monotonic()
            decision = self.passes.decide(engine, read.reader_id, read.value, now, mono)
        else:
            value = self._pin(read.value) if read.kind is CredentialKind.PIN else read.value
            request = AccessRequest(read.reader_id, read.kind, value, self.clock.now())
            if self.factors is not None:  # doors that need a face and a second credential
                decision = self.factors.decide(engine, request, self.clock.monotonic())
            else:
                decision = engine.decide(request, self.clock.monotonic())
        self.bus.publish(DecisionEvent(at=decision.at, decision=decision))
        if decision.granted and decision.pass_id is not None:  # stored by the pass runtime: one row per use
            self.passes.note_use(decision)
        if self.decision_observer is not None:
            self.decision_observer(decision, time.perf_counter() - started)
        return decision

    def _on_face_event(self, reader_id: str, outcome: Any, snapshot: str | None) -> None:
        kind = AlarmKind.FACE_UNKNOWN if outcome.kind == "unknown" else AlarmKind.FACE_SPOOF
        reader = self.site.readers.get(reader_id)
        detail = outcome.reason + (f"; snapshot {snapshot} kept on the gateway" if snapshot else "")
        self.bus.publish(
            AlarmEvent(
                at=self.clock.now(),
                kind=kind,
                door_id=reader.door_id if reader else None,
                device_id=reader_id,
                detail=detail,
            )
        )

    def _sync_face_templates(self) -> None:
        if self.face_templates is not None:
            consenting = self.face_templates.consenting(self._engine().acl)
            self.spawn(asyncio.to_thread(self.face_templates.sync, consenting))

    def _reload_face_readers(self) -> None:
        for reload in self._face_reloaders():
            reload()

    def _face_reloaders(self) -> list[Callable[[], None]]:
        # Called from the sync thread: reader.reload only writes to the worker's pipe.
        reloaders: list[Callable[[], None]] = []
        for reader in self.devices.readers.values():
            reload = getattr(reader, "reload", None)
            if callable(reload):
                reloaders.append(reload)
        return reloaders

    def _pin(self, pin: str) -> str:
        """The PIN's digest under the site key; the PIN itself goes no further than this line."""
        if self._pin_key is None:
            if not self._warned_no_pin_key:
                log.warning("a PIN was entered but no site PIN key is configured: PINs are refused")
                self._warned_no_pin_key = True
            return "unhashed"
        try:
            return pin_digest(self._pin_key.get_secret_value(), pin)
        except ValueError:
            return "malformed"

    def _on_read(self, read: CredentialRead) -> None:
        self.present(read)

    # --- operator actions ------------------------------------------------------------------------------------

    def set_mode(self, mode: DoorMode, door_id: str | None = None, *, by: str, reason: str = "") -> None:
        """Change one door's mode, or with door_id None start (LOCKDOWN) or lift (any other mode) a site
        lockdown. Persisted, so a restart comes back in the same mode."""
        engine = self._engine()
        if door_id is None:
            engine.state.lockdown = mode is DoorMode.LOCKDOWN
            self.spawn(asyncio.to_thread(self._save_state, "lockdown", engine.state.lockdown))
        else:
            if door_id not in self.site.doors:
                raise KeyError(door_id)
            engine.state.door_modes[door_id] = mode
            self.spawn(asyncio.to_thread(self._save_state, "door_modes", dict(engine.state.door_modes)))
        self.bus.publish(ModeEvent(at=self.clock.now(), mode=mode, door_id=door_id, by=by, reason=reason))

    async def replace_access_list(self, acl: AccessList) -> None:
        """Store a whole new access list atomically, then switch the engine to it. save_access_list validates
        the list first, in the worker thread, so a big list never stalls the doors here."""
        await asyncio.to_thread(self._save_acl, acl)
        self._engine().acl = acl
        log.info("access list version %d in force: %s", acl.version, acl.counts())
        self._sync_face_templates()

    async def apply_delta(
        self,
        version: int,
        write: Callable[[sqlite_utils.Database], None],
        update: Callable[[AccessList], None],
    ) -> None:
        """Change the access list in force to `version` in place (a cloud delta): `write(db)` runs in a thread
        inside one transaction that also records the version; only once that committed does `update(acl)`
        change the list in memory, on the loop, between two decisions. An exception from `write` (e.g.
        AccessListError) rolls everything back and leaves both as they were."""
        acl = self._engine().acl
        await asyncio.to_thread(self._write_delta, version, write)
        if self._engine().acl is not acl:  # replaced while the delta was written: the caller serialises these
            raise RuntimeError("the access list was replaced while a delta was being applied")
        update(acl)
        acl.version = version
        self._sync_face_templates()

    def open_door(self, door_id: str, *, by: str, reason: str = "") -> bool:
        """Release a door for its unlock time on an operator's word (cloud command, console), audited with who
        and why. Refused (False) while the door is in lockdown: lifting a lockdown is a deliberate set_mode.
        Raises KeyError for an unknown door."""
        runner = self.runners[door_id]
        if self._engine().state.mode_of(door_id) is DoorMode.LOCKDOWN:
            log.warning("remote open of %s by %s refused: lockdown", door_id, by)
            return False
        self.bus.publish(RemoteOpenEvent(at=self.clock.now(), door_id=door_id, by=by, reason=reason))
        runner.grant()
        return True

    async def _housekeeping(self, interval: float = 60.0) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)
            dropped = self._engine().prune(self.clock.monotonic())
            if dropped:
                log.debug("pruned %d stale anti-passback positions", dropped)

    # --- internals -------------------------------------------------------------------------------------------

    def _engine(self) -> DecisionEngine:
        if self.engine is None:
            raise RuntimeError("gateway not started")
        return self.engine

    def _persist(self, event: Event) -> None:
        if not event.persist or self.events is None:
            return
        future = self.events.append(event.to_record())
        future.add_done_callback(self._stored)

    def _stored(self, future: Future[StoredEvent]) -> None:
        # Runs on the writer thread; only counts. The event log logs its own failures.
        if future.exception() is not None:
            self.stored_failures += 1

    def _feedback(self, event: Event) -> None:
        assert isinstance(event, DecisionEvent)
        reader = self.devices.readers.get(event.decision.reader_id)
        if reader is not None:
            self.spawn(reader.feedback(event.decision.granted, event.decision.reason.value))

    def _load(self) -> tuple[AccessList, dict[str, DoorMode], bool, dict[str, int]]:
        db = open_db(self.db_path, synchronous=self.config.store.synchronous)
        try:
            acl = load_access_list(db)
            saved_modes = get_state(db, "door_modes", {})
            modes = {d.id: DoorMode(saved_modes.get(d.id, d.mode)) for d in self.site.doors.values()}
            lockdown = bool(get_state(db, "lockdown", False))
            pass_uses: dict[str, int] = {}  # the pass runtime fills it from its ledger (and old state keys)
            return acl, modes, lockdown, pass_uses
        finally:
            db.close()

    def _save_acl(self, acl: AccessList) -> None:
        db = open_db(self.db_path, synchronous=self.config.store.synchronous)
        try:
            save_access_list(db, acl)
        finally:
            db.close()

    def _write_delta(self, version: int, write: Callable[[sqlite_utils.Database], None]) -> None:
        db = open_db(self.db_path, synchronous=self.config.store.synchronous)
        try:
            with transaction(db):
                write(db)
                set_version(db, version)
        finally:
            db.close()

    def _save_state(self, key: str, value: Any) -> None:
        db = open_db(self.db_path, synchronous=self.config.store.synchronous)
        try:
            put_state(db, key, value)
        finally:
            db.close()
