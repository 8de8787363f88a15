"""Our five-point alignment and SCRFD decoding against the insightface library they replace (installed with the
vision extra, imported here only to compare), on the labelled photos; and the face worker's imports."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from edge.face.align import TEMPLATE, align_face, align_matrix, similarity_transform
from edge.face.packs import load_pack
from edge.face.pipeline import FacePipeline, Tuning, read_image, session_options

ROOT = Path(__file__).resolve().parents[3]
PACKS = ("insightface_s_int8", "opencv_yunet_sface")

# Lowest cosine between the embedding of our crop and of the library's crop of the same landmarks. SFace (int8
# weights, float activations) gives the same embedding for crops that differ in a few pixels by one grey
# level. The insightface recognizer was quantised dynamically (activations too, with a range taken from each
# input), so one grey level in ten pixels of the SAME crop already moves it to ~0.998 (measured); the
# library's own transform is computed in float32 and ours in float64, which flips a few pixels by one level.
MIN_COSINE = {"opencv_yunet_sface": 0.999, "insightface_s_int8": 0.995}


def rotation(angle: float) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def test_similarity_transform_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        scale, angle, shift = rng.uniform(0.1, 8), rng.uniform(-np.pi, np.pi), rng.uniform(-500, 500, 2)
        src = rng.uniform(0, 1000, (5, 2))
        dst = scale * src @ rotation(angle).T + shift
        m = similarity_transform(src, dst)
        np.testing.assert_allclose(m[:, :2], scale * rotation(angle), atol=1e-9)
        np.testing.assert_allclose(m[:, 2], shift, atol=1e-6)


def test_similarity_transform_is_the_least_squares_fit() -> None:
    """With noisy points the fit beats every nearby similarity transform (it is the minimum)."""
    rng = np.random.default_rng(4)
    src = TEMPLATE * 3 + 200 + rng.normal(0, 4, (5, 2))
    m = similarity_transform(src, TEMPLATE)

    def error(a: float, b: float, tx: float, ty: float) -> float:
        mapped = src @ np.array([[a, -b], [b, a]]).T + [tx, ty]
        return float(((mapped - TEMPLATE) ** 2).sum())

    best = error(m[0, 0], m[1, 0], m[0, 2], m[1, 2])
    assert abs(m[0, 0] - m[1, 1]) < 1e-12 and abs(m[0, 1] + m[1, 0]) < 1e-12  # a similarity, not affine
    for _ in range(200):
        d = rng.normal(0, [1e-3, 1e-3, 0.05, 0.05])
        assert error(m[0, 0] + d[0], m[1, 0] + d[1], m[0, 2] + d[2], m[1, 2] + d[3]) > best


def test_mirrored_landmarks_give_a_rotation_not_a_reflection() -> None:
    mirrored = TEMPLATE * [-1, 1] + [300, 0]
    m = similarity_transform(mirrored, TEMPLATE)
    assert np.linalg.det(m[:, :2]) > 0


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (np.zeros((5, 2)), TEMPLATE),
        (np.full((5, 2), np.nan), TEMPLATE),
        (TEMPLATE[:4], TEMPLATE),
        (np.zeros(10), TEMPLATE),
    ],
)
def test_bad_points_are_refused(src: np.ndarray, dst: np.ndarray) -> None:
    with pytest.raises(ValueError):
        similarity_transform(src, dst)


def test_crop_puts_the_landmarks_on_the_template() -> None:
    """Dots drawn at the landmarks of a synthetic image land on the template's points in the crop."""
    image = np.zeros((600, 800, 3), np.uint8)
    points = TEMPLATE @ (1.5 * rotation(0.3)).T + [250, 120]
    for x, y in points:
        image[round(y) - 3 : round(y) + 4, round(x) - 3 : round(x) + 4] = 255
    crop = align_face(image, points)
    assert crop.shape == (112, 112, 3)
    for x, y in TEMPLATE:
        assert crop[round(y), round(x)].min() > 100
    assert align_matrix(points, 224).shape == (2, 3)
    with pytest.raises(ValueError):
        align_matrix(points, 100)


