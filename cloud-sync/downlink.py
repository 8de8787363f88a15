"""The gateway's side of everything the cloud sends down: snapshots, deltas and commands.

    acl/snapshot -> size -> SnapshotChunk schema -> chunk sha-256 -> SnapshotAssembler (per snapshot_id)
                    -> all chunks: total sha-256, gunzip (bounded), schema, site, references  [worker thread]
                    -> Gateway.replace_access_list (one SQLite transaction, then the swap)
    acl/delta    -> size -> Delta schema -> version check -> delta_apply.plan / resolve / write (one
                    transaction, in a thread) -> delta_apply.update (in memory, on the loop)
    cmd          -> size -> CommandEnvelope schema -> times, replay cache, door -> the gateway -> CommandReply
    _site/passes/trust, +/passes/uses -> size -> pass_sync.PassSync (trust list; use counts of the site)
    ble/keys     -> size -> ble_keys.BleKeySync (full list, sealed at rest, handed to the BLE readers)

Why this shape:

- `handle()` runs on the event loop for every message and only sorts it: anything slow (chunk checks,
  decompressing and validating 100,000 people, SQLite writes) runs in a thread or a spawned task, so the
  doors keep deciding while a snapshot is applied.
- A refusal is uniform: one warning log line (no payload, no secrets), a SyncErrorEvent in the event log, an
  ErrorReport on `errors`, and for a command also a CommandReply. Nothing the message carried is applied and
  the access list in force is untouched: a snapshot is swapped in only after it was complete, checked and
  stored in one transaction; a delta changes memory only after its transaction committed.
- Versions: the gateway publishes the version in force (retained AclState) on connect and after every
  change. A delta applies only on top of the version it names (`from_version`); one at or below the version
  in force is a re-delivery and is ignored; any other asks for a snapshot (reason "gap" when deltas were
  missed, "mismatch" when the cloud assumes an older version than ours). Deltas are applied one at a time in
  arrival order, and a small one never waits behind a snapshot being decoded: only the short
  store-and-swap steps of the two exclude each other.
- Snapshot versions: a snapshot newer than the list in force applies. One at or below it is a re-delivery
  (a retained or queued copy) and is ignored, so an old snapshot can never roll back a revocation, except
  right after this gateway itself asked for a resync (a resync command, or a "mismatch"): for FORCED_WINDOW
  seconds after such a request the next complete snapshot applies whatever its version, because the cloud is
  the authority and its answer may legitimately carry the same or a lower version (e.g. after a restore).
- Requests for snapshots are rate-limited (one per REQUEST_INTERVAL unless asked for by a command), so a
  stream of deltas arriving during a gap does not flood the cloud with requests.
- Server time: the `server_time` of a checked snapshot chunk, delta or trust list goes to
  PassRuntime.observe_server_time, which believes it only forward and within the pass clock skew of our own
  clock (edge/passes/runtime.py): it keeps a gateway without NTP trusting its clock for visitor passes.
- Big snapshots churn millions of objects; the decode runs with Python's cyclic GC paused (nothing in it forms
  cycles), which halves its time and keeps a full-heap collection from stalling the loop mid-decode. The old
  list is released in a thread for the same reason.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import gc
import importlib.metadata
import json
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import sqlite_utils
from cloud_sync import delta_apply
from cloud_sync.ble_keys import BleKeySync
from cloud_sync.commands import ReplayCache, check_time, load_replay_cache, save_replay_cache
from cloud_sync.link import Incoming
from cloud_sync.messages import (
    AclState,
    CommandBase,
    CommandEnvelope,
    CommandReply,
    Delta,
    EnrolFace,
    ErrorReport,
    Message,
    OpenDoor,
    Ping,
    Resync,
    SetMode,
    SnapshotChunk,
    SnapshotRequest,
    iso,
)
from cloud_sync.pass_sync import PassSync
from cloud_sync.publisher import Publisher
from cloud_sync.snapshot_assembler import (
    ChunkRefusedError,
    Complete,
    Decoded,
    SnapshotAssembler,
    decode_access_list,
    drain,
    snapshot_json,
)
from cloud_sync.snapshot_codec import SnapshotError, chunk_bytes_of
from cloud_sync.topics import Topics, parse
from pydantic import ValidationError

from edge.config import MqttSection
from edge.errors import AccessListError, MenweiError, StoreError
from edge.events import AccessListEvent, CommandEvent, SyncErrorEvent
from edge.gateway import Gateway
from edge.model import AccessList

log = logging.getLogger(__name__)

ErrorCode = Literal["not_json", "schema", "wrong_site", "bad_sha", "too_large", "unknown_command", "rejected"]
ReplyError = Literal["expired", "replayed", "invalid", "unknown_door", "failed"]
RequestReason = Literal["startup", "gap", "mismatch", "corrupt", "command", "incomplete", "restored"]

# "restored": the gateway's database came back from a backup (or empty): the cloud's list is the truth.
FORCING_REASONS: frozenset[str] = frozenset({"command", "mismatch", "restored"})
FORCED_WINDOW = 300.0  # seconds after a forcing request during which a snapshot applies whatever its version
REQUEST_INTERVAL = 5.0  # seconds between two snapshot requests (a command's request is never held back)
MAX_PENDING_DELTAS = 1000  # deltas queued behind the one being applied; more are refused
INLINE_PARSE_BYTES = 64 * 1024  # smaller deltas and commands are parsed on the loop (a thread hop costs more)
DETAIL_CHARS = 500

try:
    SOFTWARE = importlib.metadata.version("menwei")
except importlib.metadata.PackageNotFoundError:  # running from a source tree that was never installed
    SOFTWARE = "unknown"


@dataclass(frozen=True, slots=True)
class SnapshotTiming:
    """Where the time of the last applied snapshot went (seconds), for logs and the benchmark."""

    version: int
    json_bytes: int
    decode: float  # total sha, gunzip, schema validation, domain objects, references (worker thread)
    store: float  # one SQLite transaction replacing the stored list, then the swap
    release: float  # dropping the previous list (worker thread)


class Downlink:
    """Handles every message on `topics.down()`. Construct and call on the gateway's event loop after
    `gateway.start()`."""

    def __init__(self, gateway: Gateway, topics: Topics, mqtt: MqttSection, publisher: Publisher) -> None:
        self.gateway = gateway
        self.topics = topics
        self.mqtt = mqtt
        self.publisher = publisher
        self.assembler = SnapshotAssembler()
        self.last_snapshot: SnapshotTiming | None = None
        self.refused = 0  # messages refused since start, for tests and telemetry
        self._delta_lock = asyncio.Lock()  # deltas one at a time, in arrival order (asyncio.Lock is FIFO)
        self._apply_lock = asyncio.Lock()  # store-and-swap of a snapshot or a delta
        self._decode_lock = asyncio.Lock()  # one big snapshot decoded at a time (memory)
        self._command_lock = asyncio.Lock()
        self._replay: ReplayCache | None = None
        self._pending_deltas = 0
        self._queued_chunk_bytes = 0
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._last_request: float | None = None
        self._forced_until = float("-inf")
        self._applied_at: datetime = gateway.clock.now()
        self.passes = PassSync(
            gateway,
            topics,
            publish=self._publish,
            refuse=self._refuse,
            refuse_invalid=self._refuse_invalid,
        )
        self.ble_keys = BleKeySync(gateway, topics, refuse=self._refuse, refuse_invalid=self._refuse_invalid)

    # --- the interface CloudSync calls ---------------------------------------------------------------------

    def handle(self, msg: Incoming) -> None:
        """Sort one down message; never raises, returns at once."""
        try:
            self._route(msg)
        except Exception:  # a bug here must not break the link's callback chain
            log.exception("down message on %s could not be handled", msg.topic)

    def on_connection(self, connected: bool) -> None:
        if not connected:
            return
        self.publish_acl_state()
        self.passes.announce()
        version = self._acl().version
        if self.gateway.snapshot_wanted is not None:  # asked on every connect until a snapshot applied
            self.request_snapshot("restored", self.gateway.snapshot_wanted)
        elif version == 0:
            self.request_snapshot("startup", "no access list yet")

    def close(self) -> None:
        """The link is going away: stop publishing on the gateway's behalf."""
        self.passes.close()

    # --- outgoing ----------------------------------------------------------------------------------------

    def publish_acl_state(self) -> None:
        state = AclState(version=self._acl().version, applied_at=self._applied_at)
        self._publish(self.topics.acl_state, state, retain=True)

    def request_snapshot(self, reason: RequestReason, detail: str = "") -> bool:
        """Ask the cloud for a full snapshot; False if held back by the rate limit."""
        now = time.monotonic()
        if reason in FORCING_REASONS:
            self._forced_until = now + FORCED_WINDOW
        explicit = reason in ("command", "startup", "restored")
        if not explicit and self._last_request is not None and now - self._last_request < REQUEST_INTERVAL:
            log.debug(
                "snapshot request (%s) held back: one was sent %.1f s ago", reason, now - self._last_request
            )
            return False
        self._last_request = now
        have = self._acl().version
        log.info("asking the cloud for a snapshot (%s, have version %d)", reason, have)
        self._publish(
            self.topics.acl_request,
            SnapshotRequest(reason=reason, have_version=have, detail=detail[:DETAIL_CHARS]),
        )
        return True

    # --- routing -----------------------------------------------------------------------------------------

    def _route(self, msg: Incoming) -> None:
        topic = msg.topic
        if topic == self.topics.command:
            if self._too_large(msg):
                self._reply(msg, CommandReply(id="", ok=False, error="invalid", detail="message too large"))
                return
            self.gateway.spawn(self._command(msg))
        elif topic == self.topics.delta:
            if self._too_large(msg):
                return
            if self._pending_deltas >= MAX_PENDING_DELTAS:
                self._refuse(msg.topic, "rejected", f"more than {MAX_PENDING_DELTAS} deltas waiting")
                return
            self._pending_deltas += 1
            self.gateway.spawn(self._delta(msg))
        elif topic == self.topics.snapshot:
            if self._too_large(msg):
                return
            size = len(msg.payload)
            if self._queued_chunk_bytes + self.assembler.held_bytes + size > self.assembler.max_bytes:
                self._refuse(topic, "too_large", "snapshot chunks arrive faster than they can be checked")
                return
            self._queued_chunk_bytes += size
            self.gateway.spawn(self._chunk(msg))
        elif topic == self.topics.ble_keys:
            if not self._too_large(msg):
                self.ble_keys.handle(msg)
        elif topic == self.topics.pass_trust:
            if not self._too_large(msg):
                self.passes.handle_trust(msg)
        else:
            where = parse(topic, self.topics.prefix)
            if where is not None and where[0] == self.topics.site and where[2] == "passes/uses":
                if not self._too_large(msg):
                    self.passes.handle_uses(msg, where[1])
                return
            ours = where is not None and where[:2] == (self.topics.site, self.topics.gateway)
            self._refuse(topic, "rejected" if ours else "wrong_site", "not a down topic of this gateway")

    def _too_large(self, msg: Incoming) -> bool:
        limit = self.mqtt.max_payload_bytes
        if len(msg.payload) <= limit:
            return False
        self._refuse(msg.topic, "too_large", f"{len(msg.payload)} bytes > {limit}")
        return True

    # --- snapshots ---------------------------------------------------------------------------------------

    async def _chunk(self, msg: Incoming) -> None:
        size = len(msg.payload)
        try:
            try:
                chunk, data = await asyncio.to_thread(_check_chunk, msg.payload)
            finally:
                self._queued_chunk_bytes -= size
            if chunk.server_time is not None:
                self.gateway.passes.observe_server_time(chunk.server_time)
            if not self._snapshot_wanted(chunk.version):
                log.debug(
                    "snapshot %s (version %d) is not newer: chunk ignored", chunk.snapshot_id, chunk.version
                )
                return
            try:
                complete, dropped = self.assembler.add(chunk, data, time.monotonic())
            finally:
                self._arm_expiry()
            for sid in dropped:
                log.warning("incomplete snapshot %s dropped: a newer one is arriving", sid)
            if complete is not None:
                await self._apply_snapshot(msg.topic, complete)
        except ValidationError as err:
            self._refuse_invalid(msg.topic, err)
        except ChunkRefusedError as err:
            self._refuse(msg.topic, err.error, err.detail)
        except SnapshotError as err:  # chunk_bytes_of: base64 or sha-256
            self._refuse(msg.topic, "bad_sha", str(err))
        except Exception:  # the task boundary: log, keep the gateway running
            log.exception("snapshot chunk could not be processed")

    async def _apply_snapshot(self, topic: str, complete: Complete) -> None:
        async with self._decode_lock:
            if not self._snapshot_wanted(complete.version):
                log.info(
                    "snapshot %s (version %d) is not newer: ignored", complete.snapshot_id, complete.version
                )
                return
            log.info("snapshot %s (version %d) complete: decoding", complete.snapshot_id, complete.version)
            # Big objects (the decoded list if refused, the previous list if applied) are parked here and freed
            # in a thread: freeing a million objects on the loop would stall the doors as long as a GC pass.
            held: list[object] = []
            t0 = time.perf_counter()
            with _gc_paused():
                try:
                    applied = await self._decode_and_swap(topic, complete, held)
                finally:
                    t2 = time.perf_counter()
                    await asyncio.to_thread(_release, held)
                if applied is not None:
                    # The new list lives until the next snapshot: keep the collector from walking its million
                    # objects on every full collection (see _gc_paused).
                    gc.freeze()
            if applied is None:
                return
            t3 = time.perf_counter()
            decode, size = applied
            self.last_snapshot = SnapshotTiming(complete.version, size, decode, t2 - t0 - decode, t3 - t2)
            log.info(
                "snapshot version %d applied: decode %.2f s, store %.2f s, release %.2f s",
                complete.version,
                decode,
                t2 - t0 - decode,
                t3 - t2,
            )

    async def _decode_and_swap(
        self, topic: str, complete: Complete, held: list[object]
    ) -> tuple[float, int] | None:
        """Decode, check and swap in one snapshot; (decode seconds, JSON bytes) if applied, None if not."""
        t0 = time.perf_counter()
        try:
            decoded = await asyncio.to_thread(_decode, complete)
        except ChunkRefusedError as err:
            self._refuse(topic, err.error, err.detail)
            self.request_snapshot("corrupt", err.detail)
            return None
        except ValidationError as err:
            self._refuse_invalid(topic, err)
            return None
        except AccessListError as err:
            self._refuse(topic, "rejected", str(err))
            return None
        held.append(decoded)
        decode = time.perf_counter() - t0
        if decoded.site != self.gateway.site.id:
            self._refuse(topic, "wrong_site", f"snapshot for site {decoded.site[:64]!r}")
            return None
        if decoded.acl.version != complete.version:
            self._refuse(topic, "rejected", "document version differs from the chunks' version")
            return None
        async with self._apply_lock:
            if not self._snapshot_wanted(complete.version):  # a delta or snapshot overtook it
                log.info("snapshot version %d overtaken while decoding: ignored", complete.version)
                return None
            previous = self._acl()
            held.append(previous)
            try:
                await self.gateway.replace_access_list(decoded.acl)
            except (StoreError, sqlite3.Error) as err:  # the disk, not the message: no refusal, no swap
                log.error(
                    "snapshot version %d not stored, the list in force stays: %s", complete.version, err
                )
                return None
            self._forced_until = float("-inf")
            self.gateway.snapshot_wanted = None
            self._after_change(previous.version, "snapshot")
        for sid in self.assembler.drop_superseded(complete.version):
            log.info("incomplete snapshot %s dropped: superseded by version %d", sid, complete.version)
        return decode, decoded.json_bytes

    def _snapshot_wanted(self, version: int) -> bool:
        return version > self._acl().version or time.monotonic() < self._forced_until

    def _arm_expiry(self) -> None:
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        deadline = self.assembler.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic()) + 0.01
            self._expiry_timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._expiry_timer = None
        stale = self.assembler.expire(time.monotonic())
        for sid in stale:
            log.warning("snapshot %s abandoned incomplete: no chunk for %.0f s", sid, self.assembler.timeout)
        if stale:
            self.request_snapshot("incomplete", f"snapshot {stale[0]} stopped arriving")
        self._arm_expiry()

    # --- deltas ------------------------------------------------------------------------------------------

    async def _delta(self, msg: Incoming) -> None:
        try:
            async with self._delta_lock:  # nothing may be awaited before this line: it keeps arrival order
                await self._apply_delta(msg)
        except Exception:  # the task boundary
            log.exception("delta could not be processed")
        finally:
            self._pending_deltas -= 1

    async def _apply_delta(self, msg: Incoming) -> None:
        try:
            if len(msg.payload) <= INLINE_PARSE_BYTES:
                delta = Delta.model_validate_json(msg.payload)
            else:
                delta = await asyncio.to_thread(Delta.model_validate_json, msg.payload)
        except ValidationError as err:
            self._refuse_invalid(msg.topic, err)
            return
        if delta.to_version <= delta.from_version:
            self._refuse(msg.topic, "schema", "to_version must be greater than from_version")
            return
        if delta.server_time is not None:
            self.gateway.passes.observe_server_time(delta.server_time)
        if not self._delta_applies(delta):
            return
        try:
            steps = delta_apply.plan(delta, self.gateway.clock.now())
        except AccessListError as err:
            self._refuse(msg.topic, "rejected", str(err))
            return
        async with self._apply_lock:
            if not self._delta_applies(delta):  # a snapshot came into force while we waited
                return
            acl = self._acl()
            actions: list[delta_apply.Action] = []

            def write(db: sqlite_utils.Database) -> None:
                actions.extend(delta_apply.resolve(acl, steps))
                delta_apply.write(db, actions)

            def update(target: AccessList) -> None:
                delta_apply.update(target, actions)
                self.gateway.passes.revoke(delta_apply.unlisted_revocations(actions))

            try:
                await self.gateway.apply_delta(delta.to_version, write, update)
            except AccessListError as err:
                self._refuse(msg.topic, "rejected", str(err))
                self.request_snapshot("mismatch", f"delta {delta.from_version}->{delta.to_version}: {err}")
                return
            except (StoreError, sqlite3.Error) as err:  # the disk, not the message: the next delta will ask
                log.error("delta %d->%d not stored: %s", delta.from_version, delta.to_version, err)
                return
            self._after_change(delta.from_version, "delta")

    def _delta_applies(self, delta: Delta) -> bool:
        current = self._acl().version
        if delta.to_version <= current:
            log.debug(
                "delta %d->%d already in force (have %d): ignored",
                delta.from_version,
                delta.to_version,
                current,
            )
            return False
        if delta.from_version != current:
            reason: RequestReason = "gap" if delta.from_version > current else "mismatch"
            log.info(
                "delta %d->%d does not apply to version %d", delta.from_version, delta.to_version, current
            )
            self.request_snapshot(reason, f"delta {delta.from_version}->{delta.to_version} on {current}")
            return False
        return True

    def _after_change(self, previous: int, source: str) -> None:
        version = self._acl().version
        self._applied_at = self.gateway.clock.now()
        self.gateway.bus.publish(
            AccessListEvent(at=self._applied_at, version=version, previous=previous, source=source)
        )
        self.publish_acl_state()

    # --- commands ----------------------------------------------------------------------------------------

    async def _command(self, msg: Incoming) -> None:
        try:
            await self._run_command(msg)
        except Exception:  # the task boundary
            log.exception("command could not be processed")
            with contextlib.suppress(Exception):
                self._reply(msg, CommandReply(id=_command_id(msg.payload), ok=False, error="failed"))

    async def _run_command(self, msg: Incoming) -> None:
        try:
            if len(msg.payload) <= INLINE_PARSE_BYTES:
                envelope = CommandEnvelope.model_validate_json(msg.payload)
            else:
                envelope = await asyncio.to_thread(CommandEnvelope.model_validate_json, msg.payload)
        except ValidationError as err:
            code = self._refuse_invalid(msg.topic, err)
            cid = _command_id(msg.payload)
            detail = "unknown command" if code == "unknown_command" else "malformed command"
            self._reply(msg, CommandReply(id=cid, ok=False, error="invalid", detail=detail))
            return  # the SyncErrorEvent is its record
        cmd = envelope.cmd
        async with self._command_lock:
            now = self.gateway.clock.now()
            timing = check_time(cmd, now, self.mqtt.clock_skew_seconds)
            if timing is not None:
                self._command_refused(msg, cmd, timing[0], timing[1])
                return
            replay = await self._replay_cache()
            if cmd.id in replay:
                self._command_refused(msg, cmd, "replayed", "command id already used")
                return
            door = getattr(cmd, "door", None)
            if door is not None and door not in self.gateway.site.doors:
                self._command_refused(msg, cmd, "unknown_door", f"no door {door[:64]!r} at this gateway")
                return
            forget_after = cmd.expires_at + _seconds(self.mqtt.clock_skew_seconds)
            if not replay.add(cmd.id, forget_after, now):
                self._command_refused(msg, cmd, "failed", "too many live commands to remember")
                return
            replay.prune(now)
            try:
                await asyncio.to_thread(
                    save_replay_cache,
                    self.gateway.db_path,
                    self.gateway.config.store.synchronous,
                    replay.to_state(),
                )
            except (StoreError, sqlite3.Error) as err:
                replay.discard(cmd.id)
                self._command_refused(msg, cmd, "failed", f"cannot record the command: {err}")
                return
        self._execute(msg, cmd)

    def _execute(self, msg: Incoming, cmd: CommandBase) -> None:
        result: dict[str, object] = {}
        match cmd:
            case OpenDoor():
                if not self.gateway.open_door(cmd.door, by=cmd.operator, reason=cmd.reason):
                    self._command_refused(msg, cmd, "failed", "door is in lockdown")
                    return
            case SetMode():
                self.gateway.set_mode(cmd.mode, cmd.door, by=cmd.operator, reason=cmd.reason)
            case Resync():
                self.request_snapshot("command", f"resync by {cmd.operator}")
            case Ping():
                result = {
                    "time": iso(self.gateway.clock.now()),
                    "acl_version": self._acl().version,
                    "software": SOFTWARE,
                }
            case EnrolFace():  # minutes of CPU at worst: answered when done, off the loop (edge.face.service)
                self.gateway.spawn(self._enrol_face(msg, cmd))
                return
        log.info("command %s %r by %r carried out", _name(cmd), cmd.id, cmd.operator)
        self._reply(msg, CommandReply(id=cmd.id, ok=True, result=result))
        self._command_event(
            cmd.id, _name(cmd), cmd.operator, True, None, cmd.reason, getattr(cmd, "door", None)
        )

    async def _enrol_face(self, msg: Incoming, cmd: EnrolFace) -> None:
        service = self.gateway.face_enrolment
        if service is None:
            self._command_refused(msg, cmd, "failed", "this gateway has no [face] section")
            return
        try:
            if cmd.photo_b64 is not None:
                photo = base64.b64decode(cmd.photo_b64, validate=True)
                done = await service.enrol_photo(cmd.person, cmd.face_id, photo)
            else:
                assert cmd.embedding is not None
                assert cmd.pack is not None
                done = await service.enrol_embedding(cmd.person, cmd.face_id, cmd.embedding, cmd.pack)
        except binascii.Error:
            self._command_refused(msg, cmd, "invalid", "photo_b64 is not base64")
            return
        except MenweiError as err:  # FaceError (reason in the text) or a missing face-key credential
            self._command_refused(msg, cmd, "failed", str(err)[:500])
            return
        log.info(
            "command enrol_face %r by %r: %s enrolled as %s",
            cmd.id,
            cmd.operator,
            done.person_id,
            done.face_id,
        )
        self._reply(
            msg, CommandReply(id=cmd.id, ok=True, result={"person": done.person_id, "face_id": done.face_id})
        )
        self._command_event(cmd.id, _name(cmd), cmd.operator, True, None, cmd.reason, None)

    def _command_refused(self, msg: Incoming, cmd: CommandBase, error: ReplyError, detail: str) -> None:
        log.warning("command %s %r by %r refused: %s (%s)", _name(cmd), cmd.id, cmd.operator, error, detail)
        self._reply(msg, CommandReply(id=cmd.id, ok=False, error=error, detail=detail))
        self._command_event(
            cmd.id, _name(cmd), cmd.operator, False, error, cmd.reason, getattr(cmd, "door", None), detail
        )

    def _command_event(
        self,
        command_id: str,
        command: str,
        by: str,
        ok: bool,
        error: str | None,
        reason: str = "",
        door_id: str | None = None,
        detail: str = "",
    ) -> None:
        self.gateway.bus.publish(
            CommandEvent(
                at=self.gateway.clock.now(),
                command_id=command_id,
                command=command,
                by=by,
                ok=ok,
                error=error,
                reason=reason,
                door_id=door_id,
                detail=detail,
            )
        )

    async def _replay_cache(self) -> ReplayCache:
        if self._replay is None:
            cfg = self.gateway.config
            self._replay = await asyncio.to_thread(
                load_replay_cache, self.gateway.db_path, cfg.store.synchronous
            )
            self._replay.prune(self.gateway.clock.now())
        return self._replay

    def _reply(self, msg: Incoming, reply: CommandReply) -> None:
        topic = msg.response_topic if _valid_topic(msg.response_topic) else self.topics.command_reply
        assert topic is not None
        self._publish(topic, reply, correlation_data=msg.correlation_data)

    # --- refusals and helpers ----------------------------------------------------------------------------

    def _refuse_invalid(self, topic: str, err: ValidationError) -> ErrorCode:
        code = _classify(err)
        self._refuse(topic, code, _describe(err))
        return code

    def _refuse(self, topic: str, error: ErrorCode, detail: str) -> None:
        topic, detail = _printable(topic[:256]), _printable(detail[:DETAIL_CHARS])
        self.refused += 1
        log.warning("refused a message on %s: %s: %s", topic, error, detail)
        now = self.gateway.clock.now()
        self.gateway.bus.publish(SyncErrorEvent(at=now, topic=topic, error=error, detail=detail))
        self._publish(self.topics.errors, ErrorReport(at=now, topic=topic, error=error, detail=detail))

    def _publish(
        self, topic: str, message: Message, *, retain: bool = False, correlation_data: bytes | None = None
    ) -> None:
        try:
            self.publisher.publish(
                topic,
                message.model_dump_json(by_alias=True).encode(),
                qos=1,
                retain=retain,
                correlation_data=correlation_data,
            )
        except (ValueError, RuntimeError, OSError) as err:  # paho refuses, e.g., a bad topic or a full queue
            log.warning("could not publish to %s: %s", topic, err)

    def _acl(self) -> AccessList:
        engine = self.gateway.engine
        if engine is None:
            raise RuntimeError("gateway not started")
        return engine.acl


