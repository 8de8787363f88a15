"""Upload throughput of the outbox: events/s from the SQLite event log to a local mosquitto at QoS 1.

What is timed is the whole durable path: read a batch from the event log (a thread), encode it, publish it at
QoS 1, wait for the broker's PUBACK, mark its events sent in SQLite (a thread, synchronous=FULL), with
`upload_window` batches in flight. The clock runs from the first connect until the last event is marked sent.

The baseline, measured in the same run against the same broker: a bare paho client publishing the very same
payload bytes at QoS 1 with the same window, without the outbox (no SQLite, no asyncio), until the last PUBACK.
The ratio shows what durability costs on top of the network and the broker.

    .venv/bin/python bench/bench_upload.py [--events 50000] [--batch 500] [--window 4]

Target (issue): >= 5,000 events/s on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from cloud_sync.broker import LocalBroker
from cloud_sync.sync import CloudSync
from cloud_sync.topics import Topics
from cloud_sync.uploader import read_batch
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import MqttSection, load_config
from edge.devices import build_devices
from edge.gateway import Gateway

ROOT = Path(__file__).resolve().parent.parent
TARGET = 5_000
DOORS = ("main-gate", "side-door", "lobby-a")


def decision(i: int, at: str) -> dict[str, object]:
    """A record shaped like a real DecisionEvent's."""
    return {
        "type": "decision",
        "at": at,
        "granted": i % 5 != 0,
        "reason": "granted" if i % 5 else "unknown_credential",
        "reader": f"{DOORS[i % 3]}-in",
        "door": DOORS[i % 3],
        "direction": "in",
        "credential_kind": "card",
        "credential": str(10_000_000 + i % 200_000),
        "person": f"p{i % 100_000}",
        "pass": None,
        "apb_violation": False,
    }


async def fill(gateway: Gateway, n: int) -> None:
    assert gateway.events is not None
    at = datetime.now(UTC).isoformat()
    for start in range(0, n, 1000):
        gateway.events.append_many(decision(i, at) for i in range(start, min(n, start + 1000)))
    await asyncio.to_thread(gateway.events.flush)


async def outbox_run(gateway: Gateway, broker: LocalBroker, n: int, batch: int, window: int) -> float:
    mqtt_cfg = MqttSection(host=broker.host, port=broker.port, upload_batch=batch, upload_window=window)
    sync = CloudSync(gateway, mqtt_cfg, software_version="bench", downlink=None)
    await sync.start()
    try:
        while not sync.connected:  # noqa: ASYNC110 - polling keeps the timed path free of extra hooks
            await asyncio.sleep(0.001)
        t0 = time.perf_counter()
        while sync.uploader.stats.acked < n:  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        return time.perf_counter() - t0
    finally:
        await sync.stop()


def baseline_run(broker: LocalBroker, topic: str, payloads: list[bytes], window: int) -> float:
    """The same payloads through a bare paho client at QoS 1, same window; seconds until the last PUBACK."""
    done = threading.Event()
    acked = 0

    def on_publish(client: mqtt.Client, userdata: object, mid: int, reason: object, props: object) -> None:
        nonlocal acked
        acked += 1
        if acked == len(payloads):
            done.set()

    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-baseline", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(window)
    client.on_publish = on_publish
    client.on_connect = lambda *a: connected.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError("baseline client did not connect")
        t0 = time.perf_counter()
        for payload in payloads:
            client.publish(topic, payload, qos=1)
        if not done.wait(120):
            raise RuntimeError(f"baseline: only {acked} of {len(payloads)} PUBACKs")
        return time.perf_counter() - t0
    finally:
        client.disconnect()
        client.loop_stop()


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500, help="events per message (mqtt.upload_batch)")
    parser.add_argument("--window", type=int, default=4, help="messages in flight (mqtt.upload_window)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    n = args.events

    with tempfile.TemporaryDirectory(prefix="menwei-bench-upload-") as tmp:
        broker = LocalBroker(Path(tmp) / "broker", persistence=False)
        broker.start()
        try:
            cfg = load_config(ROOT / "config" / "demo.toml")
            data_dir = Path(tmp) / "gw"
            cfg = cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"data_dir": data_dir})})
            gateway = Gateway(cfg, build_devices(cfg))
            await gateway.start()
            try:
                t0 = time.perf_counter()
                await fill(gateway, n)
                fill_s = time.perf_counter() - t0
                assert gateway.events is not None
                events = gateway.events
                sync_topics = Topics(cfg.site.id, cfg.gateway.id)
                payloads: list[bytes] = []
                after = 0
                while (b := read_batch(events, sync_topics, after, args.batch)) is not None:
                    payloads.append(b.payload)
                    after = b.seqs[-1]
                size = sum(len(p) for p in payloads)

                outbox_s = await outbox_run(gateway, broker, n, args.batch, args.window)
                left = await asyncio.to_thread(events.depth)
            finally:
                await gateway.stop()
            base_s = await asyncio.to_thread(baseline_run, broker, sync_topics.events, payloads, args.window)
        finally:
            broker.stop()

    rate = n / outbox_s
    base = n / base_s
    print(
        f"events: {n:,} in {len(payloads)} messages of {args.batch}, {size / n:.0f} bytes/event on the wire"
    )
    print(f"fill (append to the event log, synchronous=FULL): {fill_s:.2f} s, {n / fill_s:,.0f} events/s")
    print(
        f"upload (outbox -> QoS 1 -> PUBACK -> marked sent), window {args.window}: "
        f"{outbox_s:.2f} s, {rate:,.0f} events/s"
    )
    print(
        f"baseline (bare paho, same payloads, QoS 1, window {args.window}): {base_s:.2f} s, {base:,.0f} events/s"
    )
    print(f"ratio upload/baseline: {rate / base:.2f}")
    print(f"left unsent: {left}")
    verdict = "PASS" if rate >= TARGET and left == 0 else "FAIL"
    print(f"target >= {TARGET:,} events/s: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
