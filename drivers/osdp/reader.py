"""OsdpReader: one OSDP card/PIN reader behind libosdp's ControlPanel, with Secure Channel enforced.

There is no plaintext fallback: the ControlPanel runs with EnforceSecure, so a reader with another key (or none)
never comes online, and nothing it sends is accepted. The key is the reader's own 16-byte SCBK from the
credentials directory (see install.py for giving a new reader its key).

libosdp runs its own thread; its event callback only hands each event to the loop (call_soon_threadsafe).
Card reads must be raw Wiegand bits (the decoder checks their parity); keypad keys become a PIN. A watch task
reports the reader offline (not answering, or refused by the secure channel) and back; a tamper status
report is a tamper condition. libosdp keeps a reader offline for 300 s after a NAK, and a few garbled bytes
on the line are enough for one, so a reader offline for a while gets a fresh ControlPanel (capped backoff).
Feedback is sent only while the reader is online, and only as commands that feedback.py has validated, so
the gateway itself never earns a NAK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from drivers.errors import DriverError, DriverErrorReason
from drivers.keypad import PinBuffer
from drivers.osdp.feedback import DENIED, GRANTED, Buzzer, Led
from drivers.reader import CredentialRead, Reader, ReaderCondition
from drivers.wiegand.decoder import WiegandFormat, decode
from edge.model import CredentialKind

log = logging.getLogger(__name__)

KEY_LENGTH = 16


class OsdpReader(Reader):
    def __init__(
        self,
        reader_id: str,
        channel: Callable[[], Any],
        *,
        address: int,
        key: bytes,
        card_format: WiegandFormat = WiegandFormat.H10301,
        facility: int | None = None,
        pin_timeout: float = 10.0,
        watch_seconds: float = 0.2,
        startup_grace: float = 3.0,
        restart_min: float = 2.0,
        restart_max: float = 60.0,
    ) -> None:
        super().__init__(reader_id)
        if len(key) != KEY_LENGTH:
            raise DriverError(reader_id, DriverErrorReason.BAD_ARGUMENT, "an OSDP key (SCBK) is 16 bytes")
        self.address = address
        self.card_format = card_format
        self.facility = facility
        self.watch_seconds = watch_seconds
        self.startup_grace = startup_grace
        self.restart_min = restart_min
        self.restart_max = restart_max
        self.counters: Counter[str] = Counter()  # cards, pins, bad_cards, ignored, feedback, feedback_skipped
        self._channel = channel
        self._key = key
        self._pins = PinBuffer(pin_timeout)
        self._cp: Any = None
        self._open_channel: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch: asyncio.Task[None] | None = None
        self._reported: bool | None = None
        self._tamper = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._open_panel()
        self._watch = self._loop.create_task(self._watch_online(), name=f"osdp-{self.id}")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        await self._close_panel()
        self.online = False

    def _open_panel(self) -> None:
        from osdp import ControlPanel, LibFlag, LogLevel, PDInfo

        self._open_channel = self._channel()
        info = PDInfo(self.address, self._open_channel, scbk=self._key, flags=[LibFlag.EnforceSecure])
        self._cp = ControlPanel([info], log_level=LogLevel.Error, event_handler=self._from_thread)
        self._cp.start()

    async def _close_panel(self) -> None:
        if self._cp is not None:
            cp, self._cp = self._cp, None
            await asyncio.to_thread(cp.stop)
        close = getattr(self._open_channel, "close", None)
        if close is not None:  # a serial port we opened
            close()
        self._open_channel = None

    async def feedback(self, granted: bool, reason: str) -> None:
        cp = self._cp
        if cp is None or not self.online:
            self.counters["feedback_skipped"] += 1
            return
        for command in GRANTED if granted else DENIED:
            try:
                await self.send(command)
            except DriverError as err:  # went offline (or stopped) meanwhile: the door still works
                self.counters["feedback_failed"] += 1
                log.debug("%s: feedback not sent: %s", self.id, err)
                return

    async def send(self, command: Led | Buzzer) -> None:
        """Send one validated LED or buzzer command (validation happened when it was built)."""
        cp = self._cp
        if cp is None or not self.online:
            raise DriverError(self.id, DriverErrorReason.OFFLINE)
        if not await asyncio.to_thread(cp.submit_command, self.address, command.command()):
            raise DriverError(self.id, DriverErrorReason.PROTOCOL, "command not queued")
        self.counters["feedback"] += 1

    # --- from libosdp's thread -------------------------------------------------------------------------------

    def _from_thread(self, pd: int, event: dict[str, Any]) -> int:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.handle_event, event)
        return 0

    # --- on the loop -----------------------------------------------------------------------------------------

    def handle_event(self, event: dict[str, Any]) -> None:
        from osdp import CardFormat, Event

        kind = event.get("event")
        if kind == Event.CardRead:
            self._card(event, CardFormat.Wiegand)
        elif kind == Event.KeyPress:
            for byte in bytes(event.get("data", b"")):
                pin = self._pins.key(chr(byte))
                if pin is not None:
                    self.counters["pins"] += 1
                    self._on_credential(CredentialRead(self.id, CredentialKind.PIN, pin))
        elif kind == Event.Status:
            report = bytes(event.get("report", b""))
            tamper = bool(report[:1] and report[0])
            if tamper != self._tamper:
                self._tamper = tamper
                self._on_condition(self.id, ReaderCondition.TAMPER, tamper, "tamper status report")
        else:
            self.counters["ignored"] += 1

    def _card(self, event: dict[str, Any], wiegand: int) -> None:
        self._pins.clear()
        data, length = bytes(event.get("data", b"")), int(event.get("length", 0))
        try:
            if event.get("format") != wiegand:
                raise ValueError("card data is not raw Wiegand bits (ASCII card data is not accepted)")
            if not 0 < length <= len(data) * 8:
                raise ValueError(f"{length} bits announced, {len(data)} bytes sent")
            card = decode([(data[i // 8] >> (7 - i % 8)) & 1 for i in range(length)], self.card_format)
        except ValueError as err:  # WiegandError is a ValueError
            self.counters["bad_cards"] += 1
            log.warning("%s: card read dropped: %s", self.id, err)
            return
        self.counters["cards"] += 1
        self._on_credential(
            CredentialRead(self.id, CredentialKind.CARD, card.credential_value(self.facility))
        )

    async def _watch_online(self) -> None:
        loop = asyncio.get_running_loop()
        grace_until = loop.time() + self.startup_grace  # the secure channel handshake takes a moment
        restart_delay = self.restart_min
        offline_since: float | None = None
        while True:
            cp = self._cp
            online = bool(cp is not None and cp.is_online(self.address) and cp.is_sc_active(self.address))
            if self._reported is None and not online and loop.time() < grace_until:
                await asyncio.sleep(self.watch_seconds)
                continue
            if online:
                offline_since, restart_delay = None, self.restart_min
            elif offline_since is None:
                offline_since = loop.time()
            elif loop.time() - offline_since >= restart_delay:
                # libosdp keeps a reader offline for 300 s after a NAK (a garbled byte on the line is enough to
                # desynchronise the secure channel); a fresh ControlPanel re-establishes it in a fraction of a
                # second. Backoff (capped) keeps a reader that is really gone from churning the line.
                log.info("%s: restarting the OSDP control panel for reader %d", self.id, self.address)
                self.counters["restarts"] += 1
                await self._close_panel()
                self._open_panel()
                offline_since = loop.time()
                restart_delay = min(self.restart_max, restart_delay * 2)
            previous, self._reported = self._reported, online
            self.online = online
            if previous is not online and not (previous is None and online):
                if online:
                    log.info("%s: OSDP reader %d online (secure channel)", self.id, self.address)
                else:
                    log.error(
                        "%s: OSDP reader %d offline or refused by the secure channel", self.id, self.address
                    )
                self._on_condition(self.id, ReaderCondition.OFFLINE, not online, "secure channel")
            await asyncio.sleep(self.watch_seconds)
