"""systemd notify: a real `menwei run` sends READY=1, WATCHDOG=1 at half WATCHDOG_USEC and STOPPING=1 to a
real unix datagram socket; without NOTIFY_SOCKET nothing is sent."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.ops.notify import Notifier

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "config" / "demo.toml"


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    # A short directory: a unix socket path is limited to 107 bytes, pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="mw") as directory:
        path = os.path.join(directory, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(30)
        try:
            yield sock, path
        finally:
            sock.close()


def _receive_until(sock: socket.socket, wanted: str, seen: list[str]) -> None:
    while not any(wanted in m.split("\n") for m in seen):
        seen.append(sock.recv(4096).decode())


def test_menwei_run_notifies_systemd(listener: tuple[socket.socket, str], tmp_path: Path) -> None:
    sock, path = listener
    env = {
        **os.environ,
        "STATE_DIRECTORY": str(tmp_path),
        "NOTIFY_SOCKET": path,
        "WATCHDOG_USEC": "400000",  # a ping every 0.2 s
    }
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(DEMO)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        seen: list[str] = []
        _receive_until(sock, "READY=1", seen)
        assert (tmp_path / "menwei.db").exists()  # ready only once the gateway has started
        started = time.monotonic()
        pings = 0
        while pings < 4:
            if sock.recv(4096).decode() == "WATCHDOG=1":
                pings += 1
        elapsed = time.monotonic() - started
        assert 0.4 < elapsed < 5, elapsed  # about every 0.2 s, not in a burst
        proc.send_signal(signal.SIGTERM)
        _receive_until(sock, "STOPPING=1", seen)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    ready = next(m for m in seen if "READY=1" in m.split("\n"))
    assert "STATUS=gateway gw-demo: 3 doors" in ready
    assert "gateway stopped" in err


def test_stalled_loop_stops_the_pings(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    sock.settimeout(0.5)
    notifier = Notifier(path, watchdog_seconds=0.2)

    async def stall() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(notifier.keep_alive(stop))
        await asyncio.sleep(0.35)
        time.sleep(0.6)  # the loop is blocked: no ping may go out meanwhile  # noqa: ASYNC251
        stop.set()
        await task

    started = time.monotonic()
    asyncio.run(stall())
    notifier.close()
    stamps: list[float] = []
    sock.setblocking(False)
    while True:
        try:
            assert sock.recv(64) == b"WATCHDOG=1"
        except BlockingIOError:
            break
        stamps.append(time.monotonic() - started)
    # 0.0, 0.1, 0.2, 0.3 s before the stall; none during the 0.6 s stall.
    assert 3 <= len(stamps) <= 5, stamps


def test_no_notify_socket_is_a_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    notifier.ready()
    notifier.watchdog()
    notifier.stopping()
    asyncio.run(notifier.keep_alive(asyncio.Event()))  # returns at once without a watchdog


def test_environment_parsing() -> None:
    pid = str(os.getpid())
    n = Notifier.from_env({"NOTIFY_SOCKET": "@menwei", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid})
    assert n.address == "@menwei" and n.watchdog_seconds == 30.0
    other = Notifier.from_env({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_seconds is None  # the pings are expected from another process
    assert Notifier.from_env({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "0"}).watchdog_seconds is None


def test_abstract_socket_address() -> None:
    name = f"menwei-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        notifier = Notifier("@" + name)
        notifier.ready()
        assert sock.recv(64) == b"READY=1"
        notifier.close()
    finally:
        sock.close()


def test_unreachable_socket_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier("/nonexistent/notify")
    notifier.watchdog()
    notifier.watchdog()
    notifier.close()
    assert sum("cannot notify systemd" in r.getMessage() for r in caplog.records) == 1
