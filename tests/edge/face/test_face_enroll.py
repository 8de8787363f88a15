"""Enrolment and recognition with the real packs and the labelled photos (../shared)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.face.enroll import Enroller, load_gallery, photo_jobs
from edge.face.errors import EnrolError, EnrolProblem, QualityError, QualityProblem
from edge.face.gallery import Gallery
from edge.face.pipeline import FacePipeline, read_image
from edge.face.templates import TemplateStore
from edge.model import Person

KEY = bytes(range(32))
NOT_ENROLLED = {"lin_manuel_miranda", "rose_leslie"}


def people(*ids: str, consent: bool = True) -> dict[str, Person]:
    return {i: Person(id=i, name=i, face_consent=consent) for i in ids}


@pytest.fixture
def enroller(pipeline: FacePipeline, tmp_path: Path, labelled_photos: list[tuple[str, Path]]) -> Enroller:
    everyone = people(*{who for who, _ in labelled_photos}, "someone-else")
    everyone["no-consent"] = Person(id="no-consent", name="x", face_consent=False)
    store = TemplateStore.open(tmp_path, KEY)
    return Enroller(pipeline, store, Gallery(pipeline.embedding_size), everyone)


def test_enrolled_people_are_recognised_and_others_rejected(
    enroller: Enroller, pipeline: FacePipeline, labelled_photos: list[tuple[str, Path]]
) -> None:
    first: dict[str, Path] = {}
    for who, path in labelled_photos:
        if who not in NOT_ENROLLED and who not in first:
            first[who] = path
            enroller.enroll_file(who, f"face-{who}", path)
    thresholds = pipeline.pack.manifest.thresholds
    checked = 0
    for who, path in labelled_photos:
        if path in first.values():
            continue
        image = read_image(path)
        result = enroller.gallery.search(
            pipeline.embed_face(image, pipeline.detect(image)[0]),
            threshold=thresholds.match,
            margin=thresholds.margin,
        )
        if who in NOT_ENROLLED:
            assert not result.matched, f"{path.name} matched {result.person_id} at {result.score:.2f}"
        else:
            assert result.matched, f"{path.name}: {result.outcome} {result.score:.2f}"
            assert (result.person_id, result.face_id) == (who, f"face-{who}")
        checked += 1
    assert checked == len(labelled_photos) - len(first)


@pytest.mark.parametrize(
    ("photo", "reason"),
    [
        ("_multi/obama_and_biden.jpg", QualityProblem.SEVERAL_FACES),
        ("_multi/two_people.jpg", QualityProblem.SEVERAL_FACES),
    ],
)
def test_multi_face_photo_is_refused(
    enroller: Enroller, photos: Path, photo: str, reason: QualityProblem
) -> None:
    with pytest.raises(QualityError) as err:
        enroller.enroll_file("obama", "f", photos / photo)
    assert err.value.reason is reason
    assert len(enroller.gallery) == 0


def test_face_less_image_corrupt_file_and_small_face_each_give_their_reason(
    enroller: Enroller, photos: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    blank = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 8)
    with pytest.raises(QualityError) as err:
        enroller.enroll_image("obama", "f", blank)
    assert err.value.reason is QualityProblem.NO_FACE

    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes((photos / "obama" / "obama.jpg").read_bytes()[:300])
    with pytest.raises(QualityError) as err:
        enroller.enroll_file("obama", "f", corrupt)
    assert err.value.reason is QualityProblem.UNREADABLE

    image = read_image(photos / "obama" / "obama.jpg")  # face about 230 px wide
    small = cv2.resize(image, None, fx=0.22, fy=0.22, interpolation=cv2.INTER_AREA)
    with pytest.raises(QualityError) as err:
        enroller.enroll_image("obama", "f", small)
    assert err.value.reason is QualityProblem.TOO_SMALL
    assert "need at least 80" in str(err.value)


def test_blurred_photo_is_refused(enroller: Enroller, photos: Path) -> None:
    image = read_image(photos / "obama" / "obama.jpg")
    with pytest.raises(QualityError) as err:
        enroller.enroll_image("obama", "f", cv2.GaussianBlur(image, (0, 0), 7))
    assert err.value.reason in (QualityProblem.BLURRED, QualityProblem.NO_FACE)


def test_duplicate_enrolment_under_another_person_is_flagged(enroller: Enroller, photos: Path) -> None:
    enroller.enroll_file("obama", "face-obama", photos / "obama" / "obama.jpg")
    with pytest.raises(EnrolError) as err:
        enroller.enroll_file("someone-else", "face-x", photos / "obama" / "obama2.jpg")
    assert err.value.reason is EnrolProblem.DUPLICATE
    assert "obama" in str(err.value)
    # The same person adding a second photo is not a duplicate.
    enroller.enroll_file("obama", "face-obama", photos / "obama" / "obama2.jpg")
    assert enroller.store.count("someone-else") == 0
    assert enroller.store.count("obama") == 2


def test_only_consenting_known_people_are_enrolled(enroller: Enroller, photos: Path) -> None:
    with pytest.raises(EnrolError) as err:
        enroller.enroll_file("no-consent", "f", photos / "obama" / "obama.jpg")
    assert err.value.reason is EnrolProblem.NO_CONSENT
    with pytest.raises(EnrolError) as err:
        enroller.enroll_file("nobody", "f", photos / "obama" / "obama.jpg")
    assert err.value.reason is EnrolProblem.UNKNOWN_PERSON


def test_cloud_embedding_must_come_from_this_pack(enroller: Enroller, pipeline: FacePipeline) -> None:
    vector = np.ones(pipeline.embedding_size, np.float32)
    with pytest.raises(EnrolError) as err:
        enroller.enroll_embedding("obama", "f", vector, "some-other-pack")
    assert err.value.reason is EnrolProblem.WRONG_PACK
    with pytest.raises(EnrolError) as err:
        enroller.enroll_embedding("obama", "f", vector[:10], pipeline.pack.name)
    assert err.value.reason is EnrolProblem.BAD_EMBEDDING
    enroller.enroll_embedding("obama", "f", vector, pipeline.pack.name)
    assert len(enroller.gallery) == 1


def test_gallery_reloads_from_the_sealed_store_and_forgets_removed_people(
    enroller: Enroller, pipeline: FacePipeline, photos: Path
) -> None:
    enroller.enroll_file("obama", "face-obama", photos / "obama" / "obama.jpg")
    enroller.enroll_file("biden", "face-biden", photos / "biden" / "biden.jpg")
    reloaded = load_gallery(enroller.store, pipeline, people("obama"))
    assert len(reloaded) == 1
    assert reloaded.people() == {"obama"}
    assert enroller.store.count("biden") == 0


def test_photo_jobs_from_folders_and_csv(tmp_path: Path) -> None:
    (tmp_path / "p1").mkdir()
    (tmp_path / "p1" / "a.jpg").write_bytes(b"")
    (tmp_path / "p1" / "notes.txt").write_text("")
    (tmp_path / "_multi").mkdir()
    assert [(j.person_id, j.path.name) for j in photo_jobs(tmp_path)] == [("p1", "a.jpg")]
    listing = tmp_path / "list.csv"
    listing.write_text("person_id,path\np2,p1/a.jpg\n")
    assert [(j.person_id, j.path) for j in photo_jobs(listing)] == [("p2", tmp_path / "p1" / "a.jpg")]
