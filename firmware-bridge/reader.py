"""A card reader or keypad wired to a firmware-bridge board's Wiegand input, as a drivers.reader.Reader.

The board sends what the reader put on D0/D1 (a READER event: the bits, or the keys of a keypad); this driver
decodes it with the gateway's Wiegand formats (parity checked: a misread is dropped, never another card) and
hands CARD or PIN credentials to the gateway. Keys are collected into a PIN that '#' submits and '*' clears.
Feedback goes back over the same link: the board's LED green or red, and a beep or three.
"""

from __future__ import annotations

import logging
import time

from firmware_bridge import protocol as p
from firmware_bridge.controller import FirmwareBridgeController, ReaderData
from firmware_bridge.errors import BridgeError
from firmware_bridge.protocol import Op, ReaderFormat

from drivers.reader import CredentialRead, Reader
from drivers.wiegand.decoder import WiegandError, WiegandFormat, decode
from edge.model import CredentialKind

log = logging.getLogger(__name__)

MAX_PIN = 12


class FirmwareBridgeReader(Reader):
    def __init__(
        self,
        reader_id: str,
        controller: FirmwareBridgeController,
        *,
        board_reader: int = 1,
        card_format: WiegandFormat = WiegandFormat.H10301,
        facility: int | None = None,
        led: int = 1,
        pin_timeout: float = 10.0,
    ) -> None:
        super().__init__(reader_id)
        self.controller = controller
        self.board_reader = board_reader
        self.card_format = card_format
        self.facility = facility
        self.led = led
        self.pin_timeout = pin_timeout
        self.rejected = 0  # reads dropped for a wrong length or parity
        self._pin: list[str] = []
        self._pin_at = 0.0

    async def start(self) -> None:
        # The controller owns the link and reports it offline; the reader only listens on it.
        self.controller.attach_reader(self.board_reader, self._on_data)
        self.online = True

    async def stop(self) -> None:
        self.online = False

    async def feedback(self, granted: bool, reason: str) -> None:
        colour = p.Colour.GREEN if granted else p.Colour.RED
        try:
            await self.controller.link.request(Op.LED, p.pack_led(self.led, colour, 2000))
            await self.controller.link.request(
                Op.BUZZER, p.pack_buzzer(100 if granted else 80, 1 if granted else 3)
            )
        except BridgeError as err:
            log.debug("%s: feedback not shown: %s", self.id, err)

    def _on_data(self, data: ReaderData) -> None:
        if data.format == ReaderFormat.KEYPAD:
            self._keys(data.data.decode("ascii", "replace"))
            return
        # The board sends the bits right-aligned in whole bytes (an int's to_bytes): skip the leading padding.
        padding = len(data.data) * 8 - data.bits
        if padding < 0:
            self.rejected += 1
            log.warning("%s: reader event with %d bits in %d bytes", self.id, data.bits, len(data.data))
            return
        bits = [(data.data[(i + padding) // 8] >> (7 - (i + padding) % 8)) & 1 for i in range(data.bits)]
        try:
            card = decode(bits, self.card_format)
        except WiegandError as err:
            self.rejected += 1
            log.warning("%s: card read dropped: %s", self.id, err)
            return
        self._on_credential(
            CredentialRead(self.id, CredentialKind.CARD, card.credential_value(self.facility))
        )

    def _keys(self, keys: str) -> None:
        now = time.monotonic()
        if self._pin and now - self._pin_at > self.pin_timeout:
            self._pin = []
        self._pin_at = now
        for key in keys:
            if key == "*":
                self._pin = []
            elif key == "#":
                if self._pin:
                    self._on_credential(CredentialRead(self.id, CredentialKind.PIN, "".join(self._pin)))
                self._pin = []
            elif key.isdigit() and len(self._pin) < MAX_PIN:
                self._pin.append(key)
