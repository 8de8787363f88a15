"""FaultProxy: the network partitions the cloud-sync tests rely on behave as documented.

A stall must look like a silent network (only keep-alive notices it), a drop must look like a dead host,
and healing must let paho reconnect by itself. The proxy must also leave no thread or task behind, or later
tests would inherit its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from cloud_sync.broker import LocalBroker
from cloud_sync.faults import AsyncFaultProxy, FaultMode, FaultProxy

if TYPE_CHECKING:
    from tests.cloud_sync.conftest import ProbeFactory

WAIT = 10.0


@pytest.fixture
def proxy(broker: LocalBroker) -> Iterator[FaultProxy]:
    with FaultProxy(broker.host, broker.port) as p:
        yield p
    assert not p.is_running


def _closed_by_peer(sock: socket.socket) -> bool:
    """True if the peer closes ``sock`` (FIN or RST) within the bounded wait."""
    sock.settimeout(WAIT)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_pass_through_round_trip(proxy: FaultProxy, make_probe: ProbeFactory) -> None:
    sub = make_probe("sub")
    sub.connect(proxy.host, proxy.port)
    assert sub.wait_connected()
    sub.subscribe("menwei/test/#")
    pub = make_probe("pub")
    pub.connect(proxy.host, proxy.port)
    assert pub.wait_connected()
    mid = pub.publish("menwei/test/x", b"through the proxy")
    assert pub.wait_published(mid)
    assert sub.wait_messages()
    assert sub.messages[0].payload == b"through the proxy"

    stats = proxy.stats
    assert proxy.mode is FaultMode.FORWARD
    assert stats.accepted == 2
    assert stats.active == 2
    assert stats.bytes_up > len(b"through the proxy")
    assert stats.bytes_down > len(b"through the proxy")


def test_stall_expires_keepalive_and_resume_reconnects(
    proxy: FaultProxy, broker: LocalBroker, make_probe: ProbeFactory
) -> None:
    gw = make_probe("gw", keepalive=2)
    gw.connect(proxy.host, proxy.port)
    assert gw.wait_connected()
    gw.subscribe("menwei/test/#")

    proxy.stall()
    # A message sent while the link is silent does not arrive...
    cloud = make_probe("cloud")
    cloud.connect(broker.host, broker.port)
    assert cloud.wait_connected()
    cloud.publish("menwei/test/during-stall", b"held", qos=0)
    # ...and with no PINGRESP, paho gives up after about 1.5 x keepalive.
    assert gw.wait_disconnected(timeout=15.0)
    assert gw.messages == []
    assert proxy.stats.active >= 1  # the proxy held the connection open: nobody saw a FIN

    proxy.resume()
    assert gw.wait_connected(count=2, timeout=15.0)
    gw.subscribe("menwei/test/#")
    mid = cloud.publish("menwei/test/after", b"healed", qos=1)
    assert cloud.wait_published(mid)
    assert gw.wait_until(lambda: any(m.payload == b"healed" for m in gw.messages))


def test_drop_closes_connections_and_refuses_new_ones(proxy: FaultProxy, make_probe: ProbeFactory) -> None:
    gw = make_probe("gw", keepalive=30)
    gw.connect(proxy.host, proxy.port)
    assert gw.wait_connected()

    proxy.drop()
    assert gw.wait_disconnected()  # at once, not after a keep-alive period
    assert proxy.stats.dropped == 1

    with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as raw:
        assert _closed_by_peer(raw)
    assert proxy.stats.refused >= 1

    proxy.resume()
    assert gw.wait_connected(count=2, timeout=15.0)


def test_drop_ends_links_parked_in_a_stall(proxy: FaultProxy, make_probe: ProbeFactory) -> None:
    gw = make_probe("gw", keepalive=30)
    gw.connect(proxy.host, proxy.port)
    assert gw.wait_connected()
    proxy.stall()
    proxy.drop()
    assert gw.wait_disconnected()
    assert gw.wait_until(lambda: proxy.stats.active == 0)


def test_stop_closes_connections_and_joins_the_thread(broker: LocalBroker) -> None:
    before = set(threading.enumerate())
    proxy = FaultProxy(broker.host, broker.port)
    proxy.start()
    with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as raw:
        proxy.stall()
        proxy.stop()
        assert _closed_by_peer(raw)
    assert not proxy.is_running
    proxy.stop()  # idempotent
    assert set(threading.enumerate()) <= before


def test_mode_set_before_start_applies_on_start(broker: LocalBroker) -> None:
    proxy = FaultProxy(broker.host, broker.port)
    proxy.drop()
    try:
        proxy.start()
        assert proxy.mode is FaultMode.DROP
        with socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as raw:
            assert _closed_by_peer(raw)
    finally:
        proxy.stop()


def test_unreachable_target_closes_the_client() -> None:
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))  # bound but not listening: connections to it are refused
        port = reserved.getsockname()[1]
        with (
            FaultProxy("127.0.0.1", port) as proxy,
            socket.create_connection((proxy.host, proxy.port), timeout=WAIT) as raw,
        ):
            assert _closed_by_peer(raw)
            assert proxy.stats.refused == 1


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    writer.close()


async def test_async_proxy_stalls_and_resumes_on_the_callers_loop() -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    target_port = server.sockets[0].getsockname()[1]
    async with server, AsyncFaultProxy("127.0.0.1", target_port) as proxy:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"ping"

        proxy.stall()
        writer.write(b"held")
        await writer.drain()
        # Nothing comes back while stalled; a short look is enough to see silence, not a speed claim.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 0.3)
        proxy.resume()
        assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"held"

        proxy.drop()
        try:
            rest = await asyncio.wait_for(reader.read(), WAIT)
        except ConnectionResetError:
            rest = b""
        assert rest == b""
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        assert proxy.stats.dropped == 1
    current = asyncio.current_task()
    leftovers = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert leftovers == []
