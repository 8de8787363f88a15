"""A Wiegand reader (card and keypad) behind a Wiegand-to-serial converter, read through pyserial.

The converter prints one line per card or key (format: lines.py). Cards become CARD credentials with the
decimal card number; keys are collected into a PIN that '#' submits ('*' clears; an unfinished PIN is dropped
after pin_timeout). A line that is not a card, or a frame that fails its parity, is logged (once as a warning,
then at debug while it lasts), counted and dropped: a misread must never become another card.

A Wiegand reader cannot be told anything back over the converter, so feedback is the reader's own LED/beeper
wiring (or the door's) and is only recorded here. The serial port is read in a thread (pyserial blocks); lines
reach the loop with call_soon_threadsafe. An unplugged converter is reported offline and reopened with capped
backoff.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.keypad import PinBuffer
from drivers.qr.line_scanner import LineAssembler
from drivers.reader import CredentialRead, Reader, ReaderCondition
from drivers.wiegand.decoder import Card, WiegandError, WiegandErrorReason, WiegandFormat
from drivers.wiegand.lines import Key, LineFormat
from edge.model import CredentialKind

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
MAX_PIN = 12


@dataclass(frozen=True, slots=True)
class Feedback:
    granted: bool
    reason: str


class WiegandConverterReader(Reader):
    def __init__(
        self,
        reader_id: str,
        port: str,
        *,
        card_format: WiegandFormat,
        line_format: str = "bits",
        baudrate: int = 9600,
        facility: int | None = None,
        pin_timeout: float = 10.0,
        open_port: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(reader_id)
        self.port = port
        self.baudrate = baudrate
        self.card_format = card_format
        self.lines = LineFormat(line_format)
        self.facility = facility
        self.pin_timeout = pin_timeout
        self.counters: Counter[str] = Counter()  # cards, pins, garbled, parity
        self.feedback_log: deque[Feedback] = deque(maxlen=100)
        self.serial: Any = None  # the open port (tests write into a loop:// port through it)
        self._open_port = open_port or self._default_open
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pins = PinBuffer(pin_timeout, MAX_PIN)
        self._garbled_run = False
        self._reported: bool | None = None  # last online state reported

    def _default_open(self) -> Any:
        import serial

        return serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=POLL_SECONDS)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"wiegand-{self.id}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self.online = False

    async def feedback(self, granted: bool, reason: str) -> None:
        self.feedback_log.append(Feedback(granted, reason))

    # --- on the loop -----------------------------------------------------------------------------------------

    def handle_line(self, line: str) -> None:
        """One line from the converter (public so installers' tools and tests can feed lines directly)."""
        try:
            item = self.lines.parse(line, self.card_format)
        except WiegandError as err:
            self.counters["parity" if err.reason is WiegandErrorReason.PARITY else "garbled"] += 1
            if not self._garbled_run:
                log.warning("%s: unreadable frame dropped: %s", self.id, err)
                self._garbled_run = True
            else:
                log.debug("%s: unreadable frame dropped: %s", self.id, err)
            return
        self._garbled_run = False
        if isinstance(item, Card):
            self._pins.clear()
            self.counters["cards"] += 1
            value = item.credential_value(self.facility)
            self._on_credential(CredentialRead(self.id, CredentialKind.CARD, value))
        else:
            self._key(item)

    def _key(self, key: Key) -> None:
        pin = self._pins.key(key.key)
        if pin is not None:
            self.counters["pins"] += 1
            self._on_credential(CredentialRead(self.id, CredentialKind.PIN, pin))

    def _condition(self, online: bool, detail: str) -> None:
        previous, self._reported = self._reported, online
        self.online = online
        if previous is not online and not (previous is None and online):  # a first "online" is not news
            self._on_condition(self.id, ReaderCondition.OFFLINE, not online, detail)

    # --- the serial thread -----------------------------------------------------------------------------------

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args)

    def _run(self) -> None:
        import serial

        delay, faulted = 0.5, False
        assembler = LineAssembler(max_line=256)
        while not self._stop.is_set():
            try:
                port = self._open_port()
            except (serial.SerialException, OSError, ValueError) as err:
                if not faulted:
                    log.error("%s: converter on %s not available: %s", self.id, self.port, err)
                    self._post(self._condition, False, str(err))
                    faulted = True
                else:
                    log.debug("%s: converter still not available: %s", self.id, err)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            if faulted:
                log.info("%s: converter on %s back", self.id, self.port)
            delay, faulted = 0.5, False
            self.serial = port
            self._post(self._condition, True, "port open")
            try:
                while not self._stop.is_set():
                    data = port.read(max(1, port.in_waiting))
                    for line in assembler.feed(data):
                        self._post(self.handle_line, line)
            except (serial.SerialException, OSError) as err:
                log.error("%s: converter on %s lost: %s", self.id, self.port, err)
                self._post(self._condition, False, str(err))
                faulted = True
            finally:
                self.serial = None
                port.close()
