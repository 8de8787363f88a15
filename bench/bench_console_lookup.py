"""The guard console's look-up of people on a big site, and what it costs the doors.

A 100,000-person access list (200,000 cards) on a running gateway; GET /api/people?q=... by name, card digits
and unit, each 10 times, through the console app on the gateway's own loop. Printed: the request latency
(first, then median and p90 of the rest), and the loop's responsiveness while the searches run against a
baseline of the same length without requests in the same run: a bystander task sleeping 1 ms at a time
records how late it wakes; a card read waits about as long.

    .venv/bin/python bench/bench_console_lookup.py [--people N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from synthetic import CARD_BASE, big_access_list

from edge.config import load_config
from edge.console import ConsoleSettings, create_app
from edge.devices import build_devices
from edge.gateway import Gateway

ROOT = Path(__file__).resolve().parents[1]


class SetupCode(logging.Handler):
    code: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"setup code (\S+)", record.getMessage())
        if found:
            SetupCode.code = found.group(1)


class Lateness:
    """How late a task that sleeps 1 ms at a time wakes up, while it runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while not self._stop:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            self.samples.append(time.perf_counter() - t - 0.001)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> str:
        self._stop = True
        assert self._task is not None
        await self._task
        s = sorted(self.samples)
        return (
            f"max {s[-1] * 1000:6.1f} ms, p99 {s[int(len(s) * 0.99)] * 1000:5.1f} ms, "
            f"median {statistics.median(s) * 1000:4.1f} ms over {len(s)} wake-ups"
        )


async def main(people: int) -> None:
    logging.getLogger("edge.console.auth").addHandler(SetupCode())
    logging.getLogger("edge.console.auth").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(ROOT / "config" / "demo.toml")
        cfg = cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"data_dir": Path(tmp)})})
        gw = Gateway(cfg, build_devices(cfg))
        await gw.start()
        await gw.replace_access_list(big_access_list(people, list(gw.site.doors), datetime.now(UTC)))
        # As the cloud downlink does after swapping in a snapshot: the list leaves the collector's scans.
        gc.collect()
        gc.freeze()
        app = create_app(gw, ConsoleSettings(secure_cookies=False))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://console"
        ) as client:
            setup = await client.post(
                "/api/setup", json={"code": SetupCode.code, "username": "bench", "password": "bench-password"}
            )
            client.headers["X-CSRF-Token"] = setup.json()["csrf_token"]
            print(f"{people:,} people, {2 * people:,} cards")
            quiet = Lateness()
            quiet.start()
            await asyncio.sleep(3)
            print(f"loop lateness, no requests (3 s):   {await quiet.stop()}")
            busy = Lateness()
            busy.start()
            for q in (f"Person {people - 1}", str(CARD_BASE + 2 * people - 2)[-6:], "39-2999", "nobody"):
                times = []
                for _ in range(10):
                    t = time.perf_counter()
                    response = await client.get("/api/people", params={"q": q})
                    times.append(time.perf_counter() - t)
                rest = sorted(times[1:])
                print(
                    f"GET /api/people?q={q!r:16} {len(response.json()):2} rows: first {times[0] * 1000:5.0f} ms, "
                    f"median {statistics.median(rest) * 1000:4.0f} ms, p90 {rest[int(len(rest) * 0.9)] * 1000:4.0f} ms"
                )
            print(f"loop lateness, during the searches: {await busy.stop()}")
        await gw.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--people", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().people))
