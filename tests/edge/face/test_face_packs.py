from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.face.errors import PackError, PackProblem
from edge.face.packs import MANIFEST_DIR, load_pack, read_manifest
from edge.face.pipeline import FacePipeline, read_image


@pytest.mark.parametrize("name", ["insightface_s_int8", "opencv_yunet_sface"])
def test_shipped_manifests_match_the_shared_models(name: str, models_dir: Path) -> None:
    pack = load_pack(models_dir / name)
    assert pack.name == name
    assert pack.manifest.license in pack.describe()


def test_insightface_pack_says_it_is_not_for_commercial_use() -> None:
    assert not read_manifest(MANIFEST_DIR / "insightface_s_int8.toml").commercial_use
    assert read_manifest(MANIFEST_DIR / "opencv_yunet_sface.toml").commercial_use


def test_a_changed_file_is_refused(models_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "opencv_yunet_sface"
    shutil.copytree(models_dir / "opencv_yunet_sface", copy)
    detector = copy / "face_detection_yunet_2023mar.onnx"
    detector.chmod(0o644)
    with detector.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(PackError) as err:
        load_pack(copy)
    assert err.value.reason is PackProblem.HASH_MISMATCH


def test_a_missing_file_or_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "opencv_yunet_sface").mkdir()
    with pytest.raises(PackError) as err:
        load_pack(tmp_path / "opencv_yunet_sface")
    assert err.value.reason is PackProblem.FILE_MISSING
    with pytest.raises(PackError) as err:
        load_pack(tmp_path, "no-such-pack")
    assert err.value.reason is PackProblem.MANIFEST_MISSING


def test_a_malformed_manifest_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MANIFEST_DIR.joinpath("opencv_yunet_sface.toml").read_text() + "\nsurprise = 1\n")
    with pytest.raises(PackError) as err:
        load_pack(tmp_path, bad)
    assert err.value.reason is PackProblem.MANIFEST_INVALID


def test_pipeline_detects_aligns_and_embeds(pipeline: FacePipeline, photos: Path) -> None:
    image = read_image(photos / "obama" / "obama.jpg")
    faces = pipeline.detect(image)
    assert len(faces) == 1
    aligned = pipeline.align(image, faces[0])
    assert aligned.shape == (112, 112, 3)
    embedding = pipeline.embed(aligned)
    assert embedding.shape == (pipeline.embedding_size,)
    assert embedding.dtype == np.float32
    assert abs(float(np.linalg.norm(embedding)) - 1.0) < 1e-4


def test_group_photo_gives_every_face(pipeline: FacePipeline, photos: Path) -> None:
    assert len(pipeline.detect(read_image(photos / "insightface" / "t1.jpg"))) == 6
