"""A Wiegand reader behind a Wiegand-to-serial converter, over pyserial's loop:// port: cards in each line
format, keypad PINs, garbage and parity errors survived and counted, an absent converter reported offline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from drivers.reader import CredentialRead, ReaderCondition
from drivers.wiegand.converter import WiegandConverterReader
from drivers.wiegand.decoder import WiegandFormat, encode
from drivers.wiegand.lines import LineFormat
from edge.model import CredentialKind

H10301 = WiegandFormat.H10301


async def until(check: Callable[[], bool], limit: float = 5.0) -> None:
    async with asyncio.timeout(limit):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)


def bits(number: int, facility: int, fmt: WiegandFormat = H10301) -> str:
    return "".join(map(str, encode(fmt, number, facility)))


async def started(reader: WiegandConverterReader) -> list[CredentialRead]:
    reads: list[CredentialRead] = []
    reader.bind(reads.append)
    await reader.start()
    await until(lambda: reader.serial is not None)
    return reads


async def test_cards_pins_and_garbage_over_a_serial_line() -> None:
    reader = WiegandConverterReader("gate-w", "loop://", card_format=H10301, facility=42)
    reads = await started(reader)
    try:
        port: Any = reader.serial
        port.write(f"{bits(10001, 42)}\r\n".encode())
        port.write(b"\x00\xff garbage \r\n")
        port.write(f"{bits(10002, 42)[:-1]}1\n".encode())  # bad trailing parity
        port.write(f"{bits(10003, 7)}\n".encode())  # another site's card
        port.write(b"1\n2\n3\n4\n#\n")
        port.write(b"9\n*\n5\n6\n#\n")  # '*' clears
        await until(lambda: len(reads) == 4)
    finally:
        await reader.stop()
    assert reads == [
        CredentialRead("gate-w", CredentialKind.CARD, "10001"),
        CredentialRead("gate-w", CredentialKind.CARD, "7:10003"),
        CredentialRead("gate-w", CredentialKind.PIN, "1234"),
        CredentialRead("gate-w", CredentialKind.PIN, "56"),
    ]
    assert reader.counters["garbled"] == 1 and reader.counters["parity"] == 1


@pytest.mark.parametrize(
    ("line_format", "line", "value"),
    [
        ("bits", bits(513, 1), "513"),
        ("hex", f"26:{int(bits(513, 1), 2):07X}", "513"),
        ("hex", f"W26 0x{int(bits(513, 1), 2):x}", "513"),
        ("decimal", "0000000513", "513"),
        ("facility-number", "001,00513", "513"),
        (r"CARD=(?P<number>\d+);", "CARD=513;", "513"),  # a converter of our own description
    ],
)
def test_line_formats(line_format: str, line: str, value: str) -> None:
    reader = WiegandConverterReader("r", "loop://", card_format=H10301, line_format=line_format, facility=1)
    reads: list[CredentialRead] = []
    reader.bind(reads.append)
    reader.handle_line(line)
    assert reads == [CredentialRead("r", CredentialKind.CARD, value)]


def test_a_line_format_must_name_a_card_group() -> None:
    with pytest.raises(ValueError, match="needs a 'bits' group"):
        LineFormat(r"(?P<card>\d+)")


def test_hex_longer_than_its_bit_count_is_refused() -> None:
    reader = WiegandConverterReader("r", "loop://", card_format=H10301, line_format="hex")
    reader.handle_line("26:FFFFFFFF")
    assert reader.counters["garbled"] == 1


async def test_absent_converter_is_reported_offline() -> None:
    conditions: list[tuple[ReaderCondition, bool]] = []

    def no_port() -> Any:
        raise OSError(2, "No such file or directory")

    reader = WiegandConverterReader("r", "/dev/ttyUSB9", card_format=H10301, open_port=no_port)
    reader.bind_condition(lambda rid, condition, active, detail: conditions.append((condition, active)))
    await reader.start()
    try:
        await until(lambda: conditions == [(ReaderCondition.OFFLINE, True)])
    finally:
        await reader.stop()
