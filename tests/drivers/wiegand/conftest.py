"""The Wiegand tests leave no thread or asyncio task behind."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import pytest

from tests.drivers.leaks import fail_on_leaks


@pytest.fixture(autouse=True)
async def no_leaks() -> AsyncIterator[None]:
    threads = set(threading.enumerate())
    yield
    await fail_on_leaks(threads)
