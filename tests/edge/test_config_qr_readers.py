"""QR pass readers in the config file: the three kinds parse with their defaults, mistakes are reported by key,
a camera password never sits in the file, and build_devices makes the right drivers (OpenCV only for the
camera, and checked at start-up)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from drivers.qr.camera import QrCameraReader, shown
from drivers.qr.line_scanner import LineScannerReader, SerialScannerReader
from edge import config
from edge.config import GatewayConfig, load_config
from edge.devices import build_devices, camera_source
from edge.errors import ConfigError

BASE = """\
[site]
id = "test-site"
name = "Test site"
timezone = "Asia/Shanghai"

[gateway]
id = "gw-1"

[[controllers]]
type = "simulated"
id = "sim"
outputs = 2
inputs = 0

[[doors]]
id = "gate"
name = "Gate"
controller = "sim"
output = 1
"""

CAMERA = """
[[readers]]
type = "qr-camera"
id = "gate-cam"
door = "gate"
source = {source}
"""

SERIAL = """
[[readers]]
type = "serial-scanner"
id = "desk"
door = "gate"
port = "/dev/ttyACM0"
"""

WEDGE = """
[[readers]]
type = "line-scanner"
id = "booth"
door = "gate"
direction = "out"
path = "/dev/tty8"
"""


def load(tmp_path: Path, text: str) -> GatewayConfig:
    path = tmp_path / "site.toml"
    path.write_text(BASE + text, encoding="utf-8")
    return load_config(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return [line.split(": ", 1)[1] for line in str(info.value).splitlines()]


def test_the_three_kinds_with_their_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, CAMERA.format(source="0") + SERIAL + WEDGE)
    camera, serial, wedge = cfg.readers
    assert isinstance(camera, config.QrCameraReader)
    assert isinstance(serial, config.SerialScannerReader)
    assert isinstance(wedge, config.LineScannerReader)
    assert (camera.type, camera.source, camera.fps, camera.password_credential) == (
        "qr-camera",
        0,
        10.0,
        None,
    )
    assert (serial.type, serial.port, serial.baudrate) == ("serial-scanner", "/dev/ttyACM0", 9600)
    assert (wedge.type, wedge.path) == ("line-scanner", Path("/dev/tty8"))
    site = cfg.to_site()
    assert {r.id: (r.door_id, r.direction.value) for r in site.readers.values()} == {
        "gate-cam": ("gate", "in"),
        "desk": ("gate", "in"),
        "booth": ("gate", "out"),
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CAMERA.format(source="0") + "fps = 0\n", "readers[0].fps: Input should be greater than 0"),
        (CAMERA.format(source="0") + "port = 1\n", "readers[0].port: unknown key"),
        (CAMERA.format(source='""'), "readers[0].source"),
        (SERIAL + "baudrate = 9600.0\n", "readers[0].baudrate: Input should be a valid integer"),
        (SERIAL.replace('port = "/dev/ttyACM0"\n', ""), "readers[0].port: missing required key"),
        (WEDGE.replace('path = "/dev/tty8"\n', ""), "readers[0].path: missing required key"),
        (WEDGE.replace('"line-scanner"', '"barcode"'), "readers[0].type: unknown type 'barcode'"),
        (
            CAMERA.format(source='"rtsp://admin:hunter2@10.0.0.5/live"'),
            "a password in the URL is a secret in the config file",
        ),
        (
            CAMERA.format(source='"rtsp://10.0.0.5/live"') + 'password_credential = "cam-pw"\n',
            "password_credential needs a source URL with a user name",
        ),
    ],
)
def test_mistakes_are_reported_by_key(tmp_path: Path, text: str, expected: str) -> None:
    lines = problems(tmp_path, text)
    assert any(expected in line for line in lines), lines
    assert not any("hunter2" in line for line in lines)


def test_build_devices_makes_the_drivers(tmp_path: Path) -> None:
    cfg = load(tmp_path, CAMERA.format(source=f'"{tmp_path}"') + SERIAL + WEDGE)
    readers = build_devices(cfg).readers
    camera, desk = readers["gate-cam"], readers["desk"]
    assert isinstance(camera, QrCameraReader) and isinstance(readers["booth"], LineScannerReader)
    assert isinstance(desk, SerialScannerReader) and (desk.port, desk.baudrate) == ("/dev/ttyACM0", 9600)
    camera_cfg = cfg.readers[0]
    assert isinstance(camera_cfg, config.QrCameraReader) and camera_source(camera_cfg) == tmp_path


def test_camera_password_comes_from_a_credential_and_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MENWEI_SECRET_CAM_PW", "p@ss:/word")
    text = CAMERA.format(source='"rtsp://viewer@10.0.0.5:554/live"') + 'password_credential = "cam-pw"\n'
    cfg = load(tmp_path, text)
    camera_cfg = cfg.readers[0]
    assert isinstance(camera_cfg, config.QrCameraReader)
    url = camera_source(camera_cfg)
    assert url == "rtsp://viewer:p%40ss%3A%2Fword@10.0.0.5:554/live"
    assert shown(url) == "rtsp://viewer:***@10.0.0.5:554/live"
    monkeypatch.delenv("MENWEI_SECRET_CAM_PW")
    with pytest.raises(ConfigError, match="cam-pw"):
        build_devices(cfg)


def test_a_camera_without_opencv_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "cv2" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError, match=r"readers\[0\]: type 'qr-camera' needs OpenCV"):
        build_devices(load(tmp_path, CAMERA.format(source="0")))
    build_devices(load(tmp_path, SERIAL + WEDGE))  # the scanners do not need it


def test_a_spool_folder_camera(tmp_path: Path) -> None:
    spool = tmp_path / "snapshots"
    spool.mkdir()
    cfg = load(tmp_path, CAMERA.format(source=f'"{spool}"') + "spool = true\n")
    camera_cfg = cfg.readers[0]
    assert isinstance(camera_cfg, config.QrCameraReader) and camera_cfg.spool is True
    camera = build_devices(cfg).readers["gate-cam"]
    assert isinstance(camera, QrCameraReader)
    assert problems(tmp_path, CAMERA.format(source='"rtsp://cam@10.0.0.5/live"') + "spool = true\n") == [
        "readers[0]: spool = true needs a folder as the source"
    ]
    assert problems(tmp_path, CAMERA.format(source="0") + "spool = true\n") == [
        "readers[0]: spool = true needs a folder as the source"
    ]
