"""OsdpReader against libosdp's PeripheralDevice over a pty pair: card bits and PINs become credentials,
grant/deny drive the reader's LED and buzzer, tamper and a wrong key raise conditions, no plaintext fallback,
install mode sets a new key, and feedback commands are validated before they can earn a NAK."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from drivers.osdp.channel import FdChannel
from drivers.osdp.feedback import Buzzer, Color, Led
from drivers.osdp.install import install_key, new_key
from drivers.osdp.reader import OsdpReader
from drivers.reader import CredentialRead, ReaderCondition
from drivers.sim.osdp_reader import SimulatedOsdpReader
from drivers.wiegand.decoder import WiegandFormat, encode
from edge.model import CredentialKind

ADDRESS = 5


async def until(check: Callable[[], bool], limit: float = 8.0) -> None:
    async with asyncio.timeout(limit):
        while True:
            if check():
                return
            await asyncio.sleep(0.02)


@dataclass
class Seen:
    reads: list[CredentialRead] = field(default_factory=list)
    conditions: list[tuple[ReaderCondition, bool]] = field(default_factory=list)


@dataclass
class Rig:
    reader: OsdpReader
    pd: SimulatedOsdpReader
    seen: Seen


async def rig(cp_fd: int, pd_fd: int, cp_key: bytes, pd_key: bytes | None, **kw: object) -> Rig:
    pd = SimulatedOsdpReader(lambda: FdChannel(pd_fd), address=ADDRESS, key=pd_key)
    reader = OsdpReader("gate-in", lambda: FdChannel(cp_fd), address=ADDRESS, key=cp_key, facility=42, **kw)  # type: ignore[arg-type]
    seen = Seen()
    reader.bind(seen.reads.append)
    reader.bind_condition(lambda rid, condition, active, detail: seen.conditions.append((condition, active)))
    pd.start()
    await reader.start()
    return Rig(reader, pd, seen)


async def close(r: Rig) -> None:
    await r.reader.stop()
    await asyncio.to_thread(r.pd.stop)


@pytest.fixture
async def secure(pty_fds: tuple[int, int]) -> AsyncIterator[Rig]:
    key = new_key()
    r = await rig(*pty_fds, key, key)
    try:
        await until(lambda: r.reader.online)
        yield r
    finally:
        await close(r)


async def test_card_and_pin_become_credentials(secure: Rig) -> None:
    secure.pd.present_card(10001, 42)
    secure.pd.present_card(10002, 7)  # another site's card: reads as unknown
    secure.pd.press("12")
    secure.pd.press("34#")
    await until(lambda: len(secure.seen.reads) == 3)
    assert secure.seen.reads == [
        CredentialRead("gate-in", CredentialKind.CARD, "10001"),
        CredentialRead("gate-in", CredentialKind.CARD, "7:10002"),
        CredentialRead("gate-in", CredentialKind.PIN, "1234"),
    ]


async def test_bad_parity_is_dropped_and_counted(secure: Rig) -> None:
    bits = encode(WiegandFormat.H10301, 10001, 42)
    bits[5] ^= 1
    secure.pd.present_bits(bits)
    secure.pd.present_card(10003, 42)
    await until(lambda: len(secure.seen.reads) == 1)
    assert secure.seen.reads[0].value == "10003"
    assert secure.reader.counters["bad_cards"] == 1


async def test_grant_and_deny_drive_led_and_buzzer(secure: Rig) -> None:
    await secure.reader.feedback(True, "granted")
    got = await asyncio.to_thread(_collect, secure.pd, 2)
    led, buzzer = _by_kind(got)
    assert led["on_color"] == Color.GREEN and buzzer["rep_count"] == 1
    await secure.reader.feedback(False, "unknown_credential")
    got = await asyncio.to_thread(_collect, secure.pd, 2)
    led, buzzer = _by_kind(got)
    assert led["on_color"] == Color.RED and buzzer["rep_count"] == 3
    assert secure.reader.online  # no NAK took it offline


def _collect(pd: SimulatedOsdpReader, n: int) -> list[dict[str, object]]:
    got: list[dict[str, object]] = []
    for _ in range(50):
        got += pd.commands(wait=0.1)
        if len(got) >= n:
            break
    return got


def _by_kind(commands: list[dict[str, object]]) -> tuple[dict[str, object], dict[str, object]]:
    from osdp import Command

    led = next(c for c in commands if c["command"] == Command.LED)
    buzzer = next(c for c in commands if c["command"] == Command.Buzzer)
    return led, buzzer


async def test_tamper_is_a_condition(secure: Rig) -> None:
    secure.pd.tamper(True)
    await until(lambda: (ReaderCondition.TAMPER, True) in secure.seen.conditions)
    secure.pd.tamper(False)
    await until(lambda: (ReaderCondition.TAMPER, False) in secure.seen.conditions)


async def test_wrong_key_is_refused_and_reported_offline(pty_fds: tuple[int, int]) -> None:
    r = await rig(*pty_fds, new_key(), new_key(), startup_grace=0.5)
    try:
        await until(lambda: r.seen.conditions == [(ReaderCondition.OFFLINE, True)])
        r.pd.present_card(10001, 42)
        await asyncio.sleep(0.3)
        assert r.seen.reads == [] and not r.reader.online
        await r.reader.feedback(True, "granted")  # skipped, not sent into a dead channel
        assert r.reader.counters["feedback_skipped"] == 1
    finally:
        await close(r)


async def test_no_plaintext_fallback(pty_fds: tuple[int, int]) -> None:
    # A reader without a key (install mode) would talk in the clear; the enforcing panel refuses it.
    r = await rig(*pty_fds, new_key(), None, startup_grace=0.5)
    try:
        await until(lambda: r.seen.conditions == [(ReaderCondition.OFFLINE, True)])
        r.pd.present_card(10001, 42)
        await asyncio.sleep(0.3)
        assert r.seen.reads == []
    finally:
        await close(r)


async def test_install_mode_sets_a_new_key(pty_fds: tuple[int, int]) -> None:
    cp_fd, pd_fd = pty_fds
    pd = SimulatedOsdpReader(lambda: FdChannel(pd_fd), address=ADDRESS, key=None)
    pd.start()
    key = new_key()
    try:
        assert await asyncio.to_thread(install_key, lambda: FdChannel(cp_fd), ADDRESS, key)
        reader = OsdpReader("gate-in", lambda: FdChannel(cp_fd), address=ADDRESS, key=key)
        reads: list[CredentialRead] = []
        reader.bind(reads.append)
        await reader.start()
        try:
            await until(lambda: reader.online)
            pd.present_card(77, 1)
            await until(lambda: len(reads) == 1)
        finally:
            await reader.stop()
    finally:
        await asyncio.to_thread(pd.stop)
    assert reads[0].value == "77"


def test_keys_come_from_secrets_and_have_the_right_length() -> None:
    assert len(new_key()) == 16 and new_key() != new_key()
    with pytest.raises(ValueError):
        install_key(lambda: None, 0, b"short")
    assert secrets  # keys are generated with the secrets module


@pytest.mark.parametrize(
    "build",
    [
        lambda: Led(Color.GREEN, on_count=0, off_count=0),  # the PD NAKs a 0/0 flash
        lambda: Led(Color.GREEN, timer=0),
        lambda: Led(Color.GREEN, on_count=300),
        lambda: Buzzer(on_count=0),  # a beep with no on time is a NAK unless it stops the buzzer
        lambda: Buzzer(repeat=-1),
    ],
)
def test_commands_a_reader_would_nak_are_refused_before_sending(build: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        build()
    Buzzer(on_count=0, stop=True)  # stopping is fine


class GarblingChannel(FdChannel):
    """The gateway's end of the line, with noise: corrupts the next `noise` reads."""

    noise = 0

    def read(self, max_bytes: int) -> bytes:
        data = super().read(max_bytes)
        if data and GarblingChannel.noise > 0:
            GarblingChannel.noise -= 1
            return bytes(b ^ 0x55 for b in data)
        return data


