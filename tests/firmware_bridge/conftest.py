"""Fixtures: a bench (the simulated board behind the fault relay on real pseudo-terminals) with fast timings,
and a check that no test leaves a relay or board thread running."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from firmware_bridge.testbench import FAST_DEVICE, Bench


@pytest.fixture
def bench() -> Iterator[Bench]:
    with Bench(config=FAST_DEVICE) as b:
        yield b


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        new = set(threading.enumerate()) - before
        leaked = [t.name for t in new if t.is_alive() and t.name.startswith(("relay-", "sim-device"))]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"threads left running: {leaked}"
