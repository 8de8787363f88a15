"""The camera loop frame by frame with real models: agreement, liveness, cool-down, unknown faces, gates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers.face.loop import FaceLoop, LoopSettings, OutcomeKind
from edge.face.gallery import Gallery
from edge.face.pipeline import FacePipeline, read_image

Frame = Callable[..., np.ndarray]
OBAMA = ["obama/obama.jpg", "obama/obama1.jpg", "obama/obama2.jpg", "obama/obama3.jpg"]


@pytest.fixture
def gallery(door_pipeline: FacePipeline, shared: Path) -> Gallery:
    g = Gallery(door_pipeline.embedding_size)
    for person, photo in (("obama", "obama/obama.jpg"), ("biden", "biden/biden.jpg")):
        image = read_image(shared / "data" / "faces" / photo)
        g.add(f"face-{person}", person, door_pipeline.embed_face(image, door_pipeline.detect(image)[0]))
    return g


def run(loop: FaceLoop, frames: list[np.ndarray], start: float = 0.0, fps: float = 10.0) -> list[Any]:
    out = []
    for i, frame in enumerate(frames):
        out += loop.process(frame, start + i / fps)
    return out


def live_approach(pipeline: FacePipeline, shared: Path, make_frame: Frame, n: int = 8) -> list[np.ndarray]:
    """The same person in several head poses at the door: a stand-in for a live face's natural motion."""
    photos = [shared / "data" / "faces" / p for p in OBAMA]
    return [make_frame(pipeline, photos[i % len(photos)]) for i in range(n)]


def test_a_live_resident_is_recognised_once_per_approach(
    door_pipeline: FacePipeline, gallery: Gallery, shared: Path, make_frame: Frame
) -> None:
    loop = FaceLoop(door_pipeline, gallery)
    outcomes = run(loop, live_approach(door_pipeline, shared, make_frame, 12))
    assert [(o.kind, o.face_id, o.person_id) for o in outcomes] == [
        (OutcomeKind.RECOGNISED, "face-obama", "obama")
    ]
    assert "natural motion" in outcomes[0].reason


def test_a_replayed_still_frame_does_not_pass_liveness(
    door_pipeline: FacePipeline, gallery: Gallery, shared: Path, make_frame: Frame
) -> None:
    still = make_frame(door_pipeline, shared / "data" / "faces" / "obama" / "obama.jpg")
    loop = FaceLoop(door_pipeline, gallery, LoopSettings(liveness_timeout_seconds=2.0))
    outcomes = run(loop, [still] * 30)
    assert [o.kind for o in outcomes] == [OutcomeKind.SPOOF]
    assert "no natural motion" in outcomes[0].reason
    assert outcomes[0].snapshot


def test_a_photo_moved_in_front_of_the_camera_does_not_pass_liveness(
    door_pipeline: FacePipeline, gallery: Gallery, shared: Path, make_frame: Frame
) -> None:
    photo = shared / "data" / "faces" / "obama" / "obama.jpg"
    rng = np.random.default_rng(3)
    frames = []
    for i in range(30):  # shifted, scaled and tilted in plane a little each frame, with sensor noise
        frame = make_frame(
            door_pipeline, photo, size=290 + 2 * (i % 6), dx=3 * (i % 5), dy=-2 * (i % 4), angle=i % 7 - 3
        )
        frames.append(np.clip(frame + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8))
    loop = FaceLoop(door_pipeline, gallery, LoopSettings(liveness_timeout_seconds=2.0))
    assert [o.kind for o in run(loop, frames)] == [OutcomeKind.SPOOF]


def test_cool_down_then_recognised_again(
    door_pipeline: FacePipeline, gallery: Gallery, shared: Path, make_frame: Frame
) -> None:
    loop = FaceLoop(door_pipeline, gallery, LoopSettings(cooldown_seconds=5.0))
    approach = live_approach(door_pipeline, shared, make_frame)
    empty = [np.full((480, 640, 3), 90, np.uint8)] * 20  # 2 s with nobody: the track ends
    first = run(loop, approach + empty, start=0.0)
    again_soon = run(loop, approach + empty, start=3.0)
    again_later = run(loop, approach, start=20.0)
    assert [o.kind for o in first] == [OutcomeKind.RECOGNISED]
    assert again_soon == []
    assert [o.person_id for o in again_later] == ["obama"]


def test_a_stranger_who_lingers_is_reported_once_with_a_snapshot(
    door_pipeline: FacePipeline, gallery: Gallery, shared: Path, make_frame: Frame
) -> None:
    import cv2

    photos = [shared / "data" / "faces" / "rose_leslie" / p for p in ("img1.jpg", "img2.jpg")]
    frames = [make_frame(door_pipeline, photos[i % 2]) for i in range(50)]
    outcomes = run(FaceLoop(door_pipeline, gallery, LoopSettings(unknown_after_seconds=3.0)), frames)
    assert [o.kind for o in outcomes] == [OutcomeKind.UNKNOWN]
    assert outcomes[0].snapshot is not None
    snapshot = cv2.imdecode(np.frombuffer(outcomes[0].snapshot, np.uint8), cv2.IMREAD_COLOR)
    assert snapshot is not None
    assert max(snapshot.shape[:2]) <= 160


def test_far_faces_and_still_empty_frames_cost_no_recognition(
    door_pipeline: FacePipeline, gallery: Gallery, shared: Path, make_frame: Frame
) -> None:
    loop = FaceLoop(door_pipeline, gallery)
    far = [make_frame(door_pipeline, shared / "data" / "faces" / p, size=100) for p in OBAMA * 3]
    assert run(loop, far) == []
    assert loop.stats.embedded == 0
    empty = np.full((480, 640, 3), 90, np.uint8)
    run(loop, [empty] * 10, start=10.0)
    assert loop.stats.skipped_still >= 9


def test_texture_check_as_a_second_signal_can_only_take_passes_away(
    door_pipeline: FacePipeline, gallery: Gallery, shared: Path, make_frame: Frame
) -> None:
    # The simulated frames paste a photo onto grey: MiniFASNet rightly scores them low, so this test checks the
    # wiring (frames kept, both checks consulted), not MiniFASNet's accuracy (see edge/face/antispoof.py).
    from edge.face.antispoof import MiniFasnet
    from edge.face.liveness import AllOf, LandmarkMotion

    models = shared / "models" / "minifasnet"
    approach = live_approach(door_pipeline, shared, make_frame, 50)
    lenient = AllOf((LandmarkMotion(), MiniFasnet(models, threshold=0.0)))
    outcomes = run(FaceLoop(door_pipeline, gallery, liveness=lenient), approach)
    assert [o.kind for o in outcomes] == [OutcomeKind.RECOGNISED]
    assert "texture live" in outcomes[0].reason
    strict = AllOf((LandmarkMotion(), MiniFasnet(models, threshold=1.01)))
    outcomes = run(
        FaceLoop(door_pipeline, gallery, LoopSettings(liveness_timeout_seconds=2.0), strict), approach
    )
    assert [o.kind for o in outcomes] == [OutcomeKind.SPOOF]
    assert "minifasnet" in outcomes[0].reason
