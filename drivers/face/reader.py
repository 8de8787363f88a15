"""The face reader: a Reader (drivers.reader) whose credential reads come from the face worker process.

The gateway sees an ordinary reader: a recognised face becomes CredentialRead(kind=FACE, value=<face id>), the
value of the person's FACE credential, and the decision engine decides it like a card (person status,
validity, schedules, anti-passback, door modes). Every face door also has a card, PIN or BLE reader of its own
in the config: a resident whose face is not recognised, or a door whose worker is down, still opens.

Supervision: the worker runs in a spawned process (drivers.face.worker). A pump thread reads its pipe and
hands messages to the event loop with call_soon_threadsafe, so a slow model never blocks the loop. If the
process dies, reports Failed, or sends nothing for `stall_seconds` (a hung model), the reader goes offline
and starts a new one after a capped, doubling backoff; after `max_fast_failures` failures in a row that each
lasted less than a minute it gives up and stays offline (a broken pack or camera does not respawn forever).

Unknown-face and presentation-attack outcomes are written to the SnapshotStore (if one is given) and passed to
`on_face_event` (the gateway can log or alarm on them); their snapshots never leave this box from here.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from drivers.face.loop import LoopStats, Outcome, OutcomeKind
from drivers.face.snapshots import SnapshotStore
from drivers.face.worker import Ended, Failed, Heartbeat, Ready, WorkerSettings, worker_main
from drivers.reader import CredentialRead, Reader, ReaderCondition
from edge.model import CredentialKind

log = logging.getLogger(__name__)

FaceEventCallback = Callable[[str, Outcome, str | None], None]  # reader id, outcome, snapshot file name


class FaceCameraReader(Reader):
    def __init__(
        self,
        reader_id: str,
        settings: WorkerSettings,
        *,
        snapshots: SnapshotStore | None = None,
        on_face_event: FaceEventCallback | None = None,
        stall_seconds: float = 15.0,
        backoff: tuple[float, float] = (1.0, 60.0),
        max_fast_failures: int = 5,
    ) -> None:
        super().__init__(reader_id)
        self.settings = settings
        self.snapshots = snapshots
        self.on_face_event = on_face_event
        self.stall_seconds = stall_seconds
        self.backoff = backoff
        self.max_fast_failures = max_fast_failures
        self.pack: str | None = None
        self.ended = asyncio.Event()  # set when the worker stopped for good (source ended, gave up, stopped)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = threading.Event()
        self._process: Any = None
        self._conn: Connection | None = None
        self._reported_offline = False
        # (totals of the workers that ended, the running worker's latest heartbeat): one tuple, replaced
        # whole, so the metrics thread never sees a worker counted twice or not at all.
        self._stats: tuple[LoopStats, LoopStats | None] = (LoopStats(), None)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._supervise(), name=f"face-reader-{self.id}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        self.online = False

    async def feedback(self, granted: bool, reason: str) -> None:
        log.debug("face reader %s: %s (%s)", self.id, "granted" if granted else "denied", reason)

    def loop_stats(self) -> LoopStats:
        """Frame counts and stage timings of this reader's workers so far (from their heartbeats); read by
        the metrics endpoint from its own thread."""
        done, live = self._stats
        return done if live is None else done.plus(live)

    def reload(self) -> None:
        """Templates changed (enrolment, deletion): the worker rebuilds its gallery."""
        conn = self._conn
        if conn is not None:
            try:
                conn.send("reload")
            except OSError:
                log.debug("face worker of %s not running; it loads the templates when it starts", self.id)

    # --- supervision -------------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = self.backoff[0]
        fast_failures = 0
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                outcome = await asyncio.to_thread(self._run_once)
                if outcome == "done" or self._stopping.is_set():
                    return
                self._set_online(False, outcome)
                fast_failures = fast_failures + 1 if time.monotonic() - started < 60 else 1
                if fast_failures >= self.max_fast_failures:
                    log.error("face reader %s: gave up after %d failures in a row", self.id, fast_failures)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])
        finally:
            self.ended.set()

    def _run_once(self) -> str:
        """Start a worker and pump its messages until it ends. Returns "done" or why it failed. Thread."""
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(
            target=worker_main, args=(child, self.settings), name=f"menwei-face-{self.id}", daemon=True
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        try:
            return self._pump(process, parent)
        finally:
            self._conn = None
            done, live = self._stats
            if live is not None:
                self._stats = (done.plus(live), None)
            if process.is_alive():
                process.join(3.0)
            if process.is_alive():
                process.kill()
                process.join(3.0)
            parent.close()

    def _pump(self, process: Any, conn: Connection) -> str:
        last_message = time.monotonic()
        stop_sent = False
        while True:
            if self._stopping.is_set() and not stop_sent:
                try:
                    conn.send("stop")
                except OSError:
                    return "done"
                stop_sent = True
            if conn.poll(0.2):
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    return "done" if stop_sent else f"worker exited (code {process.exitcode})"
                last_message = time.monotonic()
                if isinstance(message, Ended):
                    log.info("face reader %s: source ended after %d frames", self.id, message.frames)
                    return "done"
                if isinstance(message, Failed):
                    return message.reason
                self._deliver(message)
            elif not process.is_alive():
                return "done" if stop_sent else f"worker exited (code {process.exitcode})"
            elif time.monotonic() - last_message > self.stall_seconds:
                process.kill()
                return f"worker stalled for {self.stall_seconds:.0f} s and was killed"

    def _deliver(self, message: object) -> None:
        loop = self._loop
        assert loop is not None
        if isinstance(message, Ready):
            self.pack = message.pack
            log.warning("face reader %s: %s, %d templates", self.id, message.description, message.templates)
            loop.call_soon_threadsafe(self._set_online, True, "")
        elif isinstance(message, Heartbeat):
            self._stats = (self._stats[0], message.stats)
        elif isinstance(message, Outcome):
            if message.kind is OutcomeKind.RECOGNISED:
                assert message.face_id is not None
                read = CredentialRead(self.id, CredentialKind.FACE, message.face_id)
                loop.call_soon_threadsafe(self._on_credential, read)
                return
            saved: str | None = None
            if self.snapshots is not None and message.snapshot:
                kind = "unknown" if message.kind is OutcomeKind.UNKNOWN else "spoof"
                saved = self.snapshots.save(f"{kind}-{self.id}", message.snapshot).name
            log.info("face reader %s: %s (%s)", self.id, message.kind, message.reason)
            if self.on_face_event is not None:
                loop.call_soon_threadsafe(self.on_face_event, self.id, message, saved)

    def _set_online(self, online: bool, why: str) -> None:
        """On the loop. The first failure and the recovery are reported as reader conditions (alarms)."""
        if online and not self.online:
            log.info("face reader %s online", self.id)
            if self._reported_offline:
                self._reported_offline = False
                self._on_condition(self.id, ReaderCondition.OFFLINE, False, "face worker recovered")
        elif not online and not self._reported_offline:
            self._reported_offline = True
            self._on_condition(self.id, ReaderCondition.OFFLINE, True, why)
        elif not online:
            log.debug("face reader %s still offline: %s", self.id, why)
        self.online = online
