"""Scaling out the backend: two consumer processes in one MQTT 5 shared subscription, one dedupe file.

The broker gives each message of `$share/backend/menwei/v1/s1/+/events` to one member of the group; gateways
re-send batches (a lost PUBACK) and batches overlap, so the same event can reach both processes. The union
of what the two handled must be every event exactly once, and both must have taken part.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cloud_sync.broker import LocalBroker
from cloud_sync.dedupe import GENESIS_HASH, DedupeStore, event_hash
from cloud_sync.messages import EventBatch, UploadedEvent
from cloud_sync.topics import Topics

if TYPE_CHECKING:
    from tests.cloud_sync.conftest import ProbeFactory

SITE = "s1"
GROUP = "backend"
EVENTS = {"gw-1": 1200, "gw-2": 800}  # 2,000 events from two gateways
BATCH = 20
WAIT = 60.0
CHILD = Path(__file__).with_name("consumer_child.py")


def chain(gateway: str, count: int) -> list[UploadedEvent]:
    out, prev = [], GENESIS_HASH
    for seq in range(1, count + 1):
        record = {"type": "decision", "at": "2025-01-01T08:00:00+08:00", "door": "front", "n": seq}
        eid = f"{gateway}-{seq:06d}"
        h = event_hash(prev, eid, seq, record)
        out.append(UploadedEvent(seq=seq, id=eid, hash=h, prev_hash=prev, event=record))
        prev = h
    return out


def batches(gateway: str, events: list[UploadedEvent]) -> list[bytes]:
    """Batches of BATCH events; every 5th sent twice, every 7th followed by one overlapping the next."""
    out = []
    for n, start in enumerate(range(0, len(events), BATCH)):
        body = EventBatch(site=SITE, gateway=gateway, events=events[start : start + BATCH])
        out.append(body.model_dump_json().encode())
        if n % 5 == 0:
            out.append(out[-1])
        if n % 7 == 0:
            overlap = events[start + BATCH // 2 : start + BATCH + BATCH // 2]
            out.append(EventBatch(site=SITE, gateway=gateway, events=overlap).model_dump_json().encode())
    return out


class Child:
    """A consumer_child.py process; its stdout lines arrive on a queue so every read has a bound."""

    def __init__(self, broker: LocalBroker, client_id: str, db: Path, tmp: Path) -> None:
        self.client_id = client_id
        self.calls = tmp / f"{client_id}.calls"
        self.stderr_path = tmp / f"{client_id}.err"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(CHILD),
                *("--host", broker.host, "--port", str(broker.port), "--site", SITE, "--group", GROUP),
                *("--client-id", client_id, "--db", str(db), "--calls", str(self.calls)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def line(self, timeout: float = WAIT) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id} said nothing for {timeout} s:\n{self.errors()}") from None

    def errors(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]

    def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        stats: dict[str, Any] = json.loads(self.line())
        assert self.proc.wait(WAIT) == 0, self.errors()
        return stats

    def handled(self) -> list[tuple[str, int]]:
        pairs = (json.loads(line) for line in self.calls.read_text().splitlines())
        return [(str(gateway), int(seq)) for gateway, seq in pairs]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        self._stderr.close()


def count_handled(db: Path) -> int:
    with sqlite3.connect(db, timeout=WAIT) as conn:
        return int(conn.execute("SELECT count(*) FROM handled").fetchone()[0])


def test_two_processes_share_the_events_each_handled_once(
    broker: LocalBroker, make_probe: ProbeFactory, tmp_path: Path
) -> None:
    db = tmp_path / "dedupe.db"
    DedupeStore(db).close()  # create the store's tables, then the handler's own
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE handled (site TEXT, gateway TEXT, seq INTEGER, consumer TEXT)")
    children = [Child(broker, f"consumer-{i}", db, tmp_path) for i in (1, 2)]
    try:
        for child in children:
            assert child.line() == "ready", child.errors()

        sent = 0
        for gateway, count in EVENTS.items():
            gw = make_probe(gateway)
            gw.connect(broker.host, broker.port)
            assert gw.wait_connected()
            mids = [
                gw.publish(Topics(SITE, gateway).events, body)
                for body in batches(gateway, chain(gateway, count))
            ]
            assert all(gw.wait_published(mid, WAIT) for mid in mids)
            sent += len(mids)
        total = sum(EVENTS.values())
        deadline = time.monotonic() + WAIT
        while count_handled(db) < total and time.monotonic() < deadline:
            time.sleep(0.1)

        stats = [child.stop() for child in children]
        handled = [child.handled() for child in children]
    finally:
        for child in children:
            child.close()

    calls = Counter(call for per_child in handled for call in per_child)
    expected = {(gateway, seq) for gateway, count in EVENTS.items() for seq in range(1, count + 1)}
    assert set(calls) == expected
    assert [c for c, n in calls.items() if n > 1] == []
    assert all(len(per_child) > 0 for per_child in handled), [len(h) for h in handled]
    assert sum(s["batches"] for s in stats) == sent
    assert sum(s["new"] for s in stats) == total
    assert sum(s["duplicates"] for s in stats) > 0
    assert all(s["failures"] == 0 and s["rejected"] == 0 for s in stats)

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT gateway, seq, count(*) FROM handled GROUP BY gateway, seq").fetchall()
        consumers = {c for (c,) in conn.execute("SELECT DISTINCT consumer FROM handled")}
    assert len(rows) == total and all(n == 1 for _, _, n in rows)
    assert consumers == {"consumer-1", "consumer-2"}
    with DedupeStore(db) as store:
        assert all(store.gaps(SITE, gateway) == [] for gateway in EVENTS)
        assert store.issues() == []
