"""The camera loop's logic, one frame at a time: motion gate, detection, distance gate, tracking, recognition,
agreement over consecutive frames, liveness, cool-down, unknown-face reports.

Why these steps, for a door camera on a small CPU:
- Motion gate: most of the day nobody is at the door. A frame that differs from the previous one by less than
  `motion_threshold` (mean absolute difference of a 160x120 grey thumbnail, 0-255) while nobody is tracked is
  skipped before the detector runs.
- Distance gate: a face smaller than `min_face_px` is someone passing by on the path, not someone at the door.
- Tracking: faces are matched to the previous frame's by box overlap (IoU), so one approach is one track, and
  a track is recognised once: after its decision it is only followed, not embedded again.
- Agreement: a track is recognised when `agree_frames` consecutive frames match the same face id (threshold
  and margin from the pack), and then only if the liveness check passes on its observations. One lucky frame
  never opens a door.
- Cool-down: a recognised person is not reported again for `cooldown_seconds` (someone who steps back and
  forth in front of the camera, or is re-tracked after an occlusion, is not decided twice).
- Unknown faces: a track that lingers `unknown_after_seconds` without matching anyone is reported once with a
  small cropped snapshot (JPEG) for the guard; a track that matches but never shows liveness within
  `liveness_timeout_seconds` is reported once as a presentation attack.

Pure and synchronous (no threads, no clock of its own: the caller passes `now`), so it is tested frame by frame
and runs unchanged inside the worker process (drivers.face.worker).
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from edge.face.gallery import Gallery
from edge.face.liveness import LandmarkMotion, LivenessCheck, Observation
from edge.face.pipeline import Face, FacePipeline, Image


@dataclass(frozen=True, slots=True)
class LoopSettings:
    min_face_px: float = 80.0
    agree_frames: int = 3
    cooldown_seconds: float = 10.0
    track_timeout_seconds: float = 1.0
    unknown_after_seconds: float = 3.0
    liveness_timeout_seconds: float = 4.0
    motion_threshold: float = 2.0
    history: int = 15
    snapshot_px: int = 160
    match_threshold: float | None = None  # None: the pack's default
    margin: float | None = None


class OutcomeKind(StrEnum):
    RECOGNISED = "recognised"
    UNKNOWN = "unknown"
    SPOOF = "presentation attack suspected"


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    track: int
    at: float
    face_id: str | None = None
    person_id: str | None = None
    score: float = 0.0
    reason: str = ""
    snapshot: bytes | None = field(default=None, repr=False)  # JPEG, UNKNOWN only


@dataclass(slots=True)
class _Track:
    id: int
    box: tuple[float, float, float, float]
    first_seen: float
    last_seen: float
    history: deque[Observation]
    streak_face: str | None = None
    streak_person: str | None = None
    streak: int = 0
    best_score: float = -1.0
    done: bool = False


# Seconds per pipeline stage and face (detection: per frame). On a Pi-class CPU detection and embedding take
# tens of milliseconds; liveness with a texture model as much again; a 1:N search at 100k under 10 ms.
STAGE_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
FACE_STAGES = ("detection", "embedding", "match", "liveness")


@dataclass(slots=True)
class StageTimes:
    """A histogram of one stage's durations: counts per STAGE_BUCKETS bound (the last is +Inf) and their sum.
    Plain ints and a bisect, like the gateway's decision stats: no lock, pickled with the heartbeat."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(STAGE_BUCKETS) + 1))
    seconds: float = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(STAGE_BUCKETS, seconds)] += 1
        self.seconds += seconds

    def plus(self, other: StageTimes) -> StageTimes:
        return StageTimes(
            [a + b for a, b in zip(self.buckets, other.buckets, strict=True)], self.seconds + other.seconds
        )


@dataclass(slots=True)
class LoopStats:
    frames: int = 0
    skipped_still: int = 0
    detected: int = 0
    embedded: int = 0
    stages: dict[str, StageTimes] = field(default_factory=lambda: {s: StageTimes() for s in FACE_STAGES})

    def plus(self, other: LoopStats) -> LoopStats:
        """Both added up: the totals of a reader across its worker's restarts."""
        return LoopStats(
            self.frames + other.frames,
            self.skipped_still + other.skipped_still,
            self.detected + other.detected,
            self.embedded + other.embedded,
            {s: self.stages[s].plus(other.stages[s]) for s in FACE_STAGES},
        )


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


