from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge.face.antispoof import MiniFasnet, scaled_box
from edge.face.errors import PackError, PackProblem
from edge.face.liveness import AllOf, LandmarkMotion
from edge.face.pipeline import Face, FacePipeline, read_image


@pytest.fixture(scope="session")
def minifasnet(models_dir: Path) -> MiniFasnet:
    return MiniFasnet(models_dir / "minifasnet")


def test_scores_real_photos_as_probabilities(
    minifasnet: MiniFasnet, pipeline: FacePipeline, photos: Path
) -> None:
    image = read_image(photos / "obama" / "obama.jpg")
    score = minifasnet.score(image, pipeline.detect(image)[0])
    assert 0.0 <= score <= 1.0
    assert score > 0.5  # a sharp, frontal real photo (not an attack on a camera; see the module docstring)


def test_a_changed_model_file_is_refused(models_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(models_dir / "minifasnet", tmp_path / "m")
    model = tmp_path / "m" / "2.7_80x80_MiniFASNetV2.onnx"
    model.chmod(0o644)
    model.write_bytes(model.read_bytes()[:-1])
    with pytest.raises(PackError) as err:
        MiniFasnet(tmp_path / "m")
    assert err.value.reason is PackProblem.HASH_MISMATCH


def test_scaled_box_is_shifted_back_inside_the_image() -> None:
    import numpy as np

    face = Face((0.0, 0.0, 99.0, 99.0), 0.9, np.zeros((5, 2), np.float32))
    x1, y1, x2, y2 = scaled_box(face, 2.7, 640, 480)
    assert (x1, y1) == (0, 0)
    assert x2 <= 639
    assert y2 <= 479
    assert x2 - x1 >= 260


def test_all_of_keeps_frames_only_when_a_check_needs_them(minifasnet: MiniFasnet) -> None:
    assert AllOf((LandmarkMotion(), minifasnet)).needs_frames
    assert not AllOf((LandmarkMotion(),)).needs_frames
