"""The console served by real uvicorn on the test's own loop: live events over SSE, HTTPS with a test CA,
a taken port, the signal handlers left alone, and `menwei run` with a [console] section."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import ipaddress
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cloud_sync.broker import LocalBroker
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from drivers.sim.reader import SimulatedReader
from edge.config import ConsoleSection
from edge.console.server import ConsoleServer, _bind, settings_from
from edge.demo import run_demo
from edge.demo_data import ZHANG_CARD
from edge.errors import ConfigError
from edge.gateway import Gateway
from edge.model import CredentialKind
from tests.demo_site import demo_config
from tests.edge.console.console_helpers import ADMIN_PASSWORD, ROOT, logged_setup_code

LOOPBACK = ConsoleSection(address="127.0.0.1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def on_any_port(section: ConsoleSection) -> ConsoleSection:
    return section.model_copy(update={"port": 0})  # the kernel picks; the server reports which


@pytest.fixture
async def served(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[tuple[ConsoleServer, str]]:
    caplog.set_level(logging.WARNING, logger="edge.console.auth")
    server = ConsoleServer(gateway, on_any_port(LOOPBACK))
    listening = await server.start()
    yield server, listening.url.rstrip("/")
    await server.stop()


async def set_up_admin(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> httpx.Response:
    # The code was logged when the server started: in the test or in a fixture (the setup phase).
    code = logged_setup_code(caplog) or next(
        (found for found in (_code_in(r) for r in caplog.get_records("setup")) if found), None
    )
    assert code is not None
    response = await client.post(
        "/api/setup", json={"code": code, "username": "admin", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 201, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return response


def _code_in(record: logging.LogRecord) -> str | None:
    found = re.search(r"setup code (\S+)", record.getMessage())
    return found.group(1) if found else None


# --- config -------------------------------------------------------------------------------------------------


def test_settings_come_from_the_section() -> None:
    section = ConsoleSection(session_hours=2, max_failures=3, lockout_minutes=1.5, min_password_length=16)
    settings = settings_from(section)
    assert settings.session_seconds == 7200 and settings.max_failures == 3
    assert settings.lockout_seconds == 90 and settings.min_password_length == 16
    assert settings.secure_cookies is False
    tls = ConsoleSection(tls_cert_file=Path("/etc/menwei/console.crt"), tls_key_credential="console-key")
    assert settings_from(tls).secure_cookies is True


def test_the_section_refuses_half_a_tls_setup_and_a_bad_address() -> None:
    with pytest.raises(ValidationError, match="both tls_cert_file and tls_key_credential"):
        ConsoleSection(tls_cert_file=Path("/etc/menwei/console.crt"))
    with pytest.raises(ValidationError, match="both tls_cert_file and tls_key_credential"):
        ConsoleSection(tls_key_credential="console-key")
    with pytest.raises(ValidationError, match="not an IP address"):
        ConsoleSection(address="gateway.local")
    with pytest.raises(ValidationError, match="greater than or equal to 8"):
        ConsoleSection(min_password_length=4)


# --- served over HTTP ---------------------------------------------------------------------------------------


async def test_a_card_read_arrives_on_the_live_stream(
    served: tuple[ConsoleServer, str], gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    server, url = served
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await set_up_admin(client, caplog)
        assert "Secure" not in response.headers["set-cookie"]  # plain HTTP on loopback: not Secure
        async with client.stream("GET", "/api/events/stream") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            assert await anext(lines) == "retry: 3000"  # the server is subscribed to the bus now
            reader = gateway.devices.readers["main-gate-in"]
            assert isinstance(reader, SimulatedReader)
            reader.present(CredentialKind.CARD, ZHANG_CARD)
            event_line = ""
            while not event_line.startswith("event: decision"):
                event_line = await anext(lines)
            data = await anext(lines)
            assert data.startswith("data: {") and '"reader":"main-gate-in"' in data
            assert '"granted":true' in data
            # Stopping the server ends the open stream instead of waiting on it.
            await server.stop()
            rest = [line async for line in lines]
            assert all(not line.startswith("event: ") or "decision" not in line for line in rest)


async def test_the_page_and_the_refusals_over_real_http(served: tuple[ConsoleServer, str]) -> None:
    _, url = served
    async with httpx.AsyncClient(base_url=url) as client:
        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "server" not in page.headers  # uvicorn does not announce itself
        assert (await client.get("/api/session")).status_code == 401
        assert (await client.get("/api/events/stream")).status_code == 401


def test_the_listening_socket_sends_small_responses_at_once() -> None:
    # TCP_NODELAY, inherited by accepted connections: otherwise every kept-alive response waits ~40 ms for the
    # client's delayed ACK (found by bench/bench_console.py).
    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()


async def test_serving_leaves_the_signal_handlers_alone(gateway: Gateway) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = ConsoleServer(gateway, on_any_port(LOOPBACK))
    await server.start()
    try:
        for _ in range(20):  # let uvicorn's serve() get going
            await asyncio.sleep(0.01)
        assert {sig: signal.getsignal(sig) for sig in before} == before
    finally:
        await server.stop()
    assert {sig: signal.getsignal(sig) for sig in before} == before


async def test_a_taken_port_fails_the_start_clearly(gateway: Gateway) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ConsoleServer(gateway, LOOPBACK.model_copy(update={"port": port}))
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            await server.start()
        await server.stop()  # harmless after a failed start


async def test_plain_http_on_the_network_is_warned_about(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.console.server")
    server = ConsoleServer(gateway, on_any_port(ConsoleSection(address="0.0.0.0")))
    await server.start()
    await server.stop()
    assert any("without TLS" in r.getMessage() for r in caplog.records)
    caplog.clear()
    server = ConsoleServer(gateway, on_any_port(LOOPBACK))
    await server.start()
    await server.stop()
    assert not any("without TLS" in r.getMessage() for r in caplog.records)


# --- served over HTTPS --------------------------------------------------------------------------------------


def make_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 it signed: (ca.pem, server.pem, server.key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "menwei test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_file, cert_file, key_file


@pytest.fixture
def tls_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ConsoleSection, Path]:
    pki = tmp_path / "pki"
    pki.mkdir()
    ca_file, cert_file, key_file = make_pki(pki)
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    key_file.rename(credentials / "console-tls-key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    section = ConsoleSection(
        address="127.0.0.1", port=1, tls_cert_file=cert_file, tls_key_credential="console-tls-key"
    )
    return on_any_port(section), ca_file


async def test_https_with_secure_cookies(
    gateway: Gateway, tls_section: tuple[ConsoleSection, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.console")
    section, ca_file = tls_section
    server = ConsoleServer(gateway, section)
    listening = await server.start()
    assert listening.tls and listening.url.startswith("https://127.0.0.1:")
    try:
        trust = ssl.create_default_context(cafile=str(ca_file))
        async with httpx.AsyncClient(base_url=listening.url, verify=trust) as client:
            response = await set_up_admin(client, caplog)
            cookie = response.headers["set-cookie"]
            assert "menwei_session=" in cookie
            assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
            session = await client.get("/api/session")
            assert session.status_code == 200 and session.json()["username"] == "admin"
        # A client that does not trust the test CA does not get through.
        async with httpx.AsyncClient(base_url=listening.url) as stranger:
            with pytest.raises(httpx.ConnectError):
                await stranger.get("/")
    finally:
        await server.stop()
    assert not any("without TLS" in r.getMessage() for r in caplog.records)


async def test_a_missing_key_credential_fails_the_start(
    gateway: Gateway, tls_section: tuple[ConsoleSection, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    section, _ = tls_section
    wrong = section.model_copy(update={"tls_key_credential": "no-such-key"})
    with pytest.raises(ConfigError, match="console: TLS key: secret 'no-such-key' is missing: no file "):
        await ConsoleServer(gateway, wrong).start()
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY"):
        await ConsoleServer(gateway, section).start()


async def test_a_key_that_does_not_match_the_certificate_fails_the_start(
    gateway: Gateway, tls_section: tuple[ConsoleSection, Path], tmp_path: Path
) -> None:
    section, _ = tls_section
    other = tmp_path / "other"
    other.mkdir()
    _, _, other_key = make_pki(other)
    (Path(os.environ["CREDENTIALS_DIRECTORY"]) / "console-tls-key").write_bytes(other_key.read_bytes())
    with pytest.raises(ConfigError, match="cannot use TLS certificate"):
        await ConsoleServer(gateway, section).start()


# --- menwei run ---------------------------------------------------------------------------------------------


def test_menwei_run_serves_the_console_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "gateway.toml"
    demo = (ROOT / "config" / "demo.toml").read_text()
    config.write_text(
        demo.replace('data_dir = "../var/demo"', f'data_dir = "{tmp_path}"')
        + f'\n[console]\naddress = "127.0.0.1"\nport = {port}\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        page: httpx.Response | None = None
        while page is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/")
            except httpx.TransportError:
                time.sleep(0.1)
        assert page is not None and page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        session = httpx.get(f"http://127.0.0.1:{port}/api/session")
        assert session.status_code == 401 and session.json() == {"detail": "not logged in"}
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"guard console at http://127.0.0.1:{port}/" in err
    assert "one-time setup code" in err
    assert "gateway stopped" in err


def test_menwei_run_fails_clearly_on_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "gateway.toml"
        demo = (ROOT / "config" / "demo.toml").read_text()
        config.write_text(
            demo.replace('data_dir = "../var/demo"', f'data_dir = "{tmp_path}"')
            + f'\n[console]\naddress = "127.0.0.1"\nport = {port}\n'
        )
        result = subprocess.run(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
            cwd=ROOT,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


# --- menwei demo --------------------------------------------------------------------------------------------


async def test_the_demo_serves_the_console_on_loopback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.console.auth")
    port = free_port()
    out = io.StringIO()
    config = demo_config(tmp_path)  # no [mqtt]: the offline demo
    demo = asyncio.ensure_future(run_demo(config, seconds=6, out=out, pace=0.2, console_port=port))
    try:
        page: httpx.Response | None = None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(300):
                try:
                    page = await client.get("/")
                    break
                except httpx.TransportError:
                    assert not demo.done(), out.getvalue()
                    await asyncio.sleep(0.05)
            assert page is not None and page.status_code == 200
            code = logged_setup_code(caplog)
            assert code is not None
            setup = await client.post(
                "/api/setup", json={"code": code, "username": "admin", "password": ADMIN_PASSWORD}
            )
            assert setup.status_code == 201, setup.text
            doors = await client.get("/api/doors")
            assert {d["id"] for d in doors.json()} == {"main-gate", "side-door", "lobby-a"}
    finally:
        assert await demo == 0
    assert f"guard console: open http://127.0.0.1:{port}/ in a browser" in out.getvalue()


def test_menwei_run_reports_the_cloud_link_in_health(tmp_path: Path) -> None:
    """`menwei run` with [console] and [mqtt]: the console's health shows the real link to a real broker."""
    port = free_port()
    with LocalBroker(tmp_path / "broker", persistence=False) as broker:
        config = tmp_path / "gateway.toml"
        demo = (ROOT / "config" / "demo.toml").read_text()
        config.write_text(
            demo.replace('data_dir = "../var/demo"', f'data_dir = "{tmp_path / "data"}"')
            + f'\n[console]\naddress = "127.0.0.1"\nport = {port}\n'
            + f'\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        )
        log = tmp_path / "stderr.log"
        with log.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
                cwd=ROOT,
            )
        try:
            deadline = time.monotonic() + 60
            code = None
            while code is None and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                found = re.search(r"setup code (\S+)", log.read_text())
                code = found.group(1) if found else None
                time.sleep(0.1)
            assert code is not None, log.read_text()
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                setup = client.post(
                    "/api/setup", json={"code": code, "username": "admin", "password": ADMIN_PASSWORD}
                )
                assert setup.status_code == 201, setup.text
                client.headers["X-CSRF-Token"] = setup.json()["csrf_token"]
                sync: dict[str, object] = {}
                while sync.get("connected") is not True and time.monotonic() < deadline:
                    sync = client.get("/api/health").json()["sync"]
                    time.sleep(0.2)
                assert sync["configured"] is True and sync["connected"] is True, sync
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, log.read_text()
