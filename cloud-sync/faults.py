"""A TCP proxy that injects network faults between the gateway and its broker.

A gateway on a compound's uplink sees three kinds of network trouble, and each must be tested:

* a **stall**: the link goes silent but nobody closes anything (a dead NAT entry, a cable pulled upstream).
  Only the MQTT keep-alive can notice it; ``stall()`` stops forwarding bytes in both directions and keeps
  both TCP connections open, so neither peer gets a FIN or an RST.
* a **drop**: connections are torn down and new ones fail at once (the broker host is gone). ``drop()``
  closes every open connection and closes each new one right after accepting it.
* a **heal**: ``resume()`` (or ``pass_through()``) forwards again. Bytes held back by a stall are delivered
  then, like TCP retransmissions after a partition heals; a connection the peer gave up on meanwhile is
  closed on both sides as soon as the proxy notices.

Like pymodbus's simulators, this ships in the library rather than in the tests, so the demo and soak runs can
use it too.

Two classes, one engine. ``AsyncFaultProxy`` lives on the caller's event loop (``await start()``,
``await aclose()``). ``FaultProxy`` runs the same engine on its own event loop in a daemon thread with plain
``start()``/``stop()``; its fault methods are thread-safe and return once the new mode is in force. It is the
simple choice for synchronous pytest tests and also works from asyncio code, since its calls only block for
the moment it takes the proxy's loop to switch modes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

__all__ = ["AsyncFaultProxy", "FaultMode", "FaultProxy", "ProxyStats"]

_T = TypeVar("_T")
_CHUNK = 65536


class FaultMode(enum.Enum):
    """What the proxy does with traffic: forward it, hold it (connections stay open), or cut connections."""

    FORWARD = "forward"
    STALL = "stall"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """Counters since the proxy started. ``bytes_up`` flows client to target, ``bytes_down`` back."""

    bytes_up: int
    bytes_down: int
    accepted: int  # connections accepted by the listener, including those closed by drop mode
    refused: int  # connections closed right after accept because of drop mode or an unreachable target
    active: int  # connections currently open through the proxy
    dropped: int  # open connections closed by drop()


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[Any] | None = None

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class AsyncFaultProxy:
    """The proxy engine on the running event loop. Fault methods must be called from that loop."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = listen_host
        self._requested_port = listen_port
        self.port = listen_port
        self.connect_timeout = connect_timeout
        self._mode = FaultMode.FORWARD
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._bytes_up = 0
        self._bytes_down = 0
        self._accepted = 0
        self._refused = 0
        self._dropped = 0

    @property
    def mode(self) -> FaultMode:
        return self._mode

    @property
    def stats(self) -> ProxyStats:
        return ProxyStats(
            bytes_up=self._bytes_up,
            bytes_down=self._bytes_down,
            accepted=self._accepted,
            refused=self._refused,
            active=len(self._links),
            dropped=self._dropped,
        )

    async def start(self) -> None:
        """Listen; ``port`` holds the bound port afterwards (a free one unless ``listen_port`` was given)."""
        if self._server is not None:
            return
        self._flowing = asyncio.Event()
        self._apply(self._mode)
        self._server = await asyncio.start_server(self._handle, self.host, self._requested_port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        """Stop listening, close every connection and wait until all proxy tasks have finished."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        links = list(self._links)
        for link in links:
            link.abort()
            if link.task is not None:
                link.task.cancel()
        tasks = [link.task for link in links if link.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- faults (call on the proxy's loop) --------------------------------------------------------------

    def pass_through(self) -> None:
        """Forward bytes both ways (the initial mode)."""
        self._apply(FaultMode.FORWARD)

    resume = pass_through

    def stall(self) -> None:
        """Keep every connection open but forward nothing, either way, until resumed."""
        self._apply(FaultMode.STALL)

    def drop(self) -> None:
        """Close every open connection (RST) and close new ones as soon as they are accepted."""
        self._apply(FaultMode.DROP)

    def set_mode(self, mode: FaultMode) -> None:
        self._apply(mode)

    def _apply(self, mode: FaultMode) -> None:
        self._mode = mode
        if self._flowing is None:
            return  # not started: the mode is applied by start()
        if mode is FaultMode.FORWARD:
            self._flowing.set()
        else:
            self._flowing.clear()
        if mode is FaultMode.DROP:
            for link in list(self._links):
                self._dropped += 1
                link.abort()
                # A link parked in a stall never reads again, so aborting alone would not end its task.
                if link.task is not None:
                    link.task.cancel()

    # -- connections ------------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._accepted += 1
        if self._mode is FaultMode.DROP:
            self._refused += 1
            writer.transport.abort()
            return
        link = _Link(writer)
        link.task = asyncio.current_task()
        self._links.add(link)
        try:
            await self._serve(link, reader)
        finally:
            self._links.discard(link)
            link.abort()

    async def _serve(self, link: _Link, client_reader: asyncio.StreamReader) -> None:
        # A partitioned network does not let the TCP handshake through either: connect upstream only when
        # bytes may flow, so a client that connects during a stall waits for its CONNACK in silence.
        await self._wait_flowing()
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port), self.connect_timeout
            )
        except (OSError, TimeoutError):
            self._refused += 1
            return
        link.upstream = up_writer
        if self._mode is FaultMode.DROP:  # drop() ran while we were connecting
            return
        pumps = [
            asyncio.create_task(self._pump(client_reader, up_writer, up=True)),
            asyncio.create_task(self._pump(up_reader, link.client, up=False)),
        ]
        try:
            # Either side closing ends the link: MQTT has no use for a half-closed connection.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _wait_flowing(self) -> None:
        assert self._flowing is not None
        await self._flowing.wait()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool) -> None:
        try:
            while True:
                # Waiting before the read stops taking data (asyncio buffers at most its high-water mark,
                # then the sender's TCP window fills); waiting after the read holds back a chunk that was
                # read just before the stall. Either way not one byte reaches the other side.
                await self._wait_flowing()
                data = await reader.read(_CHUNK)
                if not data:
                    return
                await self._wait_flowing()
                writer.write(data)
                await writer.drain()
                if up:
                    self._bytes_up += len(data)
                else:
                    self._bytes_down += len(data)
        except (ConnectionError, OSError):
            return


class FaultProxy:
    """``AsyncFaultProxy`` on its own event loop in a daemon thread, for synchronous callers.

    ``start()`` returns once the proxy listens; ``host``/``port`` are then set. Fault methods block until the
    proxy's loop has switched modes, so a test can rely on the mode being in force when they return.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        connect_timeout: float = 5.0,
        call_timeout: float = 10.0,
    ) -> None:
        self._proxy = AsyncFaultProxy(
            target_host,
            target_port,
            listen_host=listen_host,
            listen_port=listen_port,
            connect_timeout=connect_timeout,
        )
        self.call_timeout = call_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self._proxy.host

    @property
    def port(self) -> int:
        return self._proxy.port

    @property
    def target(self) -> tuple[str, int]:
        return self._proxy.target_host, self._proxy.target_port

    @property
    def mode(self) -> FaultMode:
        return self._proxy.mode

    @property
    def stats(self) -> ProxyStats:
        # Counters are plain ints written by the proxy's thread; a snapshot may be a moment old.
        return self._proxy.stats

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = threading.Thread(
            target=self._run, args=(loop, started), name=f"fault-proxy->{self.target}", daemon=True
        )
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            started.result(timeout=self.call_timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close all connections, stop the loop and join the thread. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            try:
                self._submit(self._proxy.aclose(), loop)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is already closed
                    loop.call_soon_threadsafe(loop.stop)
                thread.join(self.call_timeout)
            if thread.is_alive():
                raise RuntimeError("fault proxy thread did not stop")
        self._loop = self._thread = None

    def pass_through(self) -> None:
        self._call(self._proxy.pass_through)

    def resume(self) -> None:
        self._call(self._proxy.pass_through)

    def stall(self) -> None:
        self._call(self._proxy.stall)

    def drop(self) -> None:
        self._call(self._proxy.drop)

    def set_mode(self, mode: FaultMode) -> None:
        self._call(lambda: self._proxy.set_mode(mode))

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FaultProxy {self.host}:{self.port} -> {self.target} {self.mode.value}>"

    def _call(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None or not self.is_running:
            # Not running: set the mode directly; start() applies it.
            fn()
            return

        async def run() -> None:
            fn()

        self._submit(run(), loop)

    def _submit(self, coro: Coroutine[Any, Any, _T], loop: asyncio.AbstractEventLoop) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(self.call_timeout)

    def _run(self, loop: asyncio.AbstractEventLoop, started: concurrent.futures.Future[None]) -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self._proxy.start())
            except BaseException as exc:  # noqa: BLE001 - thread boundary: the error goes to start()
                started.set_exception(exc)
                return
            started.set_result(None)
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):  # thread boundary: best-effort loop cleanup
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
