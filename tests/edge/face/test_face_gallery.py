from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from edge.face.gallery import Gallery, Outcome


def unit(v: npt.NDArray[np.float64] | npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.asarray(v / np.linalg.norm(v), np.float32)


@pytest.fixture(params=[True, False], ids=["onnxruntime", "numpy"])
def gallery(request: pytest.FixtureRequest) -> Gallery:
    if request.param:
        import onnx  # noqa: F401 (scripts/setup installs it; a missing one must fail)
        import onnxruntime  # noqa: F401 (scripts/setup installs it; a missing one must fail)
    return Gallery(64, capacity=4, use_onnxruntime=request.param)


def test_search_finds_the_person_and_scores_close_to_float32(gallery: Gallery) -> None:
    rng = np.random.default_rng(0)
    vectors = [unit(rng.standard_normal(64)) for _ in range(50)]  # grows past the capacity of 4
    for i, v in enumerate(vectors):
        gallery.add(f"f{i}", f"p{i}", v)
    probe = unit(vectors[7] + 0.3 * unit(rng.standard_normal(64)))
    result = gallery.search(probe, threshold=0.5, margin=0.1)
    assert result.outcome is Outcome.MATCH
    assert (result.face_id, result.person_id) == ("f7", "p7")
    assert abs(result.score - float(probe @ vectors[7])) < 0.01


def test_threshold_and_margin(gallery: Gallery) -> None:
    rng = np.random.default_rng(1)
    a = unit(rng.standard_normal(64))
    look_alike = unit(a + 0.05 * unit(rng.standard_normal(64)))
    gallery.add("fa", "a", a)
    assert (
        gallery.search(unit(rng.standard_normal(64)), threshold=0.5, margin=0.1).outcome
        is Outcome.BELOW_THRESHOLD
    )
    assert gallery.search(a, threshold=0.5, margin=0.1).matched
    gallery.add("fb", "b", look_alike)
    assert gallery.search(a, threshold=0.5, margin=0.1).outcome is Outcome.AMBIGUOUS
    # A second photo of the same person is not a rival.
    gallery.add("fa", "a", unit(a + 0.01 * unit(rng.standard_normal(64))))
    gallery.remove_person("b")
    assert gallery.search(a, threshold=0.5, margin=0.1).matched


def test_removal_keeps_rows_packed(gallery: Gallery) -> None:
    rng = np.random.default_rng(2)
    vectors = {f"p{i}": unit(rng.standard_normal(64)) for i in range(6)}
    for person, v in vectors.items():
        gallery.add(f"face-{person}", person, v)
    assert gallery.remove_person("p1") == 1
    assert gallery.remove_face("face-p3") == 1
    assert gallery.remove_person("nobody") == 0
    assert len(gallery) == 4
    assert gallery.people() == {"p0", "p2", "p4", "p5"}
    for person in ("p0", "p2", "p4", "p5"):
        assert gallery.search(vectors[person], threshold=0.9, margin=0.05).person_id == person
    assert gallery.search(vectors["p1"], threshold=0.9, margin=0.05).outcome is Outcome.BELOW_THRESHOLD


def test_empty_gallery() -> None:
    assert Gallery(8, use_onnxruntime=False).search(
        np.ones(8, np.float32), threshold=0.3, margin=0.0
    ).outcome is (Outcome.EMPTY)


def test_the_sketch_pass_finds_what_the_full_search_finds() -> None:
    import onnx  # noqa: F401 (scripts/setup installs it; a missing one must fail)
    import onnxruntime  # noqa: F401 (scripts/setup installs it; a missing one must fail)

    rng = np.random.default_rng(7)
    stored = rng.standard_normal((5000, 512)).astype(np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    sketched, full = Gallery(512, sketch=True), Gallery(512, sketch=False)
    for i, v in enumerate(stored):
        sketched.add(f"f{i}", f"p{i}", v)
        full.add(f"f{i}", f"p{i}", v)
    for i in range(0, 5000, 50):  # probes as far from their row as another photo of the same person
        probe = unit(stored[i] + 1.4 * unit(rng.standard_normal(512)))  # cosine about 0.58
        a = sketched.search(probe, threshold=0.3, margin=0.05)
        b = full.search(probe, threshold=0.3, margin=0.05)
        assert (a.outcome, a.face_id) == (b.outcome, b.face_id)
        assert abs(a.score - b.score) < 1e-5
    assert sketched.remove_person("p10") == 1
    assert sketched.search(stored[10], threshold=0.3, margin=0.05).person_id != "p10"