# --- worker-thread functions and small helpers ---------------------------------------------------------------


def _check_chunk(payload: bytes) -> tuple[SnapshotChunk, bytes]:
    chunk = SnapshotChunk.model_validate_json(payload)
    return chunk, chunk_bytes_of(chunk)


def _release(held: list[object]) -> None:
    """Free what `held` parks (worker thread). An access list nobody else holds any more is emptied piecemeal
    (snapshot_assembler.drain), so freeing it does not hold the GIL in one long C call."""
    while held:
        item = held.pop()
        acl = item.acl if isinstance(item, Decoded) else item if isinstance(item, AccessList) else None
        del item
        # 2 = the local name and getrefcount's argument: no decision engine, delta or caller holds it.
        if acl is not None and sys.getrefcount(acl) == 2:
            drain(acl)


def _decode(complete: Complete) -> Decoded:
    raw = snapshot_json(complete.parts, complete.total_sha256)
    complete.parts.clear()  # the compressed chunks are no longer needed
    return decode_access_list(raw)


_gc_guard = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = True


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC (process-wide) while a snapshot is built and swapped in.

    A snapshot allocates millions of objects without cycles; with the collector running, every collection in
    between walks all of them while holding the GIL, which doubled the decode time and stalled the event loop
    for up to 0.8 s. After the swap, `gc.freeze()` moves the survivors (the new list) out of the collector's
    sight, so re-enabling it does not start with one huge collection either. The price: objects alive at
    that moment that later become garbage in a reference cycle are not reclaimed (they are few, and the list
    itself is freed by reference counting when the next snapshot replaces it). Nested and thread-safe; the
    GC runs again when the last pause ends, if it was enabled before the first."""
    global _gc_pauses, _gc_was_enabled
    with _gc_guard:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_guard:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def _classify(err: ValidationError) -> ErrorCode:
    errors = err.errors(include_url=False, include_input=False, include_context=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return "not_json"
    if any(e["type"] == "union_tag_invalid" and tuple(e["loc"]) == ("cmd",) for e in errors):
        return "unknown_command"
    return "schema"


def _describe(err: ValidationError, limit: int = 3) -> str:
    """Where and what, without the offending values (they may be personal data or garbage)."""
    errors = err.errors(include_url=False, include_input=False, include_context=False)
    parts = []
    for e in errors[:limit]:
        loc = ".".join(str(x)[:40] for x in e["loc"]) or "(document)"
        what = (
            "unknown kind" if e["type"] == "union_tag_invalid" else e["msg"][:120]
        )  # its msg quotes the input
        parts.append(f"{loc}: {what}")
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)


def _command_id(payload: bytes) -> str:
    """The id of a command that failed validation, if one can be read cheaply, for the reply."""
    if len(payload) > INLINE_PARSE_BYTES:
        return ""
    try:
        cid = json.loads(payload)["cmd"]["id"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return ""
    return cid if isinstance(cid, str) and 0 < len(cid) <= 128 else ""


def _printable(text: str) -> str:
    """Text from the network made safe for a log line and an event: control characters become '?'."""
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def _name(cmd: CommandBase) -> str:
    return str(getattr(cmd, "command", type(cmd).__name__))


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _valid_topic(topic: str | None) -> bool:
    return bool(topic) and topic is not None and not any(c in topic for c in "+#\0") and len(topic) <= 1024