class FaceLoop:
    def __init__(
        self,
        pipeline: FacePipeline,
        gallery: Gallery,
        settings: LoopSettings | None = None,
        liveness: LivenessCheck | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.gallery = gallery
        self.settings = settings or LoopSettings()
        self.liveness: LivenessCheck = liveness or LandmarkMotion()
        self._keep_frames = bool(getattr(self.liveness, "needs_frames", False))  # texture checks need pixels
        thresholds = pipeline.pack.manifest.thresholds
        self.threshold = (
            self.settings.match_threshold if self.settings.match_threshold is not None else thresholds.match
        )
        self.margin = self.settings.margin if self.settings.margin is not None else thresholds.margin
        self.stats = LoopStats()
        stages = self.stats.stages
        self._detection, self._embedding = stages["detection"], stages["embedding"]
        self._match, self._liveness = stages["match"], stages["liveness"]
        self._tracks: list[_Track] = []
        self._ids = itertools.count(1)
        self._last_reported: dict[str, float] = {}
        self._previous: Image | None = None

    def process(self, frame: Image, now: float) -> list[Outcome]:
        self.stats.frames += 1
        self._tracks = [t for t in self._tracks if now - t.last_seen <= self.settings.track_timeout_seconds]
        if not self._moved(frame) and not self._tracks:
            self.stats.skipped_still += 1
            return []
        started = time.perf_counter()
        detected = self.pipeline.detect(frame)
        self._detection.observe(time.perf_counter() - started)
        faces = [f for f in detected if f.size >= self.settings.min_face_px]
        self.stats.detected += len(faces)
        out: list[Outcome] = []
        for face, track in self._associate(faces, now):
            outcome = self._step(track, face, frame, now)
            if outcome is not None:
                out.append(outcome)
        return out

    def _moved(self, frame: Image) -> bool:
        import cv2

        small = cv2.cvtColor(cv2.resize(frame, (160, 120), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        previous, self._previous = self._previous, small
        if previous is None:
            return True
        return float(cv2.absdiff(small, previous).mean()) >= self.settings.motion_threshold

    def _associate(self, faces: list[Face], now: float) -> list[tuple[Face, _Track]]:
        pairs = sorted(
            ((iou(f.box, t.box), i, j) for i, f in enumerate(faces) for j, t in enumerate(self._tracks)),
            reverse=True,
        )
        used_faces: set[int] = set()
        used_tracks: set[int] = set()
        matched: list[tuple[Face, _Track]] = []
        for overlap, i, j in pairs:
            if overlap < 0.3:
                break
            if i in used_faces or j in used_tracks:
                continue
            used_faces.add(i)
            used_tracks.add(j)
            matched.append((faces[i], self._tracks[j]))
        for i, face in enumerate(faces):
            if i not in used_faces:
                track = _Track(next(self._ids), face.box, now, now, deque(maxlen=self.settings.history))
                self._tracks.append(track)
                matched.append((face, track))
        for face, track in matched:
            track.box = face.box
            track.last_seen = now
        return matched

    def _step(self, track: _Track, face: Face, frame: Image, now: float) -> Outcome | None:
        if track.done:
            return None
        track.history.append(Observation(face, frame if self._keep_frames else None))
        self.stats.embedded += 1
        started = time.perf_counter()
        embedding = self.pipeline.embed_face(frame, face)
        embedded = time.perf_counter()
        found = self.gallery.search(embedding, threshold=self.threshold, margin=self.margin)
        self._embedding.observe(embedded - started)
        self._match.observe(time.perf_counter() - embedded)
        track.best_score = max(track.best_score, found.score)
        if found.matched:
            if found.face_id == track.streak_face:
                track.streak += 1
            else:
                track.streak_face, track.streak_person, track.streak = found.face_id, found.person_id, 1
        else:
            track.streak_face, track.streak_person, track.streak = None, None, 0
        age = now - track.first_seen
        if track.streak >= self.settings.agree_frames:
            assert track.streak_face is not None
            assert track.streak_person is not None
            started = time.perf_counter()
            verdict = self.liveness.verdict(track.history)
            self._liveness.observe(time.perf_counter() - started)
            if verdict.live:
                track.done = True
                last = self._last_reported.get(track.streak_person)
                if last is not None and now - last < self.settings.cooldown_seconds:
                    return None
                self._last_reported[track.streak_person] = now
                return Outcome(
                    OutcomeKind.RECOGNISED,
                    track.id,
                    now,
                    track.streak_face,
                    track.streak_person,
                    found.score,
                    verdict.reason,
                )
            if age >= self.settings.liveness_timeout_seconds:
                track.done = True
                return Outcome(
                    OutcomeKind.SPOOF,
                    track.id,
                    now,
                    track.streak_face,
                    track.streak_person,
                    found.score,
                    verdict.reason,
                    self._snapshot(frame, face),
                )
            return None
        if track.streak == 0 and age >= self.settings.unknown_after_seconds:
            track.done = True
            return Outcome(
                OutcomeKind.UNKNOWN,
                track.id,
                now,
                score=track.best_score,
                reason=f"best similarity {track.best_score:.2f}",
                snapshot=self._snapshot(frame, face),
            )
        return None

    def _snapshot(self, frame: Image, face: Face) -> bytes:
        """A small JPEG of the face with some margin, at most snapshot_px on its longer side."""
        import cv2

        h, w = frame.shape[:2]
        pad = 0.25 * max(face.width, face.height)
        x1, y1 = max(0, int(face.box[0] - pad)), max(0, int(face.box[1] - pad))
        x2, y2 = min(w, int(face.box[2] + pad)), min(h, int(face.box[3] + pad))
        crop = frame[y1:y2, x1:x2]
        scale = min(1.0, self.settings.snapshot_px / max(crop.shape[:2]))
        if scale < 1.0:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 80])
        return bytes(np.asarray(data).tobytes()) if ok else b""
