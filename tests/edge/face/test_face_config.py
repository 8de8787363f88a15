"""The [face] section and face-camera readers: cross-checks, and what build_devices and the Gateway make of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import load_config
from edge.errors import ConfigError

BASE = """
[site]
id = "s"
name = "S"
timezone = "UTC"
[gateway]
id = "gw"
data_dir = "{data}"
[[controllers]]
type = "simulated"
id = "c"
outputs = 2
inputs = 2
[[doors]]
id = "lobby"
name = "Lobby"
controller = "c"
output = 1
[[readers]]
type = "face-camera"
id = "lobby-face"
door = "lobby"
source = "/nowhere"
"""
FACE = '\n[face]\npack_dir = "/models/opencv_yunet_sface"\n'
CARD = '\n[[readers]]\ntype = "simulated"\nid = "lobby-card"\ndoor = "lobby"\n'


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "gw.toml"
    path.write_text(BASE.format(data=tmp_path / "data") + text)
    return load_config(path)


def test_a_face_camera_needs_the_face_section_and_a_non_face_reader_at_its_door(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, CARD)
    assert "readers[0].type: a face-camera reader needs a [face] section" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load(tmp_path, FACE)
    assert "door 'lobby' needs a non-face reader too" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load(tmp_path, CARD + FACE + 'second_factor_doors = ["elsewhere"]\n')
    assert "face.second_factor_doors[0]: door 'elsewhere' has no face-camera reader" in str(err.value)


def test_build_devices_makes_a_supervised_face_reader_and_the_gateway_combines_factors(
    tmp_path: Path,
) -> None:
    pytest.importorskip("insightface")
    from drivers.face.reader import FaceCameraReader
    from edge.config import GatewayConfig
    from edge.devices import build_devices
    from edge.gateway import Gateway

    config = load(tmp_path, CARD + FACE + 'second_factor_doors = ["lobby"]\nmin_motion = 0.08\n')
    assert isinstance(config, GatewayConfig)
    devices = build_devices(config)
    reader = devices.readers["lobby-face"]
    assert isinstance(reader, FaceCameraReader)
    assert reader.settings.min_motion == 0.08
    assert reader.settings.pack_dir == Path("/models/opencv_yunet_sface")
    gateway = Gateway(config, devices)
    assert gateway.factors is not None
    assert set(gateway.factors.rules) == {"lobby"}
