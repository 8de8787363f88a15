"""Enrolment on a running gateway (the cloud contract's entry point): a spawned process per call, real models."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.face.errors import EnrolError, EnrolProblem, QualityError, QualityProblem
from edge.face.service import FaceEnrolment
from edge.face.templates import TemplateStore
from edge.model import AccessList, Person

KEY_HEX = "cd" * 32


async def test_photo_enrolment_checks_consent_quality_and_duplicates(
    tmp_path: Path, models_dir: Path, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MENWEI_SECRET_FACE_KEY", KEY_HEX)
    acl = AccessList.build(
        version=1,
        people=[
            Person("obama", "Obama", face_consent=True),
            Person("other", "Other", face_consent=True),
            Person("shy", "Shy"),
        ],
    )
    reloads: list[bool] = []
    service = FaceEnrolment(
        models_dir / "opencv_yunet_sface", None, tmp_path, lambda: acl, lambda: reloads.append(True)
    )
    photo = (photos / "obama" / "obama.jpg").read_bytes()

    done = await service.enrol_photo("obama", "tpl-obama", photo)
    assert (done.person_id, done.face_id) == ("obama", "tpl-obama")
    assert reloads == [True]
    with pytest.raises(EnrolError) as err:
        await service.enrol_photo("other", "tpl-other", (photos / "obama" / "obama2.jpg").read_bytes())
    assert err.value.reason is EnrolProblem.DUPLICATE
    with pytest.raises(EnrolError) as err:
        await service.enrol_photo("shy", "tpl-shy", photo)
    assert err.value.reason is EnrolProblem.NO_CONSENT
    with pytest.raises(QualityError) as qerr:
        await service.enrol_photo("other", "tpl-other", b"not a jpeg")
    assert qerr.value.reason is QualityProblem.UNREADABLE
    with pytest.raises(EnrolError) as err:
        await service.enrol_embedding("other", "tpl-other", [0.1] * 128, "insightface_s_int8")
    assert err.value.reason is EnrolProblem.WRONG_PACK

    store = TemplateStore.open(tmp_path, bytes.fromhex(KEY_HEX))
    assert [t.person_id for t in store.load("opencv_yunet_sface")] == ["obama"]
