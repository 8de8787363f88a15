"""The Wiegand tests leave no thread or asyncio task behind."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest


@pytest.fixture(autouse=True)
async def no_leaks() -> AsyncIterator[None]:
    threads = set(threading.enumerate())
    yield
    current = asyncio.current_task()
    for _ in range(50):  # closing transports takes a few loop turns
        tasks = {t for t in asyncio.all_tasks() if t is not current and not t.done()}
        # The loop's default executor keeps its workers ("asyncio_N") until the loop closes: not a leak.
        extra = [
            t
            for t in threading.enumerate()
            if t not in threads and t.is_alive() and not t.name.startswith("asyncio_")
        ]
        if not tasks and not extra:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"leaked tasks {tasks} / threads {extra}")