@pytest.fixture(scope="module", params=PACKS)
def both(request: pytest.FixtureRequest, models_dir: Path) -> tuple[str, FacePipeline, object]:
    """Our pipeline and the library's recognizer for the same pack."""
    from insightface import model_zoo

    pack = load_pack(models_dir / request.param)
    theirs = model_zoo.get_model(
        str(pack.recognizer_path), providers=["CPUExecutionProvider"], sess_options=session_options(Tuning())
    )
    theirs.input_mean = pack.manifest.recognizer.input_mean
    theirs.input_std = pack.manifest.recognizer.input_std
    return request.param, FacePipeline(pack), theirs


def test_crops_and_embeddings_match_the_library(
    both: tuple[str, FacePipeline, object], labelled_photos: list[tuple[str, Path]]
) -> None:
    from insightface.utils import face_align

    name, pipeline, theirs = both
    photos = labelled_photos
    assert len(photos) >= 10
    for _, path in photos:
        image = read_image(path)
        face = pipeline.detect(image)[0]
        ours = pipeline.align(image, face)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            reference = face_align.norm_crop(image, face.landmarks, image_size=112)
        diff = np.abs(ours.astype(np.int16) - reference.astype(np.int16))
        assert ours.shape == reference.shape == (112, 112, 3)
        assert diff.mean() < 0.01, (path, diff.mean())  # measured <= 0.0005: a few pixels, one grey level
        assert diff.max() <= 1, path
        e_ours = pipeline.embed(ours)
        e_theirs = np.asarray(theirs.get_feat(reference), np.float32).reshape(-1)  # type: ignore[attr-defined]
        e_theirs /= np.linalg.norm(e_theirs)
        assert float(e_ours @ e_theirs) >= MIN_COSINE[name], (path, float(e_ours @ e_theirs))


def test_scrfd_finds_the_faces_the_library_finds(
    models_dir: Path, photos: Path, labelled_photos: list[tuple[str, Path]]
) -> None:
    from insightface import model_zoo

    pack = load_pack(models_dir / "insightface_s_int8")
    spec = pack.manifest.detector
    ours = FacePipeline(pack)
    theirs = model_zoo.get_model(
        str(pack.detector_path), providers=["CPUExecutionProvider"], sess_options=session_options(Tuning())
    )
    theirs.prepare(ctx_id=-1, input_size=(spec.input_size, spec.input_size), det_thresh=spec.score_threshold)
    multi = sorted((photos / "_multi").glob("*.jp*g"))
    assert len(multi) >= 2
    for path in [path for _, path in labelled_photos] + multi:
        image = read_image(path)
        faces = ours.detect(image)
        boxes, points = theirs.detect(image, input_size=(spec.input_size, spec.input_size))
        assert len(faces) == boxes.shape[0], path
        # The letterbox rounds the short side down to whole pixels; the library maps both axes back with the
        # short side's factor, we map each axis with its own, so ours differ by up to coordinate / short side.
        h, w = image.shape[:2]
        short = int(spec.input_size * min(h, w) / max(h, w))
        for face in faces:  # pair each of ours with the library's nearest box
            j = int(np.argmin(np.abs(boxes[:, :4] - np.array(face.box)).sum(axis=1)))
            box = np.array(face.box)
            assert (np.abs(boxes[j, :4] - box) <= np.abs(box) / short + 0.05).all(), path
            assert (np.abs(points[j] - face.landmarks) <= np.abs(face.landmarks) / short + 0.05).all(), path
            assert abs(float(boxes[j, 4]) - face.score) < 1e-3, path


def test_face_worker_runs_without_insightface_scipy_or_skimage(
    models_dir: Path, labelled_photos: list[tuple[str, Path]]
) -> None:
    """The worker's modules, both packs loaded and a face embedded: none of the heavy libraries imported."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import drivers.face.worker, drivers.face.loop\n"
        "from edge.face.packs import load_pack\n"
        "from edge.face.pipeline import FacePipeline, read_image\n"
        f"for name in {PACKS!r}:\n"
        f"    p = FacePipeline(load_pack(Path({str(models_dir)!r}) / name))\n"
        f"    image = read_image(Path({str(labelled_photos[0][1])!r}))\n"
        "    p.embed_face(image, p.detect(image)[0])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'insightface', 'scipy', 'skimage'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
