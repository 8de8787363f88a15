"""Real models and photos for the camera loop tests, loaded once per session, and a simulated door camera:
640x480 frames with a face from a labelled photo pasted where a person at the door would stand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[3].parent / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    import insightface  # noqa: F401 (scripts/setup installs it; a missing one must fail)

    if not (SHARED / "models").is_dir() or not (SHARED / "data" / "faces").is_dir():
        pytest.fail(f"shared models or photos not found under {SHARED}")
    return SHARED


@pytest.fixture(scope="session", params=["insightface_s_int8", "opencv_yunet_sface"])
def door_pipeline(request: pytest.FixtureRequest, shared: Path) -> object:
    from edge.face.packs import load_pack
    from edge.face.pipeline import FacePipeline

    return FacePipeline(load_pack(shared / "models" / request.param))


def door_frame(
    pipeline: object, photo: Path, *, size: int = 300, dx: int = 0, dy: int = 0, angle: float = 0.0
) -> np.ndarray:
    """`photo`'s face cropped square (about 2.2x the face), scaled to `size`, pasted at the door position of a
    grey 640x480 frame, optionally shifted and rotated in plane (a photo moved in front of the camera)."""
    import cv2

    from edge.face.pipeline import FacePipeline, read_image

    assert isinstance(pipeline, FacePipeline)
    image = read_image(photo)
    face = pipeline.detect(image)[0]
    cx, cy = face.centre
    half = 1.1 * max(face.width, face.height)
    src = np.array([[cx - half, cy - half], [cx + half, cy - half], [cx - half, cy + half]], np.float32)
    dst = np.array([[0, 0], [size, 0], [0, size]], np.float32)
    crop = cv2.warpAffine(image, cv2.getAffineTransform(src, dst), (size, size), borderValue=(90, 90, 90))
    frame: np.ndarray = np.full((480, 640, 3), 90, np.uint8)
    x, y = (640 - size) // 2 + dx, (480 - size) // 2 + dy
    frame[y : y + size, x : x + size] = crop
    if angle:
        rotation = cv2.getRotationMatrix2D((x + size / 2, y + size / 2), angle, 1.0)
        frame = cv2.warpAffine(frame, rotation, (640, 480), borderValue=(90, 90, 90))
    return frame


@pytest.fixture(scope="session")
def make_frame() -> object:
    return door_frame
