"""Synthetic camera frames holding a QR code, for tests, the benchmark and the demo: what a 1280x720 gate
camera sees when a visitor holds up a phone, with the blur of a missed focus or the loss of a smaller frame.

The code is drawn with the real renderer (edge.passes.issue, qrcode) and placed on a noisy grey background
like a scene; nothing here decodes. Needs the `qr` extra (OpenCV, qrcode, Pillow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge.passes.issue import render_qr_png

if TYPE_CHECKING:
    from cv2.typing import MatLike

WIDTH, HEIGHT = 1280, 720


def _cv2() -> Any:
    import cv2

    return cv2


def qr_frame(
    text: str | None,
    *,
    module_px: int = 5,
    blur_sigma: float = 0.0,
    scale: float = 1.0,
    at: tuple[int, int] = (440, 120),
    seed: int = 0,
) -> MatLike:
    """A BGR frame, WIDTH x HEIGHT times `scale`, with `text` as a QR code (`module_px` pixels per module)
    whose top-left corner is at `at`; None gives the empty scene. `blur_sigma` blurs the whole frame (a
    camera out of focus) before scaling; `scale` < 1 is a smaller frame (a lower-resolution stream)."""
    import numpy as np

    cv2 = _cv2()
    rng = np.random.default_rng(seed)
    gray = (rng.integers(0, 40, (HEIGHT, WIDTH), dtype=np.uint8) + 110).astype(np.uint8)
    if text is not None:
        code = cv2.imdecode(
            np.frombuffer(render_qr_png(text, box_size=module_px), np.uint8), cv2.IMREAD_GRAYSCALE
        )
        x, y = at
        h, w = code.shape
        if x + w > WIDTH or y + h > HEIGHT:
            raise ValueError(f"a {w}x{h} code does not fit at {at} in a {WIDTH}x{HEIGHT} frame")
        gray[y : y + h, x : x + w] = code
    if blur_sigma > 0:
        gray = cv2.GaussianBlur(gray, (0, 0), blur_sigma)
    if scale != 1.0:
        size = (round(WIDTH * scale), round(HEIGHT * scale))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)  # type: ignore[no-any-return]


class ListSource:
    """A finite frame source (drivers.qr.camera.FrameSource) over frames made in memory."""

    live = False

    def __init__(self, frames: list[MatLike]) -> None:
        self._frames = list(frames)

    def read(self) -> MatLike | None:
        return self._frames.pop(0) if self._frames else None

    def close(self) -> None:
        self._frames.clear()
