"""Enrolment: a photo (or an embedding made elsewhere) becomes a sealed template and a gallery row, or a refusal
with its reason.

Checks, in order: the person is known and has consented (Person.face_consent); the photo passes the quality
gates (edge.face.quality); an embedding from the cloud was made by the same model pack (embeddings of two
packs are not comparable); the face is not already enrolled under someone else. A duplicate is refused and
reported, never silently added: two people sharing one face would let either open the other's doors, and it
usually means a mix-up of photos at the office.

Sources: `enroll_image` / `enroll_embedding` (the cloud contract, one at a time) and `photo_jobs` (a folder
on the command line: one sub-folder per person named by person id, or a CSV with person_id,path).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.face.errors import EnrolError, EnrolProblem
from edge.face.gallery import Gallery
from edge.face.pipeline import Embedding, FacePipeline, Image, read_image
from edge.face.quality import QualityGates, enrolment_face
from edge.face.templates import TemplateStore
from edge.model import Person

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})


@dataclass(frozen=True, slots=True)
class Enrolled:
    template_id: str
    face_id: str
    person_id: str


@dataclass(frozen=True, slots=True)
class PhotoJob:
    person_id: str
    path: Path


class Enroller:
    def __init__(
        self,
        pipeline: FacePipeline,
        store: TemplateStore,
        gallery: Gallery,
        people: Mapping[str, Person],
        *,
        gates: QualityGates | None = None,
        duplicate_threshold: float | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.gallery = gallery
        self.people = people
        self.gates = gates or QualityGates()
        thresholds = pipeline.pack.manifest.thresholds
        self.duplicate_threshold = thresholds.match if duplicate_threshold is None else duplicate_threshold

    def enroll_image(self, person_id: str, face_id: str, image: Image, source: str = "") -> Enrolled:
        self._person(person_id)  # consent before we even look at the face
        _, aligned = enrolment_face(self.pipeline, image, self.gates)
        return self._admit(person_id, face_id, self.pipeline.embed(aligned), source)

    def enroll_file(self, person_id: str, face_id: str, path: Path) -> Enrolled:
        self._person(person_id)
        return self.enroll_image(person_id, face_id, read_image(path), source=path.name)

    def enroll_embedding(
        self, person_id: str, face_id: str, embedding: Embedding, pack: str, source: str = "cloud"
    ) -> Enrolled:
        self._person(person_id)
        if pack != self.pipeline.pack.name:
            raise EnrolError(
                EnrolProblem.WRONG_PACK, f"made by {pack}, this gateway runs {self.pipeline.pack.name}"
            )
        vector = np.asarray(embedding, np.float32).reshape(-1)
        norm = float(np.linalg.norm(vector))
        if vector.shape != (self.pipeline.embedding_size,) or not np.isfinite(vector).all() or norm == 0:
            raise EnrolError(EnrolProblem.BAD_EMBEDDING, f"{vector.shape[0]} values")
        return self._admit(person_id, face_id, vector / norm, source)

    def _person(self, person_id: str) -> Person:
        person = self.people.get(person_id)
        if person is None:
            raise EnrolError(EnrolProblem.UNKNOWN_PERSON, person_id)
        if not person.face_consent:
            raise EnrolError(EnrolProblem.NO_CONSENT, person_id)
        return person

    def _admit(self, person_id: str, face_id: str, embedding: Embedding, source: str) -> Enrolled:
        found = self.gallery.search(embedding, threshold=self.duplicate_threshold, margin=0.0)
        if found.score >= self.duplicate_threshold and found.person_id != person_id:
            raise EnrolError(
                EnrolProblem.DUPLICATE,
                f"matches {found.person_id} (similarity {found.score:.2f}); not enrolled for {person_id}",
            )
        template_id = self.store.add(face_id, person_id, self.pipeline.pack.name, embedding, source)
        self.gallery.add(face_id, person_id, embedding)
        return Enrolled(template_id, face_id, person_id)


def photo_jobs(source: Path) -> Iterator[PhotoJob]:
    """Photos to enrol: a CSV file (columns person_id and path, relative to the CSV) or a folder with one
    sub-folder per person, named by the person's id."""
    if source.is_file():
        with source.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                yield PhotoJob(row["person_id"].strip(), source.parent / row["path"].strip())
        return
    for folder in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                yield PhotoJob(folder.name, path)


def load_gallery(
    store: TemplateStore, pipeline: FacePipeline, people: Mapping[str, Person], threads: int = 1
) -> Gallery:
    """The gallery for this gateway's pack from the sealed store, after deleting the templates of anyone who
    is no longer in the access list or has withdrawn consent."""
    store.retain(p.id for p in people.values() if p.face_consent)
    gallery = Gallery(pipeline.embedding_size, threads=threads)
    for template in store.load(pipeline.pack.name):
        if template.embedding.shape == (gallery.dim,):
            gallery.add(template.face_id, template.person_id, template.embedding)
    return gallery