async def test_garbled_line_is_survived_and_the_reader_comes_back(pty_fds: tuple[int, int]) -> None:
    # A few garbled bytes desynchronise the secure channel; libosdp would keep the reader offline for 300 s.
    cp_fd, pd_fd = pty_fds
    key = new_key()
    pd = SimulatedOsdpReader(lambda: FdChannel(pd_fd), address=ADDRESS, key=key)
    reader = OsdpReader(
        "gate-in",
        lambda: GarblingChannel(cp_fd),
        address=ADDRESS,
        key=key,
        restart_min=0.5,
        startup_grace=1.0,
    )
    reads: list[CredentialRead] = []
    conditions: list[bool] = []
    reader.bind(reads.append)
    reader.bind_condition(lambda rid, condition, active, detail: conditions.append(active))
    pd.start()
    await reader.start()
    try:
        await until(lambda: reader.online)
        GarblingChannel.noise = 3
        await until(lambda: conditions == [True])  # offline alarm
        await until(lambda: conditions == [True, False], limit=15)  # and back, long before 300 s
        assert reader.counters["restarts"] >= 1
        pd.present_card(10001)
        await until(lambda: len(reads) == 1)
    finally:
        GarblingChannel.noise = 0
        await reader.stop()
        await asyncio.to_thread(pd.stop)
