"""A Wiegand reader and keypad on a firmware-bridge board: cards and PINs reach the gateway, misreads do not,
and feedback lights the board's LED."""

from __future__ import annotations

from firmware_bridge import protocol as p
from firmware_bridge.controller import FirmwareBridgeController
from firmware_bridge.reader import FirmwareBridgeReader
from firmware_bridge.testbench import FAST_LINK, Bench, eventually

from drivers.reader import CredentialRead
from drivers.wiegand.decoder import WiegandFormat, encode
from edge.model import CredentialKind


def _wire(bits: list[int]) -> bytes:
    value = 0
    for bit in bits:
        value = (value << 1) | bit
    return value.to_bytes((len(bits) + 7) // 8, "big")  # as the board sends them


async def test_cards_pins_and_feedback(bench: Bench) -> None:
    ctl = FirmwareBridgeController("mcu-1", bench.port, timing=FAST_LINK)
    reader = FirmwareBridgeReader("side-gate-in", ctl, board_reader=1, card_format=WiegandFormat.H10301)
    reads: list[CredentialRead] = []
    reader.bind(reads.append)
    await ctl.start()
    await reader.start()
    try:
        await eventually(lambda: ctl.online)
        card = encode(WiegandFormat.H10301, 12345, facility=17)
        bench.board.present(1, p.ReaderFormat.WIEGAND, 26, _wire(card))
        broken = list(card)
        broken[5] ^= 1  # a misread bit: parity fails
        bench.board.present(1, p.ReaderFormat.WIEGAND, 26, _wire(broken))
        bench.board.present(1, p.ReaderFormat.KEYPAD, 0, b"12")
        bench.board.present(1, p.ReaderFormat.KEYPAD, 0, b"34#")
        await eventually(lambda: len(reads) == 2 and reader.rejected == 1)
        assert reads == [
            CredentialRead("side-gate-in", CredentialKind.CARD, "12345"),
            CredentialRead("side-gate-in", CredentialKind.PIN, "1234"),
        ]
        await reader.feedback(True, "granted")
        assert bench.board.leds[-1] == (1, p.Colour.GREEN, 2000)
    finally:
        await reader.stop()
        await ctl.stop()
