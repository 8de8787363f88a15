"""Enrolment on a running gateway: the entry point for the cloud contract (a photo pushed for a consenting
resident, or an embedding tagged with the pack that made it) and for any local tool.

Why a separate process per call: embedding a photo loads the models (about 0.5 s, tens of MB) and runs them for
tens of milliseconds; the gateway's event loop must not, and the camera worker's pipe is not a request/response
channel. Enrolments are rare (a resident moving in), so a short-lived spawned process per call is simple and
isolated: a crash there costs one enrolment, not the doors. Consent and person checks run first, in the gateway,
against the access list in force. Results cross the process boundary as plain values (the face errors' reason
enums), never as pickled exceptions.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge.face.errors import EnrolError, EnrolProblem, FaceError, QualityError, QualityProblem
from edge.model import AccessList

if TYPE_CHECKING:  # the gateway imports this module; numpy and the models only load in the enrolment process
    from edge.face.enroll import Enrolled


@dataclass(frozen=True, slots=True)
class EnrolJob:
    pack_dir: Path
    manifest: str | None
    data_dir: Path
    person_id: str
    face_id: str
    consenting: frozenset[str]
    photo: bytes | None = None
    embedding: tuple[float, ...] | None = None
    embedding_pack: str | None = None


# (ok, template id or error layer, reason value, message)
_Result = tuple[bool, str, str, str]


def run_job(job: EnrolJob) -> _Result:
    """In the child process: load the pack, the sealed store and the gallery, enrol one photo or embedding."""
    import cv2
    import numpy as np

    from edge.face.enroll import Enroller, load_gallery
    from edge.face.packs import load_pack
    from edge.face.pipeline import FacePipeline
    from edge.face.templates import TemplateStore
    from edge.model import Person

    try:
        pipeline = FacePipeline(load_pack(job.pack_dir, job.manifest))
        store = TemplateStore.open(job.data_dir)
        try:
            people = {p: Person(p, p, face_consent=True) for p in job.consenting}
            enroller = Enroller(pipeline, store, load_gallery(store, pipeline, people), people)
            if job.photo is not None:
                data = np.frombuffer(job.photo, np.uint8)
                image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
                if image is None:
                    raise QualityError(
                        QualityProblem.UNREADABLE, "the photo is not an image OpenCV can decode"
                    )
                done = enroller.enroll_image(job.person_id, job.face_id, image, source="cloud photo")
            else:
                assert job.embedding is not None
                assert job.embedding_pack is not None
                vector = np.asarray(job.embedding, np.float32)
                done = enroller.enroll_embedding(job.person_id, job.face_id, vector, job.embedding_pack)
        finally:
            store.close()
    except QualityError as err:
        return (False, "quality", err.reason.value, str(err))
    except EnrolError as err:
        return (False, "enrol", err.reason.value, str(err))
    except FaceError as err:
        return (False, "face", "", str(err))
    return (True, done.template_id, "", "")


class FaceEnrolment:
    def __init__(
        self,
        pack_dir: Path,
        manifest: str | None,
        data_dir: Path,
        acl: Callable[[], AccessList],
        reload_readers: Callable[[], None],
    ) -> None:
        self.pack_dir = pack_dir
        self.manifest = manifest
        self.data_dir = data_dir
        self._acl = acl
        self._reload = reload_readers

    async def enrol_photo(self, person_id: str, face_id: str, photo: bytes) -> Enrolled:
        return await self._run(person_id, face_id, photo=photo)

    async def enrol_embedding(
        self, person_id: str, face_id: str, embedding: list[float], pack: str
    ) -> Enrolled:
        return await self._run(person_id, face_id, embedding=tuple(embedding), embedding_pack=pack)

    async def _run(
        self,
        person_id: str,
        face_id: str,
        *,
        photo: bytes | None = None,
        embedding: tuple[float, ...] | None = None,
        embedding_pack: str | None = None,
    ) -> Enrolled:
        acl = self._acl()
        person = acl.people.get(person_id)
        if person is None:
            raise EnrolError(EnrolProblem.UNKNOWN_PERSON, person_id)
        if not person.face_consent:
            raise EnrolError(EnrolProblem.NO_CONSENT, person_id)
        consenting = frozenset(p.id for p in acl.people.values() if p.face_consent)
        job = EnrolJob(
            self.pack_dir,
            self.manifest,
            self.data_dir,
            person_id,
            face_id,
            consenting,
            photo,
            embedding,
            embedding_pack,
        )
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            ok, value, reason, message = await loop.run_in_executor(pool, run_job, job)
        if not ok:
            detail = message.split(": ", 1)[1] if ": " in message else ""
            if value == "quality":
                raise QualityError(QualityProblem(reason), detail)
            if value == "enrol":
                raise EnrolError(EnrolProblem(reason), detail)
            raise FaceError(message)
        self._reload()
        from edge.face.enroll import Enrolled

        return Enrolled(value, face_id, person_id)
