"""What every QR pass reader shares: a blocking read loop in its own thread, scanned text handed to the event
loop, a device fault logged once (then at debug while it lasts, and "recovered" at info), and feedback kept
for diagnostics. The camera and the scanners differ only in their read loop (`_run`).

A read normally goes to the gateway (the door's decision). `capture_next` diverts the reader's next read to
one waiting caller instead (the guard console's "check with the gate camera": a dry run, nothing used): the
capture thread looks at one attribute per read, and only when a capture is pending does the read take the
loop-side detour that resolves it; the read after it goes to the door again."""

from __future__ import annotations

import asyncio
import logging
import threading
from abc import abstractmethod
from collections import deque
from dataclasses import dataclass

from drivers.reader import CaptureError, CredentialRead, Reader
from edge.model import CredentialKind

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Feedback:
    granted: bool
    reason: str


class ThreadedPassReader(Reader):
    def __init__(self, reader_id: str, *, device: str) -> None:
        super().__init__(reader_id)
        self._device = device  # "camera", "scanner": how the logs name it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._faulted = False
        self.feedback_log: deque[Feedback] = deque(maxlen=100)
        # Set and cleared on the loop only; the capture thread only reads it.
        self._pending_capture: asyncio.Future[CredentialRead] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self._device}-{self.id}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        pending = self._pending_capture
        if pending is not None and not pending.done():
            pending.set_exception(CaptureError(f"{self.id}: the reader stopped"))
        self._pending_capture = None
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self.online = False

    async def wait_finished(self) -> None:
        """Until a finite input (a file, a folder, a stream's EOF) has been read to its end, or the reader is
        stopped."""
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    async def feedback(self, granted: bool, reason: str) -> None:
        # Neither a camera nor a scanner shows the verdict itself (a scanner beeps on any good read): the door's
        # reader or the gate's screen does.
        self.feedback_log.append(Feedback(granted, reason))
        log.info("%s: pass %s (%s)", self.id, "granted" if granted else "refused", reason)

    def capture_next(self) -> asyncio.Future[CredentialRead]:
        """The next read of this reader, handed to the caller instead of the gateway (no decision, nothing
        used). Call on the event loop. Cancel the future to give up (a timeout, a request gone away): reads go
        to the door again at once. Raises CaptureError while another capture is pending; the future
        fails with it if the reader stops first."""
        if self._pending_capture is not None and not self._pending_capture.done():
            raise CaptureError(f"{self.id}: another check is already waiting for this reader")
        future: asyncio.Future[CredentialRead] = asyncio.get_running_loop().create_future()
        self._pending_capture = future
        future.add_done_callback(self._capture_done)
        return future

    @property
    def capturing(self) -> bool:
        return self._pending_capture is not None and not self._pending_capture.done()

    def _capture_done(self, future: asyncio.Future[CredentialRead]) -> None:
        if self._pending_capture is future:  # resolved, cancelled or failed: the door has the reader back
            self._pending_capture = None

    def _deliver(self, read: CredentialRead) -> None:
        """On the loop, for a read made while a capture was pending: to the capture if it still waits,
        otherwise (cancelled in the meantime, or a second code in the same frame) to the gateway."""
        future = self._pending_capture
        if future is not None and not future.done():
            self._pending_capture = None
            future.set_result(read)
        else:
            self._on_credential(read)

    @abstractmethod
    def _run(self) -> None:
        """Read until stopped, handing each scanned text to _hand_over. Runs in the reader's own thread."""

    def _hand_over(self, text: str) -> None:
        text = text.strip()
        if text and self._loop is not None:
            read = CredentialRead(self.id, CredentialKind.PASS, text)
            if self._pending_capture is None:  # the hot path: one attribute read more than before
                self._loop.call_soon_threadsafe(self._on_credential, read)
            else:
                self._loop.call_soon_threadsafe(self._deliver, read)

    def _fault(self, why: str) -> None:
        if not self._faulted:
            log.error("%s: %s offline: %s", self.id, self._device, why)
            self._faulted = True
        else:
            log.debug("%s: %s still offline: %s", self.id, self._device, why)
        self.online = False

    def _recovered(self) -> None:
        if self._faulted:
            log.info("%s: %s recovered", self.id, self._device)
            self._faulted = False
        self.online = True
