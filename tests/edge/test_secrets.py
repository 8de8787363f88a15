"""Secrets come from systemd's credentials directory or, failing that, the environment, and never show up in a
repr, a log line or an error message: these tests pin the lookup order and the not-leaking."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.secrets import env_var_name, read_secret, read_secret_bytes

VALUE = "s3cret-hunter2"
KEY = bytes(range(200, 232))  # 32 bytes, not valid UTF-8, not hex


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    for name in list(os.environ):
        if name.startswith("MENWEI_SECRET_"):
            monkeypatch.delenv(name)


@pytest.fixture
def creds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(directory))
    return directory


def secret_text(name: str) -> str:
    value = read_secret(name)
    assert value is not None
    return value.get_secret_value()


def secret_bytes(name: str, length: int | None = None) -> bytes:
    value = read_secret_bytes(name, length=length)
    assert value is not None
    return value.get_secret_value()


def test_env_var_name() -> None:
    assert env_var_name("pin-key") == "MENWEI_SECRET_PIN_KEY"
    assert env_var_name("mqtt_password") == "MENWEI_SECRET_MQTT_PASSWORD"


# --- lookup order ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (VALUE + "\n", VALUE),
        (VALUE + "\r\n", VALUE),
        (VALUE + "\n\n", VALUE + "\n"),  # only one newline goes
        (VALUE, VALUE),
        (" " + VALUE + " \n", " " + VALUE + " "),  # other whitespace is part of the secret
    ],
)
def test_reads_credentials_file(creds: Path, content: str, expected: str) -> None:
    (creds / "api-token").write_bytes(content.encode())
    assert secret_text("api-token") == expected


def test_falls_back_to_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MENWEI_SECRET_API_TOKEN", VALUE)
    assert secret_text("api-token") == VALUE


def test_falls_back_to_environment_when_file_is_absent(creds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (creds / "other").write_text("x")
    monkeypatch.setenv("MENWEI_SECRET_API_TOKEN", VALUE)
    assert secret_text("api-token") == VALUE


def test_credentials_file_wins_over_environment(creds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (creds / "api-token").write_text("from-file\n")
    monkeypatch.setenv("MENWEI_SECRET_API_TOKEN", "from-env")
    assert secret_text("api-token") == "from-file"


def test_missing_secret_names_where_it_looked(creds: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_secret("api-token")
    assert str(info.value) == (
        f"secret 'api-token' is missing: looked in file {creds / 'api-token'}, "
        "then $MENWEI_SECRET_API_TOKEN (not set)"
    )


def test_missing_secret_without_credentials_directory() -> None:
    with pytest.raises(
        ConfigError, match=r"looked in \$CREDENTIALS_DIRECTORY \(not set\), then \$MENWEI_SECRET_X"
    ):
        read_secret_bytes("x", length=32)


def test_optional_secret_may_be_absent(creds: Path) -> None:
    assert read_secret("api-token", required=False) is None
    assert read_secret_bytes("pin-key", required=False, length=32) is None


def test_present_optional_secret_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MENWEI_SECRET_API_TOKEN", VALUE)
    value = read_secret("api-token", required=False)
    assert value is not None
    assert value.get_secret_value() == VALUE


@pytest.mark.parametrize("content", [b"", b"\n", b"\r\n"])
def test_empty_file_is_an_error(creds: Path, content: bytes) -> None:
    (creds / "api-token").write_bytes(content)
    with pytest.raises(ConfigError, match=f"^secret 'api-token' in {creds / 'api-token'} is empty$"):
        read_secret("api-token", required=False)


def test_empty_environment_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MENWEI_SECRET_API_TOKEN", "")
    with pytest.raises(ConfigError, match=r"in \$MENWEI_SECRET_API_TOKEN is empty"):
        read_secret("api-token")


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", ".hidden", "", "pin.key", "-x", "x" * 65])
def test_bad_secret_name_is_rejected(creds: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="is not a valid credential name"):
        read_secret(name)


def test_unreadable_credentials_file(creds: Path) -> None:
    (creds / "api-token").mkdir()
    with pytest.raises(ConfigError, match=f"^secret 'api-token': cannot read {creds / 'api-token'}: "):
        read_secret("api-token")


# --- binary keys -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (KEY, KEY),
        (KEY[:31] + b"\n", KEY[:31] + b"\n"),  # raw bytes are taken as they are, a final newline too
        (KEY.hex().encode() + b"\n", KEY),
        (KEY.hex().upper().encode(), KEY),
    ],
)
def test_key_file_raw_or_hex(creds: Path, content: bytes, expected: bytes) -> None:
    (creds / "pin-key").write_bytes(content)
    assert secret_bytes("pin-key", length=32) == expected


def test_key_from_environment_is_hex(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MENWEI_SECRET_PIN_KEY", KEY.hex())
    assert secret_bytes("pin-key", length=32) == KEY


def test_key_without_length(creds: Path) -> None:
    (creds / "hex").write_bytes(b"00ff10\n")
    (creds / "raw").write_bytes(b"\x00\xffraw\n")
    assert secret_bytes("hex") == b"\x00\xff\x10"
    assert secret_bytes("raw") == b"\x00\xffraw\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (KEY[:16], r"must be 32 raw bytes or 64 hex digits$"),
        (KEY[:16].hex().encode(), r"must be 32 bytes \(64 hex digits\), it holds 16 bytes$"),  # 32 chars
        (KEY + b"\n", r"must be 32 raw bytes or 64 hex digits$"),
        (KEY.hex().encode()[:-1], r"must be 32 raw bytes or 64 hex digits$"),
    ],
)
def test_wrong_key_size_is_an_error(creds: Path, content: bytes, message: str) -> None:
    (creds / "pin-key").write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        read_secret_bytes("pin-key", length=32)


def test_key_in_environment_must_be_hex(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MENWEI_SECRET_PIN_KEY", VALUE)
    with pytest.raises(
        ConfigError, match=r"^secret 'pin-key' in \$MENWEI_SECRET_PIN_KEY must be hex digits$"
    ):
        read_secret_bytes("pin-key")


# --- never leaking -----------------------------------------------------------------------------------------


def test_value_is_not_in_repr_str_or_logs(
    creds: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="edge.secrets")
    (creds / "api-token").write_text(VALUE)
    monkeypatch.setenv("MENWEI_SECRET_PIN_KEY", KEY.hex())
    text = read_secret("api-token")
    key = read_secret_bytes("pin-key", length=32)
    for shown in (repr(text), str(text), f"{text}", repr([text]), repr(key), str(key), repr({"k": key})):
        assert VALUE not in shown
        assert KEY.hex() not in shown
        assert repr(KEY) not in shown
    assert f"read from {creds / 'api-token'}" in caplog.text  # it logs where from...
    assert VALUE not in caplog.text  # ...never what
    assert KEY.hex() not in caplog.text


def test_errors_do_not_carry_the_value(creds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (creds / "binary").write_bytes(b"\xff" + VALUE.encode())
    (creds / "short-key").write_bytes(VALUE.encode())
    monkeypatch.setenv("MENWEI_SECRET_ENV_KEY", VALUE)
    attempts: list[Callable[[], object]] = [
        lambda: read_secret("binary"),
        lambda: read_secret_bytes("short-key", length=32),
        lambda: read_secret_bytes("env-key"),
    ]
    for attempt in attempts:
        with pytest.raises(ConfigError) as info:
            attempt()
        assert VALUE not in str(info.value)
        assert info.value.__cause__ is None
        # no chained exception that could quote the bytes in a traceback
        assert info.value.__context__ is None or info.value.__suppress_context__
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        read_secret("binary")
