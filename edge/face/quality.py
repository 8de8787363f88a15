"""Quality gates for enrolment photos, each failure with its reason.

Why gate at all: one bad template (a blurred photo, a face in profile, the wrong person in a group photo) makes
a resident wait at the door every day, or worse matches someone else. Refusing it at enrolment, with a reason
the operator can act on ("face too small: 62 px, need 80"), is cheaper than debugging it at the gate.

- Exactly one face: a group photo does not say who the resident is.
- Size: the smaller side of the face box in pixels.
- Sharpness: variance of the Laplacian of the aligned 112x112 crop (blur removes high frequencies). On the
  labelled photos sharp faces score 180-4900 and the same faces blurred score 5-15; the default is 40.
- Pose from the five landmarks: yaw as the nose's offset from the eyes' midpoint over the eye distance
  (frontal photos give |yaw| <= 0.27; a profile about 0.6 and beyond), roll as the eye line's angle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge.face.errors import QualityError, QualityProblem
from edge.face.pipeline import Face, FacePipeline, Image


@dataclass(frozen=True, slots=True)
class QualityGates:
    min_face_px: float = 80.0
    min_sharpness: float = 40.0
    max_yaw: float = 0.45
    max_roll_degrees: float = 30.0


@dataclass(frozen=True, slots=True)
class Pose:
    yaw: float  # nose offset / eye distance; 0 frontal, sign = direction
    roll_degrees: float


def pose(face: Face) -> Pose:
    left_eye, right_eye, nose = face.landmarks[0], face.landmarks[1], face.landmarks[2]
    dx, dy = float(right_eye[0] - left_eye[0]), float(right_eye[1] - left_eye[1])
    eye_distance = math.hypot(dx, dy) or 1.0
    mid_x = float(left_eye[0] + right_eye[0]) / 2
    return Pose(yaw=(float(nose[0]) - mid_x) / eye_distance, roll_degrees=math.degrees(math.atan2(dy, dx)))


def sharpness(aligned: Image) -> float:
    import cv2

    gray = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def single_face(faces: list[Face]) -> Face:
    if not faces:
        raise QualityError(QualityProblem.NO_FACE)
    if len(faces) > 1:
        raise QualityError(QualityProblem.SEVERAL_FACES, f"{len(faces)} faces in the photo")
    return faces[0]


def check_face(face: Face, aligned: Image, gates: QualityGates) -> None:
    """Raise QualityError with the first gate `face` fails."""
    if face.size < gates.min_face_px:
        raise QualityError(
            QualityProblem.TOO_SMALL, f"{face.size:.0f} px, need at least {gates.min_face_px:.0f}"
        )
    p = pose(face)
    if abs(p.yaw) > gates.max_yaw or abs(p.roll_degrees) > gates.max_roll_degrees:
        raise QualityError(
            QualityProblem.POSE,
            f"yaw {p.yaw:+.2f} (limit {gates.max_yaw}), roll {p.roll_degrees:+.0f} deg "
            f"(limit {gates.max_roll_degrees:.0f})",
        )
    sharp = sharpness(aligned)
    if sharp < gates.min_sharpness:
        raise QualityError(QualityProblem.BLURRED, f"sharpness {sharp:.0f}, need {gates.min_sharpness:.0f}")


def enrolment_face(pipeline: FacePipeline, image: Image, gates: QualityGates) -> tuple[Face, Image]:
    """The one face of an enrolment photo and its aligned crop, or QualityError saying why not."""
    face = single_face(pipeline.detect(image))
    aligned = pipeline.align(image, face)
    check_face(face, aligned, gates)
    return face, aligned
