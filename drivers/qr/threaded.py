"""What every QR pass reader shares: a blocking read loop in its own thread, scanned text handed to the event
loop, a device fault logged once (then at debug while it lasts, and "recovered" at info), and feedback kept
for diagnostics. The camera and the scanners differ only in their read loop (`_run`)."""

from __future__ import annotations

import asyncio
import logging
import threading
from abc import abstractmethod
from collections import deque
from dataclasses import dataclass

from drivers.reader import CredentialRead, Reader
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

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self._device}-{self.id}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
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

    @abstractmethod
    def _run(self) -> None:
        """Read until stopped, handing each scanned text to _hand_over. Runs in the reader's own thread."""

    def _hand_over(self, text: str) -> None:
        text = text.strip()
        if text and self._loop is not None:
            read = CredentialRead(self.id, CredentialKind.PASS, text)
            self._loop.call_soon_threadsafe(self._on_credential, read)

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
