"""Presentation-attack detection (liveness): is the face at the camera a live person, not a photo or a screen?

Pluggable: a check looks at a tracked face's recent observations and returns a verdict; `AllOf` combines
checks (every one must pass). Shipped:

`LandmarkMotion` (multi-frame, always on). A printed photo or a phone screen is a flat picture: moving it
moves all five landmarks together (shift, scale, in-plane rotation: a similarity transform). A live face
turns a little, breathes, talks: the nose moves against the eyes and the mouth against both. Each
observation's landmarks are fitted to the first one's with the best similarity transform; what the fit cannot
explain (RMS residual in units of the eye distance) is non-rigid motion. Over at least `min_frames` frames,
the median of it must reach `min_motion` (the median, not the maximum: detector jitter makes single outliers).
Measured with both packs on a real photo moved rigidly with camera noise: median 0.018-0.027, single frames up
to 0.044; the same person in photos with other head poses: 0.06-0.15. Default 0.05.

What it stops: a still photo or a frozen/replayed frame held in front of the camera, moved or not (shifted,
tilted in plane, brought closer), and a replayed sequence of identical frames.
What it does not stop: a video of the person replayed on a screen (it has natural motion), a photo bent or
turned strongly out of plane (perspective is not a similarity; with a large enough tilt it can exceed the
threshold), a 3-D mask. Detector jitter on a real camera adds some residual to a still photo too, so
`min_motion` must stay above the camera's jitter: calibrate it on the gateway's own camera. Doors that need
more combine the face with a card, PIN or phone key (edge.face.factors) and/or a texture model such as
MiniFASNet (a second signal, not a guarantee: see ../shared/models/MANIFEST.md for its measured rates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edge.face.pipeline import Face, Image


@dataclass(frozen=True, slots=True)
class Observation:
    face: Face
    frame: Image | None = None  # for checks that look at pixels (texture models); None when not kept


@dataclass(frozen=True, slots=True)
class Verdict:
    live: bool
    reason: str
    score: float = 0.0


class LivenessCheck(Protocol):
    @property
    def name(self) -> str: ...

    def verdict(self, history: Sequence[Observation]) -> Verdict: ...


def similarity_residual(reference: npt.NDArray[np.float32], points: npt.NDArray[np.float32]) -> float:
    """RMS distance between `reference` and `points` after the best similarity transform of `points` onto it
    (least squares, Umeyama), divided by the reference's eye distance."""
    ref = reference.astype(np.float64)
    pts = points.astype(np.float64)
    mu_r, mu_p = ref.mean(axis=0), pts.mean(axis=0)
    r, p = ref - mu_r, pts - mu_p
    var_p = float((p**2).sum())
    if var_p == 0:
        return float("inf")
    u, s, vt = np.linalg.svd(p.T @ r)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    correction = np.diag([1.0, d])
    rotation = u @ correction @ vt
    scale = float((s * np.diag(correction)).sum()) / var_p
    fitted = scale * p @ rotation
    rms = float(np.sqrt(((fitted - r) ** 2).sum(axis=1).mean()))
    eye_distance = float(np.linalg.norm(ref[1] - ref[0])) or 1.0
    return rms / eye_distance


@dataclass(frozen=True, slots=True)
class LandmarkMotion:
    min_frames: int = 5
    min_motion: float = 0.05
    name: str = "landmark-motion"

    def verdict(self, history: Sequence[Observation]) -> Verdict:
        if len(history) < self.min_frames:
            return Verdict(False, f"needs {self.min_frames} frames, has {len(history)}")
        observations = list(history)
        reference = observations[0].face.landmarks
        motion = float(
            np.median([similarity_residual(reference, o.face.landmarks) for o in observations[1:]])
        )
        if motion < self.min_motion:
            return Verdict(False, f"no natural motion ({motion:.3f} < {self.min_motion})", motion)
        return Verdict(True, f"natural motion {motion:.3f}", motion)


@dataclass(frozen=True, slots=True)
class AllOf:
    checks: tuple[LivenessCheck, ...]
    name: str = "all-of"

    @property
    def needs_frames(self) -> bool:
        """Whether any check looks at pixels (the camera loop then keeps frames in the observations)."""
        return any(getattr(c, "needs_frames", False) for c in self.checks)

    def verdict(self, history: Sequence[Observation]) -> Verdict:
        reasons = []
        for check in self.checks:
            v = check.verdict(history)
            if not v.live:
                return Verdict(False, f"{check.name}: {v.reason}", v.score)
            reasons.append(f"{check.name}: {v.reason}")
        return Verdict(True, "; ".join(reasons))
