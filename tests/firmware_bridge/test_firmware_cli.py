"""`menwei firmware sign | update | status` against a simulated board on a pseudo-terminal."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from firmware_bridge.cli import EXIT_FIRMWARE
from firmware_bridge.testbench import FAST_DEVICE, Bench

from edge.cli import main


def _key_file(key: Ed25519PrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return path


def test_sign_update_and_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = Ed25519PrivateKey.generate()
    image = tmp_path / "fw.bin"
    image.write_bytes(bytes(range(256)) * 40)
    release = tmp_path / "fw.release"
    assert main(["firmware", "sign", str(image), "--key", str(_key_file(key, tmp_path / "k.pem")),
                 "--version", "1.5.0", "-o", str(release)]) == 0  # fmt: skip
    with Bench(release_key=key, config=FAST_DEVICE) as bench:
        assert main(["firmware", "update", "--port", bench.port, "--no-progress", str(release)]) == 0
        assert "firmware 1.5.0 running from slot B and confirmed" in capsys.readouterr().out
        assert main(["firmware", "status", "--port", bench.port]) == 0
        assert "firmware 1.5.0 in slot B" in capsys.readouterr().out


def test_update_with_a_foreign_key_fails_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "fw.bin"
    image.write_bytes(b"\x01" * 3000)
    release = tmp_path / "fw.release"
    foreign = _key_file(Ed25519PrivateKey.generate(), tmp_path / "other.pem")
    assert (
        main(["firmware", "sign", str(image), "--key", str(foreign), "--version", "9", "-o", str(release)])
        == 0
    )
    with Bench(config=FAST_DEVICE) as bench:
        code = main(["firmware", "update", "--port", bench.port, "--no-progress", str(release)])
    assert code == EXIT_FIRMWARE
    assert "bad_signature" in capsys.readouterr().err


def test_demo_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["firmware", "demo", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "relay energised 1x" in out
    assert "refused: bad_signature" in out
    assert "rolled_back" in out
