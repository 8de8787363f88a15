"""OSDP test fixtures: a raw pseudo-terminal pair carrying a ControlPanel and libosdp's own PeripheralDevice in
one process, and a check that no test leaves a thread (libosdp's cp/pd threads) or a task behind."""

from __future__ import annotations

import asyncio
import os
import threading
import tty
from collections.abc import AsyncIterator, Iterator

import osdp  # noqa: F401 (scripts/setup installs it; a missing one must fail)
import pytest


@pytest.fixture(autouse=True)
async def no_leaks() -> AsyncIterator[None]:
    threads = set(threading.enumerate())
    yield
    current = asyncio.current_task()
    for _ in range(100):
        tasks = {t for t in asyncio.all_tasks() if t is not current and not t.done()}
        extra = [
            t
            for t in threading.enumerate()
            if t not in threads and t.is_alive() and not t.name.startswith("asyncio_")
        ]
        if not tasks and not extra:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"leaked tasks {tasks} / threads {extra}")


@pytest.fixture
def pty_fds() -> Iterator[tuple[int, int]]:
    """(control panel end, reader end), both raw."""
    cp_end, pd_end = os.openpty()
    tty.setraw(cp_end)
    tty.setraw(pd_end)
    yield cp_end, pd_end
    os.close(cp_end)
    os.close(pd_end)
