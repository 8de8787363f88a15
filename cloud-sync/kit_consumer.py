"""`EventConsumer`: a backend's exactly-once consumption of the events every gateway of a site uploads.

Its own persistent MQTT session (events queue at the broker while it is away), optionally in a shared
subscription group; each event reaches the handler once through a `DedupeStore`, and a message is
acknowledged only after the handler's transaction committed."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

import paho.mqtt.client as mqtt
from cloud_sync.dedupe import BatchResult, DedupeStore, EventHandler
from cloud_sync.kit_session import WAIT, Connection, KitSession
from cloud_sync.messages import (
    EventBatch,
)
from cloud_sync.topics import PREFIX, check_segment, parse, site_wildcard
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

if TYPE_CHECKING:
    from cloud_sync.kit import CloudKit

log = logging.getLogger(__name__)

# --- event consumption ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Delivery:
    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    batches: int  # messages acknowledged (processed, or rejected as undecodable)
    new: int  # events handed to the handler and committed
    duplicates: int  # events already seen (redelivered, re-sent, or handled by another consumer)
    rejected: int  # messages kept in the store's rejected_messages
    failures: int  # attempts that raised (handler or store); the batch was retried
    last_error: str | None


class EventConsumer:
    """Consumes the events of every gateway of a site, each event handled once.

    `group`: join the shared subscription `$share/{group}/...`; the broker gives each message to one member.
    Members may be threads or processes; give them one DedupeStore file so that a message delivered to two
    of them (redelivery, a gateway's re-send) is still handled once.

    The session is persistent (clean_start False, `session_expiry`): events published while the consumer is
    away wait at the broker, so the client id must be stable per consumer and unique within the group. A
    message is acknowledged only after its batch committed; a batch whose handler raises is retried (with
    capped backoff) and stays unacknowledged meanwhile, so stopping the consumer then leaves it at the broker
    for the next start. Handlers run on the consumer's worker thread, one batch at a time.
    """

    def __init__(
        self,
        source: CloudKit | Connection,
        site: str,
        handler: EventHandler,
        *,
        dedupe: DedupeStore,
        group: str | None = None,
        client_id: str | None = None,
        session_expiry: int = 7 * 24 * 3600,
        prefix: str = PREFIX,
        receive_maximum: int = 50,
        retry_delay: tuple[float, float] = (0.2, 10.0),
    ) -> None:
        if isinstance(source, Connection):
            conn = source
        else:
            conn = source.connection
            client_id = client_id or f"{source.client_id}-events"
        if client_id is None:
            raise ValueError("a consumer needs a stable client_id (its persistent session is keyed by it)")
        self.site = check_segment(site, "site id")
        self.prefix = prefix
        self.handler = handler
        self.dedupe = dedupe
        topic = site_wildcard(self.site, "events", prefix)
        if group is not None:
            topic = f"$share/{check_segment(group, 'group')}/{topic}"
        self.topic = topic
        self._retry_delay = retry_delay
        self._queue: queue.SimpleQueue[_Delivery] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._stats_lock = threading.Lock()
        self._counts = {"batches": 0, "new": 0, "duplicates": 0, "rejected": 0, "failures": 0}
        self._last_error: str | None = None
        self._session = KitSession(
            conn,
            client_id,
            subscriptions=[(topic, SubscribeOptions(qos=1))],
            on_message=self._on_message,
            clean_start=False,
            session_expiry=session_expiry,
            manual_ack=True,
            receive_maximum=receive_maximum,  # bounds what is in flight, unacknowledged, at once
        )

    @property
    def client_id(self) -> str:
        return self._session.client_id

    def start(self, timeout: float = WAIT) -> Self:
        """Connect and subscribe; returns once the subscription is acknowledged. Raises ConnectError."""
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name=f"consumer-{self.client_id}", daemon=True)
        self._worker.start()
        try:
            self._session.open(timeout)
        except BaseException:
            self._stop_worker()
            raise
        return self

    def stop(self) -> None:
        """Finish the batch in hand, then disconnect. Unacknowledged messages stay in the broker's session."""
        self._stop_worker()
        self._session.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stats(self) -> ConsumerStats:
        with self._stats_lock:
            return ConsumerStats(**self._counts, last_error=self._last_error)

    def _stop_worker(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=60.0)
            self._worker = None

    def _count(self, **by: int) -> None:
        with self._stats_lock:
            for key, n in by.items():
                self._counts[key] += n

    # paho's network thread: hand over, nothing else.
    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(_Delivery(self._session.generation, msg.mid, msg.qos, msg.topic, bytes(msg.payload)))

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                delivery = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if self._handle(delivery):
                self._session.ack(delivery.mid, delivery.qos, delivery.generation)
                self._count(batches=1)

    def _handle(self, d: _Delivery) -> bool:
        """Process one message; True when it may be acknowledged, False when stopping before it was done."""
        batch, error = self._decode(d)
        if batch is None:
            log.error("consumer %s: rejected message on %s: %s", self.client_id, d.topic, error)
            return self._attempt(d, lambda: self.dedupe.reject(d.topic, d.payload, error), rejected=1)
        return self._attempt(d, lambda: self.dedupe.process(batch, self.handler))

    def _decode(self, d: _Delivery) -> tuple[EventBatch | None, str]:
        where = parse(d.topic, self.prefix)
        if where is None or where[2] != "events" or where[0] != self.site:
            return None, "not an events topic of this site"
        try:
            batch = EventBatch.model_validate_json(d.payload)
        except ValidationError as err:
            return None, f"schema: {err}"
        # The topic is what the broker's ACL vouches for; the payload must not claim another source.
        if (batch.site, batch.gateway) != where[:2]:
            return None, f"batch claims {batch.site}/{batch.gateway} but came on {d.topic}"
        return batch, ""

    def _attempt(self, d: _Delivery, work: Callable[[], BatchResult | None], *, rejected: int = 0) -> bool:
        delay = self._retry_delay[0]
        while True:
            try:
                result = work()
            except Exception as err:  # a task boundary: the batch stays unacknowledged and is retried
                log.exception(
                    "consumer %s: batch on %s failed; retrying in %.1f s", self.client_id, d.topic, delay
                )
                with self._stats_lock:
                    self._counts["failures"] += 1
                    self._last_error = f"{type(err).__name__}: {err}"
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, self._retry_delay[1])
                continue
            if result is not None:
                self._count(new=result.new, duplicates=result.duplicates)
            self._count(rejected=rejected)
            return True
