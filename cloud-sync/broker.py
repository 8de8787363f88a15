"""A real Mosquitto broker run as a child process, for tests and the demo.

Cloud-sync faults that matter (a broker crash, a restart that must keep persistent sessions, TLS and password
refusals, oversize packets) only show against a real broker, so the test suite starts its own Mosquitto rather
than mocking one. ``LocalBroker`` writes a config into a working directory, starts ``mosquitto -c`` on a free
loopback port, and keeps that port across ``kill()``/``restart()`` so clients reconnect to the same address,
exactly as they would to a cloud broker that came back.

Mosquitto quirks this module handles (see shared PITFALLS.md, MQTT section):

* Started as root, mosquitto drops privileges to the ``mosquitto`` user, which then cannot write the
  persistence file in our directory, and sessions are silently lost on restart. When we run as root the
  config says ``user root``; as any other user mosquitto does not switch users at all.
* Since 2.0 a listener without ``allow_anonymous`` refuses anonymous clients, so it is always written out.
* Persistence is written on a clean shutdown (SIGTERM) and every ``autosave_interval`` seconds; a SIGKILL
  (``kill()``) loses whatever changed since the last save, as a real crash would. For crash tests that must
  keep state, pass ``autosave_on_changes=True, autosave_interval=1``: mosquitto then saves after every
  change (but only on its next loop turn, i.e. shortly after the PUBACK, not before it).
* Password files are hashed by ``mosquitto_passwd`` (shipped with the Debian ``mosquitto`` package); without
  it, ``users=`` raises ``BrokerError`` rather than writing a format mosquitto might misread.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["BrokerError", "BrokerTls", "LocalBroker", "free_port", "mosquitto_available"]

HOST = "127.0.0.1"
_RUNNING = re.compile(rb"mosquitto version \S+ running")


class BrokerError(RuntimeError):
    """The broker could not be configured, started or stopped."""


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """Files for the broker's TLS listener.

    With ``require_certificate`` (the default) clients must present a certificate signed by ``cafile``: mutual
    TLS. With ``use_identity_as_username`` the certificate's common name becomes the MQTT user name and no
    password is asked for, even when the broker has a password file.
    """

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = True
    use_identity_as_username: bool = False


def mosquitto_available(executable: str = "mosquitto") -> bool:
    """Whether a mosquitto broker can be started (its binary is on PATH or in /usr/sbin)."""
    return _find(executable) is not None


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that was free a moment ago (the OS picks it; the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _find(executable: str) -> str | None:
    # Debian installs mosquitto in /usr/sbin, which is not on every user's PATH.
    return shutil.which(executable) or shutil.which(executable, path="/usr/sbin:/usr/local/sbin")


def _quote(path: Path) -> str:
    text = str(path)
    if any(c in text for c in "\n\r"):
        raise BrokerError(f"path {text!r} cannot be written into a mosquitto config")
    return text


class LocalBroker:
    """A mosquitto child process with a generated config in ``workdir``.

    Files in ``workdir``: ``mosquitto.conf``, ``mosquitto.log`` (the broker's log), ``mosquitto.out`` (its
    stdout/stderr, where config errors go before the log is open), ``passwd`` when ``users`` are given, and
    the persistence database ``mosquitto.db``.

    Ports are chosen once, in the constructor, unless given; every (re)start uses the same ones.
    ``extra_config`` is appended verbatim; it must not move ``log_dest``, which ``start()`` reads to know
    when the broker is ready.
    """

    def __init__(
        self,
        workdir: Path | str,
        *,
        port: int | None = None,
        allow_anonymous: bool = True,
        users: Mapping[str, str] | None = None,
        tls: BrokerTls | None = None,
        tls_port: int | None = None,
        max_packet_size: int | None = None,
        persistence: bool = True,
        autosave_interval: int | None = None,
        autosave_on_changes: bool = False,
        extra_config: str = "",
        start_timeout: float = 10.0,
        executable: str = "mosquitto",
    ) -> None:
        if max_packet_size is not None and max_packet_size < 20:
            raise ValueError("max_packet_size below 20 bytes would refuse CONNECT packets")
        self.workdir = Path(workdir)
        self.host = HOST
        self.port = port if port is not None else free_port()
        self.tls = tls
        self.tls_port: int | None = None
        if tls is not None:
            self.tls_port = tls_port if tls_port is not None else free_port()
        self.allow_anonymous = allow_anonymous
        self.users = dict(users or {})
        self.max_packet_size = max_packet_size
        self.persistence = persistence
        self.autosave_interval = autosave_interval
        self.autosave_on_changes = autosave_on_changes
        self.extra_config = extra_config
        self.start_timeout = start_timeout
        self.executable = executable
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.out_path = self.workdir / "mosquitto.out"
        self.passwd_path = self.workdir / "passwd"
        self.db_path = self.workdir / "mosquitto.db"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.is_running and self._proc is not None else None

    def start(self) -> None:
        """Write the config, start mosquitto and wait until it reports running (every listener bound).

        Raises ``BrokerError`` with the tail of the log if mosquitto exits or does not listen within
        ``start_timeout`` seconds.
        """
        if self.is_running:
            return
        binary = _find(self.executable)
        if binary is None:
            raise BrokerError(f"{self.executable!r} not found; install the Debian package 'mosquitto'")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.users:
            self._write_passwords()
        self.conf_path.write_text(self.config_text())
        log_offset = self._log_size()
        with self.out_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [binary, "-c", str(self.conf_path)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_running(log_offset)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM): mosquitto saves persistence and closes client connections."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Stop at once (SIGKILL), as a crash would: unsaved persistence is lost."""
        self._signal(signal.SIGKILL, 10.0)

    def restart(self) -> None:
        """Graceful stop, then start on the same ports."""
        self.stop()
        self.start()

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
        state = "running" if self.is_running else "stopped"
        return f"<LocalBroker {self.host}:{self.port} tls={self.tls_port} {state}>"

    # -- config ------------------------------------------------------------------------------------------

    def config_text(self) -> str:
        """The mosquitto.conf this broker starts with."""
        lines = [
            "# Generated by cloud_sync.broker.LocalBroker; rewritten on every start.",
            "per_listener_settings false",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            f"log_dest file {_quote(self.log_path)}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # Otherwise mosquitto switches to the 'mosquitto' user and cannot write our persistence file.
            lines.append("user root")
        if self.persistence:
            # persistence_location must end with a slash: mosquitto concatenates it with the file name.
            lines += [
                "persistence true",
                f"persistence_location {_quote(self.workdir.resolve())}/",
                f"persistence_file {self.db_path.name}",
            ]
            if self.autosave_interval is not None:
                lines.append(f"autosave_interval {self.autosave_interval}")
            if self.autosave_on_changes:
                lines.append("autosave_on_changes true")
        else:
            lines.append("persistence false")
        if self.users:
            lines.append(f"password_file {_quote(self.passwd_path.resolve())}")
        if self.max_packet_size is not None:
            lines.append(f"max_packet_size {self.max_packet_size}")
        lines.append(f"listener {self.port} {self.host}")
        if self.tls is not None:
            tls = self.tls
            lines += [
                f"listener {self.tls_port} {self.host}",
                f"cafile {_quote(tls.cafile.resolve())}",
                f"certfile {_quote(tls.certfile.resolve())}",
                f"keyfile {_quote(tls.keyfile.resolve())}",
                f"require_certificate {'true' if tls.require_certificate else 'false'}",
                f"use_identity_as_username {'true' if tls.use_identity_as_username else 'false'}",
            ]
        if self.extra_config:
            lines.append(self.extra_config.rstrip("\n"))
        return "\n".join(lines) + "\n"

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the broker's stdout/stderr and log file, for error messages."""
        parts = []
        for path in (self.out_path, self.log_path):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts) or "(no output)"

    # -- internals ---------------------------------------------------------------------------------------

    def _write_passwords(self) -> None:
        tool = _find("mosquitto_passwd")
        if tool is None:
            raise BrokerError("users= needs mosquitto_passwd (Debian package 'mosquitto') to hash passwords")
        self.passwd_path.unlink(missing_ok=True)
        self.passwd_path.touch(mode=0o600)
        for user, password in self.users.items():
            if ":" in user or not user:
                raise BrokerError(f"user name {user!r} cannot go into a mosquitto password file")
            result = subprocess.run(
                [tool, "-b", str(self.passwd_path), user, password],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise BrokerError(f"mosquitto_passwd failed for {user!r}: {result.stderr or result.stdout}")

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _wait_running(self, log_offset: int) -> None:
        # Readiness comes from the log, not from probing the ports: a probe would also succeed against
        # another process that holds the port, and mosquitto writes "running" only after every listener is
        # bound. (A probe also litters the log with failed-handshake lines on the TLS port.)
        deadline = time.monotonic() + self.start_timeout
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                self._proc = None
                raise BrokerError(f"mosquitto exited with code {code} during start\n{self.log_tail()}")
            with contextlib.suppress(FileNotFoundError), self.log_path.open("rb") as log:
                log.seek(log_offset)
                if _RUNNING.search(log.read()):
                    return
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"mosquitto did not report running within {self.start_timeout} s\n{self.log_tail()}"
                )
            time.sleep(0.01)

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10.0)
                self._proc = None
                raise BrokerError(f"mosquitto ignored {sig.name} for {timeout} s and was killed") from None
        self._proc = None
