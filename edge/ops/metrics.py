"""Prometheus metrics for `menwei run`: decisions, decision latency, the outbox, the access list, devices.

Why it is built this way: the door path must not pay for being watched. `DecisionStats.observe` runs on the
event loop inside Gateway.present and only bumps plain ints (a dict entry, a histogram bucket found with
bisect); prometheus_client's own Counter/Histogram take a threading.Lock on every update. The numbers are
turned into metric families only when Prometheus scrapes, in the HTTP server's thread, by `GatewayCollector`.
Reading an int another thread writes is safe under the GIL; a scrape may miss a decision made during it,
which the next scrape shows.

The outbox figures come from the event log's reader connection (a count and one indexed row) at scrape time,
in the server thread, never on the loop. Device states follow the DEVICE_OFFLINE alarms on the bus: every
configured controller and reader starts as online, and DoorIO and the readers raise (and clear) an alarm
for each device that is or goes offline, also at start.

Face pipeline timings (detection, embedding, match, liveness) are histograms the face worker keeps the same
way, in plain ints in its own process, and sends with its heartbeat (drivers.face.loop.StageTimes); the
reader keeps the latest copy, and a scrape reads it. Sync lag comes from the cloud link when `menwei run`
attaches it (`attach_sync`): connected or not, the last acknowledged upload, and the last access list the
downlink applied (AccessListEvent on the bus). The access list's age survives a restart: until a new one
comes, it is dated by the newest access_list event in the log, read once at the first scrape.

The number of alarms no guard has acknowledged yet is counted in the gateway's alarm table at scrape time
(one indexed count, in the server thread), so an acknowledgement in the console shows at the next scrape.

The server listens on loopback only ([metrics] address): the figures name doors and devices, and whoever
needs them remotely scrapes through an authenticated proxy or the node's agent.
"""

from __future__ import annotations

import bisect
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from edge.decision import Decision, Reason
from edge.errors import StoreError
from edge.events import AccessListEvent, AlarmEvent, AlarmKind, Event
from edge.model import CredentialKind

if TYPE_CHECKING:
    from edge.gateway import Gateway

log = logging.getLogger(__name__)

# Seconds. A decision is memory only (~10-100 us); the upper buckets catch a loop that stalls.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.05,
    0.25,
)


