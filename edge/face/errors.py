"""Errors of the face layer, each with a reason enum so callers branch on the reason, not on message text.

FaceError (a MenweiError)
├── PackError        a model pack is missing, malformed or does not match its manifest's hashes
├── QualityError     a photo cannot be enrolled (no face, several faces, too small, blurred, turned away, ...)
└── EnrolError       the enrolment is refused for a reason that is not the photo (consent, duplicate, ...)
"""

from __future__ import annotations

from enum import StrEnum

from edge.errors import MenweiError


class PackProblem(StrEnum):
    MANIFEST_MISSING = "manifest missing"
    MANIFEST_INVALID = "manifest invalid"
    FILE_MISSING = "model file missing"
    HASH_MISMATCH = "model file hash mismatch"
    LOAD_FAILED = "model failed to load"


class QualityProblem(StrEnum):
    UNREADABLE = "image unreadable"
    NO_FACE = "no face found"
    SEVERAL_FACES = "more than one face"
    TOO_SMALL = "face too small"
    BLURRED = "face not sharp enough"
    POSE = "face turned away"


class EnrolProblem(StrEnum):
    NO_CONSENT = "person has not consented to face recognition"
    UNKNOWN_PERSON = "unknown person"
    DUPLICATE = "face already enrolled under another person"
    WRONG_PACK = "embedding made by another model pack"
    BAD_EMBEDDING = "embedding has the wrong size or is not finite"


class FaceError(MenweiError):
    """Base of the face layer's errors."""


class PackError(FaceError):
    def __init__(self, reason: PackProblem, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class QualityError(FaceError):
    def __init__(self, reason: QualityProblem, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason


class EnrolError(FaceError):
    def __init__(self, reason: EnrolProblem, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
