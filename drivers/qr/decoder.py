"""Finding and decoding QR codes in one camera frame.

Why QRCodeDetectorAruco and a sharpened second look: with OpenCV 5.0, plain cv2.QRCodeDetector misses codes in
a half-scale frame (2 pixels per module), and on a blurred frame both detectors often find the code but cannot
read it. The Aruco-based detector finds the small code; when a frame yields a code it cannot read, the frame is
sharpened (an unsharp mask, twice as strong the second time) and read again, which recovers moderate defocus.
Only a frame where a code was found but not read gets the second look, so an empty scene costs one pass (about
10-30 ms for 1280x720 here) and an unreadable code up to three.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cv2.typing import MatLike

# (sigma, amount) of the unsharp masks tried after a plain read finds nothing.
SHARPEN_STEPS: tuple[tuple[float, float], ...] = ((2.0, 1.5), (3.0, 2.5))


class QrDecoder:
    """Not thread-safe: one per capture thread."""

    def __init__(self) -> None:
        import cv2

        self._cv2: Any = cv2
        self._detector = cv2.QRCodeDetectorAruco()

    def decode(self, frame: MatLike) -> list[str]:
        """The texts of every QR code read in `frame` (BGR or grayscale), in detection order, without repeats."""
        cv2 = self._cv2
        gray = frame if len(frame.shape) == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        found, texts = self._read(gray)
        for sigma, amount in SHARPEN_STEPS:
            if texts or not found:
                break
            blurred = cv2.GaussianBlur(gray, (0, 0), sigma)
            found, texts = self._read(cv2.addWeighted(gray, 1 + amount, blurred, -amount, 0))
        return texts

    def _read(self, gray: MatLike) -> tuple[bool, list[str]]:
        """(a code was found, the texts read)."""
        ok, texts, _points, _codes = self._detector.detectAndDecodeMulti(gray)
        return bool(ok), list(dict.fromkeys(t for t in texts if t)) if ok else []
