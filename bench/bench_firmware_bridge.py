"""Firmware bridge: command round trip (unlock -> ack) and firmware update throughput over a pseudo-terminal.

The host is the real stack (firmware_bridge.link.Link on pyserial), the device the reference core in its
simulator thread, joined by the fault relay. With --baud the relay paces each direction like a UART at that
speed (10 bit times per byte, 8N1), so what is measured at 115200 includes the time the bytes would spend on
the wire. The same run also measures without pacing: the baseline is the software alone (pty, both protocol
stacks, asyncio), and the difference is the line.

    .venv/bin/python bench/bench_firmware_bridge.py [--round-trips 500] [--image-kib 32] [--baud 115200]

An unlock command is 17 bytes on the wire and its ack 11, so the line alone accounts for about 2.4 ms of a
round trip at 115200; a 256-byte firmware chunk is about 275 bytes (24 ms), which bounds the update to about
10 KiB/s at that speed with one chunk in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from firmware_bridge import protocol as p
from firmware_bridge.link import Link, LinkTiming
from firmware_bridge.protocol import Op
from firmware_bridge.release import sign_release
from firmware_bridge.testbench import FAST_DEVICE, Bench
from firmware_bridge.update import update_firmware

TIMING = LinkTiming(heartbeat_s=0.5, missed=3, ack_timeout_s=0.5, retries=3)


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _measure(baud: int | None, round_trips: int, image: bytes) -> tuple[list[float], float, int]:
    key = Ed25519PrivateKey.generate()
    with Bench(baud=baud, release_key=key, config=FAST_DEVICE) as bench:
        link = Link(bench.port, timing=TIMING)
        await link.start()
        try:
            if not await link.wait_up(5):
                raise SystemExit("the simulated board did not come up")
            for _ in range(20):  # warm up
                await link.request(Op.STATUS)
            samples = []
            unlock = p.pack_pulse(1, True, 50)
            for _ in range(round_trips):
                start = time.perf_counter()
                await link.request(Op.PULSE, unlock)
                samples.append(time.perf_counter() - start)
            resent = link.stats.resent
            release = sign_release(key, image, "bench")
            start = time.perf_counter()
            result = await update_firmware(link, release)
            elapsed = time.perf_counter() - start
            if result.version != "bench":
                raise SystemExit("update did not confirm")
            return samples, len(image) / elapsed, resent
        finally:
            await link.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=500)
    parser.add_argument("--image-kib", type=int, default=32)
    parser.add_argument("--baud", type=int, default=115200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the resets after each update are expected
    image = os.urandom(args.image_kib * 1024)
    print(f"firmware-bridge over a pty: {args.round_trips} unlock round trips, a {args.image_kib} KiB update")
    print(f"{'line':>16} {'unlock->ack p50':>16} {'p99':>9} {'max':>9} {'update':>12} {'resends':>8}")
    for label, baud in ((f"{args.baud} baud", args.baud), ("unpaced", None)):
        samples, throughput, resent = await _measure(baud, args.round_trips, image)
        print(
            f"{label:>16} {statistics.median(samples) * 1000:>13.2f} ms {_pct(samples, 0.99) * 1000:>6.2f} ms "
            f"{max(samples) * 1000:>6.2f} ms {throughput / 1024:>7.1f} KiB/s {resent:>8}"
        )
    # The update time includes the commit: SHA-256 and Ed25519 over the slot, the reset and the self test.


if __name__ == "__main__":
    asyncio.run(main())
