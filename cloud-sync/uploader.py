"""The outbox's upload side: events leave the durable SQLite event log in batches at QoS 1, and are marked
sent only when the broker acknowledges them.

Why it is built this way:

* paho keeps its outgoing queue in memory only, so it cannot be the queue: the event log is. An event is
  marked sent in `on_published(mid, ok=True)` (the broker's PUBACK for the batch holding it), never when
  `publish()` returns. A crash, a broker restart or a partition can therefore cost duplicates, never events.
* Order: within one connection, batches go out in seq order from a cursor, so seq N+k is never sent before
  seq N has been sent at least once in that connection. On a disconnect nothing in flight is marked; on the
  next connection the cursor goes back to the oldest unsent event and everything unacknowledged goes out
  again (paho may also re-send its own in-flight copies). The cloud de-duplicates by (gateway, seq), sees
  gaps in seq, and after de-duplication every door's events arrive in order.
* Flow control: at most `window` batches await their PUBACK at once; each PUBACK refills the window.
* The event loop only publishes and keeps books. Reading and encoding a batch, marking it sent and the disk
  cap run in threads: they hit SQLite. A batch is encoded by splicing the stored canonical JSON text of each
  event into the envelope, so the cloud gets the exact bytes the hash chain covers, and nothing is parsed
  and re-serialised on the way out.
* Wake-ups: the gateway's bus tells us (`notify_appended`) that an event is on its way to the log; a barrier
  (`EventLog.flush`, in a thread) waits for its commit, then the pump reads it. The door path pays one
  flag check. A slow poll catches anything appended another way.
* Disk cap (`enforce_cap`): past `outbox_max_events` rows, sent events are pruned first; only when that is
  not enough are the oldest events dropped whether sent or not, and the caller records an alarm event that
  says how many unsent events were lost and which seqs. Both go down to a low-water mark 5 % under the cap,
  so a full outbox costs one alarm per 5 % of the cap, not one per new event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cloud_sync.publisher import Publisher
from cloud_sync.topics import Topics

from edge.errors import StoreError
from edge.store.event_log import DroppedEvents, EventLog, LoggedEvent

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 512 * 1024  # per message, about: well under what brokers accept by default
REFUSED_BACKOFF = 5.0  # seconds before re-sending after the broker refused a batch
CAP_CHECK_INTERVAL = 5.0  # seconds between disk-cap checks
MARK_RETRY = 1.0  # seconds before retrying a failed mark_sent


@dataclass(frozen=True, slots=True)
class Batch:
    """One upload message: the seqs it carries (ascending) and its EventBatch JSON."""

    seqs: tuple[int, ...]
    payload: bytes


def encode_batch(site: str, gateway: str, rows: list[LoggedEvent], max_bytes: int = MAX_BATCH_BYTES) -> Batch:
    """An EventBatch (cloud_sync.messages) for the first rows that fit in about max_bytes (at least one).

    Each event's stored payload is canonical JSON (edge.store.codec), spliced in as is: valid JSON, and the
    exact text the hash chain covers. Ids and hashes are UUIDs and hex, which need no escaping.
    """
    if not rows:
        raise ValueError("a batch needs at least one event")
    head = f'{{"site":{json.dumps(site)},"gateway":{json.dumps(gateway)},"events":['
    parts: list[str] = []
    seqs: list[int] = []
    size = len(head) + 2
    for row in rows:
        part = (
            f'{{"seq":{row.seq:d},"id":"{row.id}","hash":"{row.hash}",'
            f'"prev_hash":"{row.prev_hash}","event":{row.payload}}}'
        )
        if parts and size + len(part) + 1 > max_bytes:
            break
        parts.append(part)
        seqs.append(row.seq)
        size += len(part) + 1
    return Batch(tuple(seqs), (head + ",".join(parts) + "]}").encode())


def read_batch(
    events: EventLog, topics: Topics, after: int, limit: int, max_bytes: int = MAX_BATCH_BYTES
) -> Batch | None:
    """The next batch of unsent events with seq > after, or None if there is none. Blocking: run it in a
    thread."""
    rows = events.pending(limit, after=after)
    return encode_batch(topics.site, topics.gateway, rows, max_bytes) if rows else None


# --- the disk cap ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapResult:
    pruned: int  # sent events deleted
    dropped: DroppedEvents | None  # what had to go besides, sent or not


def low_water(cap: int) -> int:
    """The row count the cap brings the log down to: 5 % under the cap."""
    return cap - max(1, cap // 20)


def enforce_cap(events: EventLog, cap: int) -> CapResult:
    """Bring the event log back under `cap` rows if it is over. Blocking: run it in a thread.

    Sent events go first (`EventLog.prune`, which stops before the first unsent one, so the chain stays
    contiguous). Only if the log is still over the cap are the oldest events dropped, sent or not
    (`EventLog.drop_oldest`); the caller reports the unsent ones in an alarm. Either way the log goes down to
    `low_water(cap)` rows. Rows are counted from the seq range (rows only leave from the oldest end).
    """
    if cap < 1:
        raise ValueError("cap must be at least 1")
    span = events.seq_range()
    if span is None or span[1] - span[0] + 1 <= cap:
        return CapResult(0, None)
    target = low_water(cap)
    pruned = events.prune(span[1] - target)
    span = events.seq_range()
    if span is None or span[1] - span[0] + 1 <= cap:
        if pruned:
            log.info("outbox over its cap of %d events: pruned %d sent events", cap, pruned)
        return CapResult(pruned, None)
    dropped = events.drop_oldest(span[1] - target)
    return CapResult(pruned, dropped)


def overflow_detail(dropped: DroppedEvents, cap: int) -> str:
    """The alarm text for unsent events lost at the cap."""
    return (
        f"dropped {dropped.unsent} unsent events seq {dropped.first_unsent}..{dropped.last_unsent} "
        f"(outbox cap {cap} events)"
    )


# --- the uploader ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class UploadStats:
    batches: int = 0  # published (including re-sends)
    events: int = 0  # published (including re-sends)
    acked: int = 0  # events acknowledged by the broker and marked sent
    refused: int = 0  # batches the broker refused (PUBACK with a failure reason)


class Uploader:
    """Moves events from the event log to the broker. Create and use it on the event loop.

    Wire `on_connection` and `on_published` to the MQTT link, call `start()`, and `stop()` before the event
    log is closed. `on_dropped` is called (on the loop) when the disk cap dropped unsent events.
    """

    def __init__(
        self,
        events: EventLog,
        publisher: Publisher,
        topics: Topics,
        *,
        batch: int = 500,
        window: int = 4,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        cap: int | None = None,
        on_dropped: Callable[[DroppedEvents], None] | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        if batch < 1 or window < 1:
            raise ValueError("batch and window must be at least 1")
        self._events = events
        self._publisher = publisher
        self._topics = topics
        self._batch = batch
        self._window_size = window
        self._max_bytes = max_batch_bytes
        self._cap = cap
        self._on_dropped = on_dropped
        self._poll_interval = poll_interval
        self.stats = UploadStats()
        self.last_upload_at: datetime | None = None  # when events were last acknowledged
        self._connected = False
        self._epoch = 0  # bumped on every connect and disconnect: a read that straddles one is discarded
        self._cursor = 0  # highest seq published in this connection
        self._window: set[int] = set()  # mids published in this connection, awaiting their PUBACK
        self._batches: dict[int, tuple[int, ...]] = {}  # mid -> seqs, across connections: late PUBACKs count
        self._acked: list[int] = []  # seqs acknowledged, waiting to be marked sent
        self._wake = asyncio.Event()
        self._mark_wake = asyncio.Event()
        self._paused_until = 0.0  # monotonic; after a refused batch
        self._refusing = False  # the last answer was a refusal: further ones are logged at debug
        self._next_cap_check = 0.0
        self._flushing = False
        self._flush_again = False
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._helpers: set[asyncio.Task[None]] = set()

    # --- life cycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._pump(), name="outbox-pump"),
            asyncio.create_task(self._marker(), name="outbox-marker"),
        ]

    async def stop(self) -> None:
        """Stop publishing, then mark what was acknowledged. Safe to call twice."""
        if self._stopping:
            return
        self._stopping = True
        pump, marker = self._tasks or (None, None)
        for task in (pump, *self._helpers):
            if task is not None:
                task.cancel()
        self._mark_wake.set()
        await asyncio.gather(*(t for t in (pump, marker, *self._helpers) if t), return_exceptions=True)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def in_flight(self) -> int:
        """Batches published in this connection and not yet acknowledged."""
        return len(self._window)

    # --- from the link (on the loop) ---------------------------------------------------------------------

    def on_connection(self, connected: bool) -> None:
        """A new connection starts from the oldest unsent event; a lost one forgets what was in flight."""
        self._connected = connected
        self._epoch += 1
        self._window.clear()
        self._cursor = 0
        if connected:
            self._wake.set()

    def on_published(self, mid: int, ok: bool) -> bool:
        """The broker answered a publish; True if it was one of our batches."""
        seqs = self._batches.pop(mid, None)
        if seqs is None:
            return False
        self._window.discard(mid)
        if ok:
            self._acked.extend(seqs)
            self._mark_wake.set()
            if self._refusing:
                self._refusing = False
                log.info("broker accepts event batches again")
        else:
            self.stats.refused += 1
            log.log(
                logging.DEBUG if self._refusing else logging.WARNING,
                "broker refused the event batch seq %d..%d; re-sending from the oldest unsent event in %.0f s",
                seqs[0],
                seqs[-1],
                REFUSED_BACKOFF,
            )
            self._refusing = True
            self._rewind(pause=REFUSED_BACKOFF)
        self._wake.set()
        return True

    def notify_appended(self) -> None:
        """An event was handed to the event log (committed a moment later): upload it once it is committed.
        Cheap enough for the door path: a flag check, at most one task per burst."""
        if self._stopping:
            return
        if self._flushing:
            self._flush_again = True
            return
        self._flushing = True
        task = asyncio.get_running_loop().create_task(self._after_commit())
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    def wake(self) -> None:
        """Look for unsent events now."""
        self._wake.set()

    # --- internals ---------------------------------------------------------------------------------------

    def _rewind(self, pause: float = 0.0) -> None:
        """Start the stream again from the oldest unsent event (what is in flight may be acked later)."""
        self._epoch += 1
        self._window.clear()
        self._cursor = 0
        if pause:
            self._paused_until = time.monotonic() + pause
            asyncio.get_running_loop().call_later(pause, self._wake.set)

    async def _after_commit(self) -> None:
        try:
            while True:
                self._flush_again = False
                await asyncio.to_thread(self._events.flush, 10.0)
                self._wake.set()
                if not self._flush_again:
                    return
        except (StoreError, TimeoutError):
            pass  # the log is closing, or very slow: the poll will find the events
        finally:
            self._flushing = False

    async def _pump(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            if self._stopping:
                # stop() cancels this task, but on Python 3.11 asyncio.wait_for swallows a cancellation that
                # races a wake-up (the event set in the same loop turn), and stop() would wait forever.
                return
            self._wake.clear()
            if self._events.closed:
                log.warning(
                    "outbox: the event log is closed; uploads stop (stop CloudSync before the gateway)"
                )
                return
            try:
                await self._check_cap()
                await self._fill()
            except (StoreError, sqlite3.Error):
                log.exception("outbox: reading the event log failed; retrying")
                await asyncio.sleep(self._poll_interval)
            except Exception:  # the pump's boundary: uploads must outlive any one failure
                log.exception("outbox: upload round failed; retrying")
                await asyncio.sleep(self._poll_interval)

    async def _fill(self) -> None:
        """Publish batches until the window is full or nothing is left."""
        while (
            self._connected
            and len(self._window) < self._window_size
            and time.monotonic() >= self._paused_until
        ):
            epoch, after = self._epoch, self._cursor
            batch = await asyncio.to_thread(
                read_batch, self._events, self._topics, after, self._batch, self._max_bytes
            )
            if epoch != self._epoch:
                continue  # connected, disconnected or rewound meanwhile: read again from the new cursor
            if batch is None:
                return
            mid = self._publisher.publish(self._topics.events, batch.payload, qos=1)
            if mid in self._batches:
                # paho's mids wrap at 65535: one still awaited from long ago would make its PUBACK ambiguous.
                # Forget both and send these events again under a fresh mid.
                log.warning("outbox: message id %d reused while still awaited; re-sending", mid)
                del self._batches[mid]
                self._rewind()
                continue
            self._batches[mid] = batch.seqs
            self._window.add(mid)
            self._cursor = batch.seqs[-1]
            self.stats.batches += 1
            self.stats.events += len(batch.seqs)

    async def _marker(self) -> None:
        """Mark acknowledged events sent, coalescing PUBACKs that arrive while a mark is running."""
        while True:
            await self._mark_wake.wait()
            self._mark_wake.clear()
            while self._acked:
                seqs, self._acked = self._acked, []
                try:
                    await asyncio.to_thread(self._events.mark_sent, seqs)
                except (StoreError, sqlite3.Error):
                    if self._events.closed:
                        log.error("outbox: event log closed; %d acknowledged events stay unsent", len(seqs))
                        return
                    log.exception("outbox: marking %d events sent failed; retrying", len(seqs))
                    self._acked[:0] = seqs
                    await asyncio.sleep(MARK_RETRY)
                    continue
                self.stats.acked += len(seqs)
                self.last_upload_at = datetime.now(UTC)
            if self._stopping:
                return

    async def _check_cap(self) -> None:
        if self._cap is None or time.monotonic() < self._next_cap_check:
            return
        self._next_cap_check = time.monotonic() + CAP_CHECK_INTERVAL
        result = await asyncio.to_thread(enforce_cap, self._events, self._cap)
        dropped = result.dropped
        if dropped is not None and dropped.unsent:
            log.error("outbox full: %s", overflow_detail(dropped, self._cap))
            if self._on_dropped is not None:
                self._on_dropped(dropped)
