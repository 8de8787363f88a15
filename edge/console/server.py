"""Serving the console with uvicorn on the gateway's own event loop (`menwei run`, `menwei demo`).

Why on the same loop: the endpoints call the gateway (present, open_door, set_mode) and read its bus
directly, and the gateway's state is only ever touched from its loop. Blocking work in the endpoints
(SQLite, argon2) goes to threads, so requests never stall the doors.

Three things uvicorn does for a stand-alone server are wrong inside the gateway, and are changed here:
- `Server.serve()` installs its own SIGTERM/SIGINT handlers with signal.signal, replacing the gateway's
  (loop.add_signal_handler) until it returns, and re-raises the signal afterwards. `EmbeddedServer` keeps
  the gateway's handlers: `menwei run` decides when to stop, and stops the console first.
- A port that is taken makes uvicorn log and `sys.exit()` inside its task. The socket is bound here instead,
  before anything else starts, so a taken port is a clear error at start-up.
- TLS: the context is built here (TLS 1.2 at least), from the certificate file and the key credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from edge.config import ConsoleSection
from edge.console.api_events import close_recent_events, recent_events
from edge.console.app import create_app
from edge.console.settings import ConsoleSettings
from edge.errors import ConfigError
from edge.gateway import Gateway
from edge.secrets import credential_file

log = logging.getLogger(__name__)

# Seconds an open request (e.g. a slow download) may take to finish once the console stops; live event
# streams end by themselves at once.
GRACEFUL_SECONDS = 3


def settings_from(section: ConsoleSection) -> ConsoleSettings:
    return ConsoleSettings(
        session_seconds=section.session_hours * 3600,
        max_failures=section.max_failures,
        lockout_seconds=section.lockout_minutes * 60,
        secure_cookies=section.tls,
        min_password_length=section.min_password_length,
    )


def key_file(credential: str) -> Path:
    """The file of the TLS key credential (edge.secrets.credential_file: Python's ssl reads keys only from
    files, so it must be a file in $CREDENTIALS_DIRECTORY, not an environment variable)."""
    try:
        return credential_file(credential)
    except ConfigError as err:
        raise ConfigError(f"console: TLS key: {err}") from None


def tls_context(cert_file: Path, key: Path) -> ssl.SSLContext:
    """A server context for the console; ConfigError (naming the files, not their contents) if unusable."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key)
    except FileNotFoundError:
        raise ConfigError(f"console: TLS certificate file {cert_file} does not exist") from None
    except (ssl.SSLError, OSError) as err:
        raise ConfigError(
            f"console: cannot use TLS certificate {cert_file} with key {key}: {err.strerror or err}"
        ) from None
    return context


class EmbeddedServer(uvicorn.Server):
    """uvicorn's server without its signal handling: the host program owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True, slots=True)
class Listening:
    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"


class ConsoleServer:
    """The console app served on the running loop. `start()` binds and begins serving; `stop()` ends the live
    streams, then the server. Start it after `gateway.start()`, stop it before `gateway.stop()`."""

    def __init__(
        self,
        gateway: Gateway,
        section: ConsoleSection,
        *,
        app_factory: Callable[[Gateway, ConsoleSettings], FastAPI] = create_app,
    ) -> None:
        self.gateway = gateway
        self.section = section
        self._app_factory = app_factory
        self.app: FastAPI | None = None
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.listening: Listening | None = None

    async def start(self) -> Listening:
        section = self.section
        context: ssl.SSLContext | None = None
        if section.tls_cert_file is not None and section.tls_key_credential is not None:
            context = tls_context(section.tls_cert_file, key_file(section.tls_key_credential))
        elif not ipaddress.ip_address(section.address).is_loopback:
            log.warning(
                "console on %s:%d without TLS: passwords and session cookies cross the network in clear; "
                "set [console] tls_cert_file and tls_key_credential",
                section.address,
                section.port,
            )
        sock = _bind(section.address, section.port)
        try:
            self.app = self._app_factory(self.gateway, settings_from(section))
            # The recent events are in memory before the first guard asks (edge/console/recent.py).
            await recent_events(self.app.state.console)
            config = uvicorn.Config(
                self.app,
                log_config=None,  # the gateway's logging stays as it is
                lifespan="off",  # the gateway's life cycle is menwei's, not the app's
                access_log=False,  # operator actions are audited events; per-request lines would drown them
                proxy_headers=False,  # the client address (login lock-out) is the peer's, not a header's
                server_header=False,
                timeout_graceful_shutdown=GRACEFUL_SECONDS,
                ssl_context_factory=(lambda _config, _default: context) if context is not None else None,
                # http "auto": httptools (the console extra), else h11. The C parser costs the doors' loop a
                # quarter less CPU per request (bench/bench_console.py). No limit_concurrency: uvicorn counts
                # open connections (kept-alive tabs, live feeds) against it and answers 503, even to logins.
            )
            config.load()
            self._server = EmbeddedServer(config)
            self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
            self._task.add_done_callback(_ended)
        except BaseException:
            sock.close()
            if self.app is not None:
                await close_recent_events(self.app.state.console)
            raise
        host, port = sock.getsockname()[:2]
        self.listening = Listening(host, port, context is not None)
        log.info("guard console at %s", self.listening.url)
        return self.listening

    def attach_cloud(self, cloud: object) -> None:
        """The cloud link once it runs (anything with a `connected` property), for GET /api/health."""
        if self.app is not None:
            self.app.state.console.cloud = cloud

    async def stop(self) -> None:
        """End the live event streams, then the server (open requests get GRACEFUL_SECONDS). Safe to call twice."""
        if self.app is not None:
            console = self.app.state.console
            console.closing.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            task, self._task = self._task, None
            await task
        if self.app is not None:
            await close_recent_events(self.app.state.console)


def _ended(task: asyncio.Task[None]) -> None:
    # The doors do not depend on the console: if it fails, the gateway keeps running and says so.
    if not task.cancelled() and task.exception() is not None:
        log.error("the guard console stopped: %r", task.exception(), exc_info=task.exception())


def _bind(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    try:
        sock = socket.create_server((address, port), family=family, backlog=128)
    except OSError as err:
        raise ConfigError(
            f"console: cannot listen on {address}:{port}: {err.strerror or err} "
            "(another program on that port? see [console] address and port)"
        ) from None
    # Accepted connections inherit it (Linux). asyncio sets TCP_NODELAY only on sockets whose proto is
    # IPPROTO_TCP, and create_server's is 0: without this, a response written as headers then body waits for
    # the client's delayed ACK, about 40 ms per request on a kept-alive connection (bench/bench_console.py).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock
