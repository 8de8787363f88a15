"""A `ble` reader from the config: the fallback phone keys come from a credential ('key-id hex-key' per line), a
malformed key file is a ConfigError at start-up, and without one the reader waits for the cloud's ble/keys."""

from __future__ import annotations

import tomllib
from pathlib import Path

import bleak  # noqa: F401 (scripts/setup installs it; a missing one must fail)
import pytest

from drivers.ble.reader import BleReader
from drivers.ble.token import payload
from edge.config import GatewayConfig
from edge.devices import build_devices
from edge.errors import ConfigError
from edge.secrets import env_var_name

ROOT = Path(__file__).resolve().parents[3]
KEY = bytes(range(32))


def config(tmp_path: Path) -> GatewayConfig:
    data = tomllib.loads((ROOT / "config" / "demo.toml").read_text(encoding="utf-8"))
    data["gateway"]["data_dir"] = str(tmp_path)
    data["readers"].append(
        {
            "type": "ble",
            "id": "lobby-ble",
            "door": "lobby-a",
            "keys_credential": "phone-keys",
            "rssi_threshold": -60,
        }
    )
    return GatewayConfig.model_validate(data)


def test_keys_from_a_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "phone-keys").write_text(
        f"# resident phone keys\nk-zhang {KEY.hex()}\n\nk-li {'ab' * 32}  # spare\n"
    )
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.delenv(env_var_name("phone-keys"), raising=False)
    reader = build_devices(config(tmp_path)).readers["lobby-ble"]
    assert isinstance(reader, BleReader)
    assert reader.rssi_threshold == -60
    assert reader.verifier.verify(payload(KEY, 1_764_000_000), 1_764_000_000) == "k-zhang"


@pytest.mark.parametrize("text", ["k-zhang\n", f"k-zhang {KEY.hex()[:-2]}\n", "k-zhang zz\n"])
def test_a_malformed_key_file_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "phone-keys").write_text(text)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.delenv(env_var_name("phone-keys"), raising=False)
    with pytest.raises(ConfigError, match="line 1"):
        build_devices(config(tmp_path))


def test_without_a_key_file_the_reader_waits_for_the_cloud_keys(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    readers = [
        r.model_copy(update={"keys_credential": None}) if r.id == "lobby-ble" else r for r in cfg.readers
    ]
    reader = build_devices(cfg.model_copy(update={"readers": readers})).readers["lobby-ble"]
    assert isinstance(reader, BleReader)
    assert reader.verifier.verify(payload(KEY, 1_764_000_000), 1_764_000_000) is None  # no key until ble/keys