class DecisionStats:
    """Decision counts and a latency histogram, written on the event loop only, without locks."""

    __slots__ = ("bounds", "buckets", "counts", "latency_sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.latency_sum = 0.0
        # (reason, credential kind) -> count; both are StrEnums, so the key hashes in C.
        self.counts: dict[tuple[Reason, CredentialKind], int] = {}

    def observe(self, decision: Decision, seconds: float) -> None:
        key = (decision.reason, decision.kind)
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        self.buckets[bisect.bisect_left(self.bounds, seconds)] += 1
        self.latency_sum += seconds


class DeviceStates:
    """Online (True) or offline per device id, from the DEVICE_OFFLINE alarms on the bus."""

    def __init__(self, device_ids: Iterable[str]) -> None:
        self.online: dict[str, bool] = dict.fromkeys(device_ids, True)

    def on_alarm(self, event: Event) -> None:
        if isinstance(event, AlarmEvent) and event.kind is AlarmKind.DEVICE_OFFLINE and event.device_id:
            self.online[event.device_id] = not event.active


class UploaderView(Protocol):
    @property
    def last_upload_at(self) -> datetime | None: ...


class SyncView(Protocol):
    """What the metrics read from the cloud link (cloud_sync.sync.CloudSync), without importing it."""

    @property
    def uploader(self) -> UploaderView: ...

    @property
    def connected(self) -> bool: ...


class StageTimesView(Protocol):
    @property
    def buckets(self) -> list[int]: ...

    @property
    def seconds(self) -> float: ...


class LoopStatsView(Protocol):
    """drivers.face.loop.LoopStats, as far as the metrics read it."""

    @property
    def stages(self) -> Mapping[str, StageTimesView]: ...


class SyncState:
    """The cloud link (once attached) and when access lists came into force; written on the loop, read by
    scrapes (single attribute writes, no lock)."""

    def __init__(self, db_path: Any) -> None:
        self.sync: SyncView | None = None
        self.last_downlink_at: datetime | None = None  # an access list applied by this process
        self.acl_applied_at: datetime | None = None
        self._db_path = db_path
        self._looked_up = False

    def on_access_list(self, event: Event) -> None:
        if isinstance(event, AccessListEvent):
            self.last_downlink_at = self.acl_applied_at = event.at
            self._looked_up = True

    def applied_at(self) -> datetime | None:
        """When the access list in force came (from the log at the first scrape, then from the bus)."""
        if not self._looked_up:
            self._looked_up = True
            self.acl_applied_at = self.acl_applied_at or _last_access_list_at(self._db_path)
        return self.acl_applied_at


def _last_access_list_at(db_path: Any) -> datetime | None:
    from edge.ops.status import read_only

    try:
        with read_only(db_path) as conn:
            row = conn.execute(
                "SELECT at FROM events WHERE type = 'access_list' ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        return None if row is None else datetime.fromisoformat(row[0])
    except (sqlite3.Error, ValueError):
        log.debug("access list date not read from the log", exc_info=True)
        return None


def _histogram(bounds: tuple[float, ...], buckets: list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (the last is +Inf) as Prometheus' cumulative (le, count) pairs."""
    cumulative: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip((*bounds, float("inf")), buckets, strict=True):
        total += count
        cumulative.append(("+Inf" if bound == float("inf") else repr(bound), total))
    return cumulative


class GatewayCollector(Collector):
    """Builds the metric families from the gateway's state when Prometheus scrapes."""

    def __init__(
        self,
        gateway: Gateway,
        stats: DecisionStats,
        devices: DeviceStates,
        sync: SyncState | None = None,
        face_readers: dict[str, Callable[[], LoopStatsView]] | None = None,
    ) -> None:
        self._gateway = gateway
        self._stats = stats
        self._devices = devices
        self._sync = sync
        self._face_readers = face_readers or {}

    def collect(self) -> Iterator[Any]:
        stats = self._stats
        decisions = CounterMetricFamily(
            "menwei_decisions", "Access decisions.", labels=["result", "reason", "credential"]
        )
        for (reason, kind), count in stats.counts.copy().items():
            result = "granted" if reason.granted else "denied"
            decisions.add_metric([result, reason.value, kind.value], count)
        yield decisions

        latency = HistogramMetricFamily(
            "menwei_decision_latency_seconds",
            "Time from a credential read to its decision published on the bus.",
        )
        latency.add_metric([], _histogram(stats.bounds, list(stats.buckets)), sum_value=stats.latency_sum)
        yield latency

        engine = self._gateway.engine
        version = GaugeMetricFamily("menwei_access_list_version", "Version of the access list in force.")
        if engine is not None:
            version.add_metric([], engine.acl.version)
        yield version

        online = GaugeMetricFamily(
            "menwei_device_online", "1 if the device answers, 0 if it is offline.", labels=["device"]
        )
        for device, up in sorted(self._devices.online.copy().items()):
            online.add_metric([device], 1.0 if up else 0.0)
        yield online

        yield from self._outbox()
        yield from self._alarms()
        yield from self._sync_lag()
        yield from self._face()

    def _sync_lag(self) -> Iterator[Any]:
        if self._sync is None:
            return
        now = datetime.now(UTC)
        acl_age = GaugeMetricFamily(
            "menwei_access_list_age_seconds", "Seconds since the access list in force was applied."
        )
        applied = self._sync.applied_at()
        if applied is not None:
            acl_age.add_metric([], max(0.0, (now - applied).total_seconds()))
        yield acl_age
        sync = self._sync.sync
        if sync is None:  # no [mqtt]: no link to report on
            return
        yield GaugeMetricFamily(
            "menwei_mqtt_connected",
            "1 while the MQTT link to the cloud is up.",
            value=1.0 if sync.connected else 0.0,
        )
        upload = GaugeMetricFamily(
            "menwei_sync_last_upload_age_seconds",
            "Seconds since the broker last acknowledged uploaded events (absent before the first).",
        )
        uploaded = sync.uploader.last_upload_at
        if uploaded is not None:
            upload.add_metric([], max(0.0, (now - uploaded).total_seconds()))
        yield upload
        downlink = GaugeMetricFamily(
            "menwei_sync_last_downlink_age_seconds",
            "Seconds since this process last applied an access list from the cloud (absent before the first).",
        )
        if self._sync.last_downlink_at is not None:
            downlink.add_metric([], max(0.0, (now - self._sync.last_downlink_at).total_seconds()))
        yield downlink

    def _face(self) -> Iterator[Any]:
        if not self._face_readers:
            return
        from drivers.face.loop import FACE_STAGES, STAGE_BUCKETS

        family = HistogramMetricFamily(
            "menwei_face_stage_seconds",
            "Face pipeline time per stage (detection per frame; embedding, match, liveness per face).",
            labels=["reader", "stage"],
        )
        for reader, loop_stats in sorted(self._face_readers.items()):
            stages = loop_stats().stages
            for stage in FACE_STAGES:
                times = stages[stage]
                family.add_metric(
                    [reader, stage], _histogram(STAGE_BUCKETS, list(times.buckets)), sum_value=times.seconds
                )
        yield family

    def _alarms(self) -> Iterator[Any]:
        family = GaugeMetricFamily(
            "menwei_alarms_unacknowledged",
            "Alarms no guard has acknowledged yet, cleared ones included (absent if the store cannot be read).",
        )
        try:
            family.add_metric([], self._gateway.alarms.open_count())
        except (StoreError, sqlite3.Error):  # a scrape must not fail on a store that is busy or closing
            log.debug("alarm count unavailable", exc_info=True)
        yield family

    def _outbox(self) -> Iterator[Any]:
        depth = GaugeMetricFamily("menwei_outbox_depth", "Events waiting to be sent to the cloud.")
        age = GaugeMetricFamily(
            "menwei_outbox_oldest_age_seconds", "Age of the oldest event waiting to be sent (0 if none)."
        )
        events = self._gateway.events
        if events is not None and not events.closed:
            try:
                depth.add_metric([], events.depth())
                oldest = events.oldest_pending_at()
            except (StoreError, sqlite3.Error):  # a scrape must not fail on a store that is closing
                log.debug("outbox figures unavailable", exc_info=True)
            else:
                age_s = 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
                age.add_metric([], max(age_s, 0.0))
        yield depth
        yield age


class MetricsServer:
    """The /metrics endpoint of one gateway, on its own registry (nothing global, so tests run several)."""

    def __init__(self, gateway: Gateway, address: str, port: int) -> None:
        self.stats = DecisionStats()
        site = gateway.site
        self.devices = DeviceStates([*gateway.devices.controllers, *site.readers])
        self.sync = SyncState(gateway.db_path)
        # Face readers (drivers.face.reader.FaceCameraReader) report their workers' stage timings.
        face_readers = {
            rid: stats
            for rid, reader in gateway.devices.readers.items()
            if callable(stats := getattr(reader, "loop_stats", None))
        }
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GatewayCollector(gateway, self.stats, self.devices, self.sync, face_readers))
        self._gateway = gateway
        self._address = address
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_port) if self._server is not None else self._port

    def start(self) -> None:
        self._gateway.decision_observer = self.stats.observe
        unsubscribe = (
            self._gateway.bus.subscribe(AlarmEvent, self.devices.on_alarm),
            self._gateway.bus.subscribe(AccessListEvent, self.sync.on_access_list),
        )

        def unsubscribe_all() -> None:
            for u in unsubscribe:
                u()

        self._unsubscribe = unsubscribe_all
        self._server, self._thread = start_http_server(self._port, self._address, registry=self.registry)
        log.info("metrics on http://%s:%d/metrics", self._address, self.port)

    def attach_sync(self, sync: SyncView) -> None:
        """Report on this cloud link from now on (`menwei run` calls it once the link is started)."""
        self.sync.sync = sync

    def stop(self) -> None:
        self.sync.sync = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._gateway.decision_observer = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
