"""A gateway with its cloud sync in a child process, for the SIGKILL test (test_sync_faults.py).

    python sync_child.py DATA_DIR HOST PORT run     # a backlog, then card reads without pause until killed
    python sync_child.py DATA_DIR HOST PORT drain   # no new reads; exit 0 once the outbox is empty

It prints one line per state change ("started", "empty") so the parent can follow without timing guesses.
A separate process because only a real SIGKILL shows what survives one: the event log's commits, nothing
that lived in memory (paho's queue, batches in flight).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from cloud_sync.sync import CloudSync

from drivers.reader import CredentialRead
from edge.config import MqttSection, load_config
from edge.demo_data import LI_CARD, UNKNOWN_CARD, demo_access_list
from edge.devices import build_devices
from edge.gateway import Gateway
from edge.model import CredentialKind

ROOT = Path(__file__).resolve().parents[2]
READERS = ("main-gate-in", "side-door-in", "lobby-a-in")
DOORS = ("main-gate", "side-door", "lobby-a")
BACKLOG = 6000


async def main(data_dir: Path, host: str, port: int, mode: str) -> int:
    cfg = load_config(ROOT / "config" / "demo.toml")
    cfg = cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"data_dir": data_dir})})
    gateway = Gateway(cfg, build_devices(cfg))
    await gateway.start()
    events = gateway.events
    assert events is not None
    if mode == "run":
        now = datetime.now(UTC)
        await gateway.replace_access_list(demo_access_list(1, now, "side-door", list(gateway.site.doors)))
        # A backlog first (as after an outage), so the kill lands with thousands still unsent.
        at = now.isoformat()
        for start in range(0, BACKLOG, 1000):
            events.append_many(
                {"type": "decision", "at": at, "door": DOORS[i % 3], "granted": False, "reason": "backlog"}
                for i in range(start, start + 1000)
            )
        await asyncio.to_thread(events.flush)
    mqtt = MqttSection(host=host, port=port, keepalive_seconds=5, upload_batch=100, upload_window=4)
    sync = CloudSync(gateway, mqtt, software_version="child", downlink=None, reconnect_delay=(1, 2))
    await sync.start()
    print("started", flush=True)
    try:
        if mode == "run":
            n = 0
            while True:  # until SIGKILL
                for _ in range(20):
                    card = LI_CARD if n % 7 == 0 else UNKNOWN_CARD
                    gateway.present(CredentialRead(READERS[n % 3], CredentialKind.CARD, card))
                    n += 1
                await asyncio.sleep(0.01)
        while await asyncio.to_thread(events.depth) > 0:  # noqa: ASYNC110 - the depth lives in SQLite
            await asyncio.sleep(0.1)
        print("empty", flush=True)
    finally:
        await sync.stop()
        await gateway.stop()
    return 0


if __name__ == "__main__":
    data, host, port, mode = sys.argv[1:5]
    if mode not in ("run", "drain"):
        raise SystemExit(f"unknown mode {mode!r}")
    sys.exit(asyncio.run(main(Path(data), host, int(port), mode)))
