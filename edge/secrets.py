"""Secrets (keys, passwords, tokens) are read here and nowhere else, and never from the config file.

Why: the config file is meant to be copied around, diffed and logged; a secret in it leaks with it. On
the gateway, systemd hands secrets to the service with `LoadCredential=name:/etc/credstore/name`: it copies
the file into a private, non-swappable directory readable only by the service and sets
$CREDENTIALS_DIRECTORY. For development and containers, an environment variable works as a fallback (less
safe: the environment is inherited by child processes and readable in /proc by the same user).

Lookup order for a secret called e.g. `pin-key`:

1. the file `$CREDENTIALS_DIRECTORY/pin-key` (one trailing newline is stripped from text secrets);
2. the environment variable `MENWEI_SECRET_PIN_KEY` (name upper-cased, '-' becomes '_').

Values come back wrapped in pydantic's SecretStr / SecretBytes, whose repr and str are masked, so a value
cannot end up in a log line or traceback by accident. Error messages name where we looked, never what we
found.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretBytes, SecretStr

from edge.errors import ConfigError
from edge.redact import register_secret

log = logging.getLogger(__name__)

ENV_PREFIX = "MENWEI_SECRET_"
CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"

# A credential name is a file name in $CREDENTIALS_DIRECTORY and part of an environment variable name:
# no '/', no '.', so it cannot escape the directory and maps to a portable variable name.
CREDENTIAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

_HEX = re.compile(rb"(?:[0-9a-fA-F]{2})+")


def check_credential_name(name: str) -> str:
    """Return name if it is a valid credential name, else raise ValueError (used by the config models too)."""
    if not CREDENTIAL_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a valid credential name: 1-64 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def env_var_name(name: str) -> str:
    """The environment variable consulted for a secret: `pin-key` -> `MENWEI_SECRET_PIN_KEY`."""
    return ENV_PREFIX + name.upper().replace("-", "_")


def read_secret(name: str, *, required: bool = True) -> SecretStr | None:
    """Read a text secret (password, token). None if it is absent and not required.

    Raises ConfigError if it is required and absent, or present but empty or not UTF-8.
    """
    found = _find(name, required=required)
    if found is None:
        return None
    if found.from_file:
        try:
            text = _strip_newline(found.data).decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(
                f"secret {name!r} in {found.source} is not UTF-8 text (binary keys need read_secret_bytes)"
            ) from None
    else:
        text = found.data.decode("utf-8", "surrogateescape")
    register_secret(text)  # redacted from every log line from now on (edge.redact)
    return SecretStr(text)


def read_secret_bytes(name: str, *, required: bool = True, length: int | None = None) -> SecretBytes | None:
    """Read a binary secret (a key). None if it is absent and not required.

    A credential file may hold hex digits (with an optional trailing newline) or the raw bytes; an environment
    variable must hold hex digits. A file that reads as hex is decoded (random raw bytes practically never
    do); any other file is taken raw, byte for byte. With `length`, the key must be exactly that many bytes:
    pass it for keys, so a truncated or mis-encoded key is an error at start-up.
    """
    if length is not None and length < 1:
        raise ValueError("length must be at least 1")
    found = _find(name, required=required)
    if found is None:
        return None
    text = _strip_newline(found.data) if found.from_file else found.data
    if _HEX.fullmatch(text):
        key = bytes.fromhex(text.decode("ascii"))
    elif found.from_file and (length is None or len(found.data) == length):
        key = found.data
    else:
        expected = f"{length} raw bytes or {2 * length} hex digits" if length else "hex digits"
        raise ConfigError(f"secret {name!r} in {found.source} must be {expected}")
    if length is not None and len(key) != length:
        raise ConfigError(
            f"secret {name!r} in {found.source} must be {length} bytes ({2 * length} hex digits), "
            f"it holds {len(key)} bytes"
        )
    register_secret(key)
    return SecretBytes(key)


def credential_file(name: str) -> Path:
    """The file of a credential, for a library that reads a key only from a path (Python's ssl reads TLS
    private keys so). Such a secret must be a file in $CREDENTIALS_DIRECTORY: an environment variable would
    have to be written to disk to be used. Raises ConfigError naming where it looked."""
    try:
        check_credential_name(name)
    except ValueError as err:
        raise ConfigError(f"secret name: {err}") from None
    directory = os.environ.get(CREDENTIALS_DIRECTORY, "")
    if not directory:
        raise ConfigError(
            f"secret {name!r} must be a file in ${CREDENTIALS_DIRECTORY} (systemd LoadCredential=), which is not set"
        )
    path = Path(directory, name)
    if not path.is_file():
        raise ConfigError(f"secret {name!r} is missing: no file {path}")
    return path


@dataclass(frozen=True, slots=True)
class _Found:
    source: str  # where it came from, for messages: a path or "$VARIABLE"; never the value
    data: bytes = field(repr=False)  # kept out of debugger output and assertion rewrites
    from_file: bool = False


def _find(name: str, *, required: bool) -> _Found | None:
    try:
        check_credential_name(name)
    except ValueError as err:
        raise ConfigError(f"secret name: {err}") from None
    variable = env_var_name(name)
    directory = os.environ.get(CREDENTIALS_DIRECTORY, "")
    path = Path(directory, name) if directory else None
    found: _Found | None = None
    if path is not None:
        try:
            found = _Found(str(path), path.read_bytes(), from_file=True)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise ConfigError(
                f"secret {name!r}: cannot read {path}: {err.strerror or type(err).__name__}"
            ) from None
    if found is None and variable in os.environ:
        found = _Found(
            f"${variable}", os.environ[variable].encode("utf-8", "surrogateescape"), from_file=False
        )
    if found is None:
        if not required:
            log.debug("secret %r not configured (optional)", name)
            return None
        where = f"file {path}" if path is not None else f"${CREDENTIALS_DIRECTORY} (not set)"
        raise ConfigError(f"secret {name!r} is missing: looked in {where}, then ${variable} (not set)")
    if not (_strip_newline(found.data) if found.from_file else found.data):
        raise ConfigError(f"secret {name!r} in {found.source} is empty")
    log.debug("secret %r read from %s", name, found.source)
    return found


def _strip_newline(data: bytes) -> bytes:
    """Drop one trailing line ending ('\\n' or '\\r\\n'): `echo secret > file` adds one."""
    if data.endswith(b"\r\n"):
        return data[:-2]
    if data.endswith(b"\n"):
        return data[:-1]
    return data
