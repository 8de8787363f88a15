"""MiniFASNet: a texture-based presentation-attack score, an optional second liveness signal.

Why optional and second: on 28 real press photos against 180 simulated prints and screen replays it reached
AUC 0.931; at its authors' threshold (0.915) it refused 29% of real faces and let 10% of simulated attacks in
(../shared/models/MANIFEST.md). It sees paper edges, moire and screen glare that the landmark-motion check cannot,
and misses what fills the whole frame. Combined with LandmarkMotion under AllOf it only removes passes, never
adds them. Calibrate `threshold` on the gateway's own camera.

Two models (MiniFASNetV2 on the face box scaled 2.7x, MiniFASNetV1SE scaled 4x), each file checked against its
sha-256 like a model pack. Pre-processing follows the original project: the scaled box is shifted back inside
the image (not clipped), resized to 80x80, raw BGR 0-255 float32, NCHW; softmax; index 1 is "live"; the two
models' live probabilities are averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.face.errors import PackError, PackProblem
from edge.face.liveness import Observation, Verdict
from edge.face.packs import sha256_file
from edge.face.pipeline import Face, Image, Tuning, session_options

MODELS: tuple[tuple[str, float, str], ...] = (
    ("2.7_80x80_MiniFASNetV2.onnx", 2.7, "4433e871ef03f6c4c13de1757e63dcd69db14b6d7d9cff2319cb274c0f6dbecb"),
    (
        "4_0_0_80x80_MiniFASNetV1SE.onnx",
        4.0,
        "a8e67ffbaf39fa74c3b2ed673b530fcfb2f47379d0f26a52b71c2fc6473ec20f",
    ),
)
SIZE = 80


def scaled_box(face: Face, scale: float, width: int, height: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = face.box
    w, h = x2 - x1 + 1, y2 - y1 + 1
    s = min(scale, (height - 1) / h, (width - 1) / w)
    cx, cy = x1 + w / 2, y1 + h / 2
    nw, nh = w * s, h * s
    left, top = cx - nw / 2, cy - nh / 2
    left = min(max(left, 0.0), width - 1 - nw)  # shift back inside, keep the size
    top = min(max(top, 0.0), height - 1 - nh)
    return int(left), int(top), int(left + nw), int(top + nh)


@dataclass
class MiniFasnet:
    directory: Path
    threshold: float = 0.5
    frames: int = 3
    tuning: Tuning | None = None
    name: str = "minifasnet"
    needs_frames: bool = True

    def __post_init__(self) -> None:
        import onnxruntime

        self._sessions: list[tuple[Any, float]] = []
        for file, scale, sha in MODELS:
            path = self.directory / file
            try:
                actual = sha256_file(path)
            except OSError as err:
                raise PackError(PackProblem.FILE_MISSING, f"anti-spoofing model {path}") from err
            if actual != sha:
                raise PackError(PackProblem.HASH_MISMATCH, f"{path}: sha256 {actual}, expected {sha}")
            session = onnxruntime.InferenceSession(
                str(path), session_options(self.tuning or Tuning()), providers=["CPUExecutionProvider"]
            )
            self._sessions.append((session, scale))

    def score(self, frame: Image, face: Face) -> float:
        """Probability that `face` in `frame` is live, averaged over both models."""
        import cv2

        h, w = frame.shape[:2]
        total = 0.0
        for session, scale in self._sessions:
            x1, y1, x2, y2 = scaled_box(face, scale, w, h)
            crop = cv2.resize(frame[y1 : y2 + 1, x1 : x2 + 1], (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
            blob = crop.astype(np.float32).transpose(2, 0, 1)[None]
            logits = np.asarray(session.run(None, {session.get_inputs()[0].name: blob})[0], np.float64)[0]
            p = np.exp(logits - logits.max())
            total += float(p[1] / p.sum())
        return total / len(self._sessions)

    def verdict(self, history: Sequence[Observation]) -> Verdict:
        recent = [o for o in list(history)[-self.frames :] if o.frame is not None]
        if not recent:
            return Verdict(False, "no frames to score")
        live = float(np.mean([self.score(o.frame, o.face) for o in recent if o.frame is not None]))
        if live < self.threshold:
            return Verdict(
                False, f"texture looks like a presentation attack ({live:.2f} < {self.threshold})", live
            )
        return Verdict(True, f"texture live {live:.2f}", live)
