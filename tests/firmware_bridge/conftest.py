"""Fixtures: a bench (the simulated board behind the fault relay on real pseudo-terminals) with fast timings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from firmware_bridge.testbench import FAST_DEVICE, Bench


@pytest.fixture
def bench() -> Iterator[Bench]:
    with Bench(config=FAST_DEVICE) as b:
        yield b
