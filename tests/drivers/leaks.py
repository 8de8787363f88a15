"""The check the driver tests share: a test leaves no asyncio task and no thread behind."""

from __future__ import annotations

import asyncio
import threading

import pytest


async def fail_on_leaks(threads_before: set[threading.Thread], turns: int = 50) -> None:
    """Wait up to `turns` short loop turns (closing transports and joining driver threads take a few) for
    every task but the caller's to finish and every thread started since `threads_before` to end; fail
    naming what is left."""
    current = asyncio.current_task()
    tasks: set[asyncio.Task[object]] = set()
    extra: list[threading.Thread] = []
    for _ in range(turns):
        tasks = {t for t in asyncio.all_tasks() if t is not current and not t.done()}
        # The loop's default executor keeps its workers ("asyncio_N") until the loop closes: not a leak.
        extra = [
            t
            for t in threading.enumerate()
            if t not in threads_before and t.is_alive() and not t.name.startswith("asyncio_")
        ]
        if not tasks and not extra:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"leaked tasks {tasks} / threads {extra}")
