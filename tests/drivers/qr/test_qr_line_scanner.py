"""Hand-held scanners: line assembly, a keyboard-wedge scanner on a text stream and on a tty, and a serial
scanner over pyserial's loop:// URL and over a real pseudo-terminal pair."""

from __future__ import annotations

import asyncio
import io
import os
import tty
from collections.abc import Callable

import pytest

from drivers.qr.line_scanner import LineAssembler, LineScannerReader, SerialScannerReader
from drivers.reader import CredentialRead
from edge.model import CredentialKind

TOKEN = "MW1:RRQ+D9P60CO0Y MR7E8CKPVALJ0*VDNWEAPE53DYKE1$CFN00GD0JH1T"


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - set by the reader's thread: there is no event to await
            await asyncio.sleep(0.01)


def test_line_assembly() -> None:
    a = LineAssembler(max_line=10)
    assert a.feed(b"AB") == []
    assert a.feed(b"C\r\nDEF\n\n\rG") == ["ABC", "DEF"]
    assert a.feed(b"\r") == ["G"]
    assert a.feed(b"0123456789X") == []  # over-long: dropped whole, up to its terminator
    assert a.feed(b"YZ\nOK\n") == ["OK"]
    assert a.discarded == 1


async def test_keyboard_wedge_from_a_text_stream() -> None:
    reads: list[CredentialRead] = []
    scanner = LineScannerReader("desk-1", stream=io.StringIO(f"{TOKEN}\n\n  12345  \r\n"))
    scanner.bind(reads.append)
    await scanner.start()
    await scanner.wait_finished()
    await asyncio.sleep(0)
    await scanner.stop()
    assert [(r.reader_id, r.kind, r.value) for r in reads] == [
        ("desk-1", CredentialKind.PASS, TOKEN),
        ("desk-1", CredentialKind.PASS, "12345"),
    ]
    await scanner.feedback(False, "pass_expired")
    assert scanner.feedback_log[-1].reason == "pass_expired"


async def test_keyboard_wedge_on_a_tty_path() -> None:
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    path = os.ttyname(slave)
    reads: list[CredentialRead] = []
    scanner = LineScannerReader("desk-1", path=path)
    scanner.bind(reads.append)
    await scanner.start()
    try:
        await until(lambda: scanner.online)
        os.write(master, TOKEN[:20].encode())
        os.write(master, TOKEN[20:].encode() + b"\r")
        await until(lambda: len(reads) == 1)
        assert reads[0].value == TOKEN
    finally:
        await scanner.stop()
        os.close(master)
        os.close(slave)


async def test_serial_scanner_over_loop_url() -> None:
    reads: list[CredentialRead] = []
    scanner = SerialScannerReader("desk-2", "loop://")
    scanner.bind(reads.append)
    await scanner.start()
    try:
        await until(lambda: scanner.serial is not None)
        scanner.serial.write(TOKEN.encode() + b"\r\n" + b"MW1:SECOND\r")
        await until(lambda: len(reads) == 2)
        assert [r.value for r in reads] == [TOKEN, "MW1:SECOND"]
        assert scanner.online
    finally:
        await scanner.stop()
    assert not scanner.online


async def test_serial_scanner_over_a_pseudo_terminal() -> None:
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    reads: list[CredentialRead] = []
    scanner = SerialScannerReader("desk-2", os.ttyname(slave), baudrate=115200)
    scanner.bind(reads.append)
    await scanner.start()
    try:
        await until(lambda: scanner.online)
        os.write(master, TOKEN.encode() + b"\n")
        await until(lambda: len(reads) == 1)
        assert reads[0].value == TOKEN
    finally:
        await scanner.stop()
        os.close(master)
        os.close(slave)


async def test_serial_scanner_without_its_port_is_offline_and_keeps_trying() -> None:
    opened: list[int] = []

    def absent() -> object:
        opened.append(1)
        raise OSError("could not open port /dev/ttyUSB7")

    scanner = SerialScannerReader("desk-2", "/dev/ttyUSB7", open_port=absent)
    await scanner.start()
    await until(lambda: len(opened) >= 1)
    assert not scanner.online
    await scanner.stop()


def test_a_scanner_needs_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        LineScannerReader("x")
