"""A bench: the reference firmware (simulated) wired to a serial port path through the fault-injecting relay.

    Link(port=bench.port) ── pty A ── FaultRelay ── pty B ── SimulatedDevice (core.Device in a thread)

The host opens `bench.port` with pyserial like a real /dev/ttyUSB0; `bench.relay` injects faults and pulls the
cable; `bench.device` resets the board; `bench.board` shows the relays and flips inputs. A release key pair is
made per bench unless one is given. Used by the tests, bench/bench_firmware_bridge.py and demos.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from types import TracebackType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from firmware_bridge.device.core import DeviceConfig
from firmware_bridge.device.hal import Storage
from firmware_bridge.device.sim import SimBoard, SimulatedDevice
from firmware_bridge.link import LinkTiming
from firmware_bridge.relay import FaultRelay, open_pty


class Bench:
    def __init__(
        self,
        *,
        baud: int | None = None,
        release_key: Ed25519PrivateKey | None = None,
        board: SimBoard | None = None,
        config: DeviceConfig | None = None,
        storage: Storage | None = None,
    ) -> None:
        self.release_key = release_key or Ed25519PrivateKey.generate()
        public = self.release_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._host_master, self._host_slave, self.port = open_pty()
        self._dev_master, self._dev_slave, _ = open_pty()
        self.relay = FaultRelay(self._host_master, self._dev_master, baud=baud)
        self.device = SimulatedDevice(self._dev_slave, public, board=board, config=config, storage=storage)
        self.board = self.device.board

    def start(self) -> Bench:
        self.relay.start()
        self.device.start()
        return self

    def close(self) -> None:
        self.device.stop()
        self.relay.stop()
        for fd in (self._host_master, self._host_slave, self._dev_master, self._dev_slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Bench:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# Timings for tests and demos on a bench: link-down and resends happen in tens of milliseconds.
FAST_LINK = LinkTiming(heartbeat_s=0.05, missed=4, ack_timeout_s=0.06, retries=6, reopen_s=0.1)
FAST_DEVICE = DeviceConfig(heartbeat_ms=50, event_retry_ms=60, self_test_after_ms=100, trial_timeout_ms=600)


async def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until condition() holds, polling; AssertionError after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
