"""Fixtures for the Modbus tests: pymodbus's own server as the board, a socat pseudo-terminal pair as the RS-485
line, and a check that no test leaves a thread or an asyncio task behind."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.drivers.leaks import fail_on_leaks


@pytest.fixture(autouse=True)
async def no_leaks() -> AsyncIterator[None]:
    threads = set(threading.enumerate())
    yield
    await fail_on_leaks(threads)


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two linked serial ports, like a USB-RS485 adapter wired to a board."""
    socat = shutil.which("socat")
    if socat is None:
        pytest.fail("socat is not installed (scripts/setup installs it)")
    a, b = tmp_path / "gw", tmp_path / "board"
    proc = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while not (a.exists() and b.exists()):
            if time.monotonic() > deadline:
                pytest.fail("socat did not create the pty pair")
            time.sleep(0.01)
        yield str(a), str(b)
    finally:
        proc.terminate()
        proc.wait(timeout=5)
