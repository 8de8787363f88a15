"""A camera at the gate that reads QR passes: frames from a device, an RTSP stream, a video file or a folder of
images, decoded with OpenCV (drivers.qr.decoder), each new code handed to the gateway as a credential read.

Why a thread: OpenCV's capture and detection block for tens of milliseconds; the event loop must not. The
capture thread only reads, decodes and de-duplicates; a code reaches the loop through call_soon_threadsafe, so
everything after it (verification, decision, relay) runs on the loop as for any reader.

De-duplication: a phone held up to the camera is in many consecutive frames. A code is reported when it comes
into view, and again only after it has been out of view for `forget_after` seconds, so one presentation is
one decision and a visitor who steps back and shows it again is decided again.

A live source that fails to open or stops delivering frames is reported offline and re-opened with capped
backoff; a file or folder source ends the reader when it runs out (used by tests, the demo and replays). A
spool folder (SpoolFolderSource) is live: images dropped into it are frames, as long as the reader runs.

The console can take the next code the camera reads for a check instead of the door (`capture_next`, in
drivers.qr.threaded).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from drivers.qr.decoder import QrDecoder
from drivers.qr.threaded import ThreadedPassReader

if TYPE_CHECKING:
    from cv2.typing import MatLike

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})


class FrameSource(Protocol):
    """Blocking frames. `read` returns None at the end of a finite source; raises OSError when a live one
    fails."""

    live: bool

    def read(self) -> MatLike | None: ...

    def close(self) -> None: ...


class CaptureSource:
    """cv2.VideoCapture: a device index, an RTSP/HTTP URL, or a video file."""

    def __init__(self, spec: int | str) -> None:
        import cv2

        self.live = isinstance(spec, int) or "://" in str(spec)
        self._capture: Any = cv2.VideoCapture(spec)
        if not self._capture.isOpened():
            self._capture.release()
            raise OSError(f"cannot open video source {shown(spec)!r}")

    def read(self) -> MatLike | None:
        ok, frame = self._capture.read()
        if ok:
            return frame  # type: ignore[no-any-return]
        if self.live:
            raise OSError("the video source stopped delivering frames")
        return None

    def close(self) -> None:
        self._capture.release()


class ImageFolderSource:
    """Still images, in name order: a folder of them, or one image file."""

    live = False

    def __init__(self, path: Path) -> None:
        import cv2

        self._cv2: Any = cv2
        files = (
            sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if path.is_dir()
            else [path]
        )
        self._files = deque(files)

    def read(self) -> MatLike | None:
        while self._files:
            frame = self._cv2.imread(str(self._files.popleft()))
            if frame is not None:
                return frame  # type: ignore[no-any-return]
        return None

    def close(self) -> None:
        self._files.clear()


class SpoolFolderSource:
    """A folder that images are dropped into (whole: written elsewhere, then renamed in), as a camera that
    uploads snapshots does: each new image is one frame and is then deleted; while none waits, the scene is
    empty. Live: it never runs out; a folder that disappears is a failure (offline, retried)."""

    live = True

    def __init__(self, path: Path) -> None:
        import cv2
        import numpy as np

        if not path.is_dir():
            raise OSError(f"no such folder: {path}")
        self._cv2: Any = cv2
        self._path = path
        self._empty: MatLike = np.full((64, 64, 3), 128, dtype=np.uint8)  # nothing in view, cheap to decode

    def read(self) -> MatLike:
        for file in sorted(p for p in self._path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            frame = self._cv2.imread(str(file))
            file.unlink(missing_ok=True)
            if frame is not None:
                return frame  # type: ignore[no-any-return]
            log.warning("%s: not a readable image, dropped", file)
        return self._empty

    def close(self) -> None:
        pass


def shown(spec: int | str | Path) -> int | str | Path:
    """A source fit for a log line: a URL's password (put in from a credential) is masked."""
    if isinstance(spec, str) and "://" in spec:
        parts = urlsplit(spec)
        userinfo, at, host = parts.netloc.rpartition("@")
        if at and ":" in userinfo:
            return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}"))
    return spec


def open_source(spec: int | str | Path) -> FrameSource:
    """A device index (0 or "0"), an RTSP/HTTP URL, a video file, an image file or a folder of images."""
    if isinstance(spec, str) and spec.isdigit():
        spec = int(spec)
    if isinstance(spec, int):
        return CaptureSource(spec)
    if isinstance(spec, Path) or "://" not in spec:
        path = Path(spec)
        if not path.exists():
            raise OSError(f"no such file or folder: {path}")
        if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
            return ImageFolderSource(path)
        return CaptureSource(str(path))
    return CaptureSource(spec)


class Deduper:
    """Reports a code when it comes into view; again only after `forget_after` seconds out of view."""

    def __init__(self, forget_after: float = 2.0) -> None:
        self.forget_after = forget_after
        self._last_seen: dict[str, float] = {}

    def new(self, texts: Iterable[str], mono: float) -> list[str]:
        fresh = []
        for text in texts:
            last = self._last_seen.get(text)
            if last is None or mono - last > self.forget_after:
                fresh.append(text)
            self._last_seen[text] = mono
        for text in [t for t, seen in self._last_seen.items() if mono - seen > self.forget_after]:
            del self._last_seen[text]
        return fresh


class QrCameraReader(ThreadedPassReader):
    def __init__(
        self,
        reader_id: str,
        source: int | str | Path | Callable[[], FrameSource],
        *,
        forget_after: float = 2.0,
        max_fps: float = 10.0,
        retry_max_seconds: float = 30.0,
    ) -> None:
        super().__init__(reader_id, device="camera")
        self._open: Callable[[], FrameSource] = source if callable(source) else lambda: open_source(source)
        self._dedupe = Deduper(forget_after)
        self._min_interval = 1.0 / max_fps if max_fps > 0 else 0.0
        self._retry_max = retry_max_seconds
        self.frames = 0  # frames decoded, for diagnostics and tests

    # --- the capture thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        decoder = QrDecoder()
        delay = 1.0
        while not self._stop.is_set():
            try:
                source = self._open()
            except OSError as err:
                self._fault(str(err))
                self._stop.wait(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            self._recovered()
            delay = 1.0
            try:
                if self._capture(source, decoder):
                    return  # a finite source ran out
            except OSError as err:
                self._fault(str(err))
            finally:
                source.close()
        self.online = False

    def _capture(self, source: FrameSource, decoder: QrDecoder) -> bool:
        """Read frames until stopped (False) or the source ends (True)."""
        next_frame = 0.0
        while not self._stop.is_set():
            if self._min_interval and source.live:
                wait = next_frame - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)
                next_frame = time.monotonic() + self._min_interval
            frame = source.read()
            if frame is None:
                self.online = False
                return True
            texts = decoder.decode(frame)
            self.frames += 1
            for text in self._dedupe.new(texts, time.monotonic()):
                self._hand_over(text)
        return False
