"""Real models and real photos (../shared): each pack is loaded once per session, and the face tests are skipped
where the `vision` extra or the shared models are absent."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
MODELS = SHARED / "models"
PHOTOS = SHARED / "data" / "faces"
PACKS = ("insightface_s_int8", "opencv_yunet_sface")


def labelled() -> list[tuple[str, Path]]:
    with (PHOTOS / "labels.tsv").open(encoding="utf-8") as f:
        return [(row["identity"], PHOTOS / row["path"]) for row in csv.DictReader(f, delimiter="\t")]


@pytest.fixture(scope="session")
def models_dir() -> Path:
    import insightface  # noqa: F401 (scripts/setup installs it; a missing one must fail)

    if not MODELS.is_dir():
        pytest.fail(f"shared models not found at {MODELS}")
    return MODELS


@pytest.fixture(scope="session", params=PACKS)
def pipeline(request: pytest.FixtureRequest, models_dir: Path) -> object:
    from edge.face.packs import load_pack
    from edge.face.pipeline import FacePipeline

    return FacePipeline(load_pack(models_dir / request.param))


@pytest.fixture(scope="session")
def photos() -> Path:
    if not PHOTOS.is_dir():
        pytest.fail(f"shared photos not found at {PHOTOS}")
    return PHOTOS


@pytest.fixture(scope="session")
def labelled_photos(photos: Path) -> list[tuple[str, Path]]:
    return labelled()
