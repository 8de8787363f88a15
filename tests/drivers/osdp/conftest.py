"""OSDP test fixtures: a raw pseudo-terminal pair carrying a ControlPanel and libosdp's own PeripheralDevice in
one process, and a check that no test leaves a thread (libosdp's cp/pd threads) or a task behind."""

from __future__ import annotations

import os
import threading
import tty
from collections.abc import AsyncIterator, Iterator

import osdp  # noqa: F401 (scripts/setup installs it; a missing one must fail)
import pytest

from tests.drivers.leaks import fail_on_leaks


@pytest.fixture(autouse=True)
async def no_leaks() -> AsyncIterator[None]:
    threads = set(threading.enumerate())
    yield
    await fail_on_leaks(threads, turns=100)


@pytest.fixture
def pty_fds() -> Iterator[tuple[int, int]]:
    """(control panel end, reader end), both raw."""
    cp_end, pd_end = os.openpty()
    tty.setraw(cp_end)
    tty.setraw(pd_end)
    yield cp_end, pd_end
    os.close(cp_end)
    os.close(pd_end)
