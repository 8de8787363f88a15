"""Firmware update over the pty link: installed and confirmed, interrupted and resumed (cable pulled, board
reset, gateway restarted), a bad signature refused, an image that never confirms rolled back."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from firmware_bridge import protocol as p
from firmware_bridge.errors import UpdateError, UpdateErrorReason
from firmware_bridge.link import Link
from firmware_bridge.protocol import Op, ResetCause
from firmware_bridge.release import Release, pack_release, parse_release, sign_release
from firmware_bridge.testbench import FAST_LINK, Bench
from firmware_bridge.update import UpdateResult, update_firmware

IMAGE = os.urandom(24 * 1024 + 100)  # not a multiple of the chunk size on purpose
CHUNKS = -(-len(IMAGE) // p.CHUNK_SIZE)


@pytest.fixture
async def link(bench: Bench) -> AsyncIterator[Link]:
    link = Link(bench.port, timing=FAST_LINK)
    await link.start()
    assert await link.wait_up(5)
    yield link
    await link.stop()


async def status(link: Link) -> tuple[int, int, int, int, bool, int, int, str]:
    return p.unpack_status(await link.request(Op.STATUS))


async def test_update_installs_and_confirms(bench: Bench, link: Link) -> None:
    release = sign_release(bench.release_key, IMAGE, "1.1.0")
    seen: list[int] = []
    result = await update_firmware(link, release, progress=lambda held, total: seen.append(held))
    assert (result.version, result.slot, result.resumes, result.chunks_sent) == ("1.1.0", 1, 0, CHUNKS)
    assert seen[-1] == len(IMAGE)
    assert bench.device.storage.read(1, 0, len(IMAGE)) == IMAGE
    _, _, cause, slot, confirmed, _, _, version = await status(link)
    assert (cause, slot, confirmed, version) == (ResetCause.UPDATE, 1, True, "1.1.0")


async def test_update_interrupted_by_the_cable_resumes(bench: Bench, link: Link) -> None:
    release = sign_release(bench.release_key, IMAGE, "1.2.0")
    pulled: list[int] = []

    def progress(held: int, total: int) -> None:
        if held > total // 3 and not pulled:
            pulled.append(held)
            bench.relay.unplug()
            asyncio.get_running_loop().call_later(0.4, bench.relay.replug)

    result = await update_firmware(link, release, progress=progress)
    assert result.resumes >= 1
    assert result.chunks_sent <= CHUNKS + 2  # resumed where it stopped, not from zero
    assert (await status(link))[7] == "1.2.0"


async def test_update_resumes_after_a_board_reset_and_a_gateway_restart(bench: Bench, link: Link) -> None:
    release = sign_release(bench.release_key, IMAGE, "1.3.0")
    tasks: list[asyncio.Task[UpdateResult]] = []

    def progress(held: int, total: int) -> None:
        if held > total // 2:
            tasks[0].cancel()  # the gateway stops mid-transfer...

    tasks.append(asyncio.create_task(update_firmware(link, release, progress=progress)))
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    await link.stop()
    bench.device.reset()  # ...and the board resets too
    fresh = Link(bench.port, timing=FAST_LINK)
    await fresh.start()
    try:
        starts: list[int] = []
        result = await update_firmware(fresh, release, progress=lambda held, total: starts.append(held))
        assert starts[0] > len(IMAGE) // 2  # the board kept what it had
        assert result.chunks_sent < CHUNKS
        assert (await status(fresh))[7] == "1.3.0"
    finally:
        await fresh.stop()


async def test_bad_signature_is_refused(bench: Bench, link: Link) -> None:
    release = sign_release(Ed25519PrivateKey.generate(), IMAGE, "6.6.6")  # not the release key
    with pytest.raises(UpdateError) as err:
        await update_firmware(link, release)
    assert err.value.update_reason is UpdateErrorReason.BAD_SIGNATURE
    _, _, _, slot, confirmed, _, _, version = await status(link)
    assert (slot, confirmed, version) == (0, True, "1.0.0")


async def test_signature_for_another_version_is_refused(bench: Bench, link: Link) -> None:
    good = sign_release(bench.release_key, IMAGE, "1.4.0")
    relabelled = Release("9.0.0", good.image, good.signature)
    with pytest.raises(UpdateError) as err:
        await update_firmware(link, relabelled)
    assert err.value.update_reason is UpdateErrorReason.BAD_SIGNATURE


async def test_image_that_never_confirms_is_rolled_back(bench: Bench, link: Link) -> None:
    bench.board.healthy = False  # the new image fails its self test after boot
    with pytest.raises(UpdateError) as err:
        await update_firmware(link, sign_release(bench.release_key, IMAGE, "2.0.0-bad"))
    assert err.value.update_reason is UpdateErrorReason.ROLLED_BACK
    _, _, cause, slot, confirmed, _, _, version = await status(link)
    assert (cause, slot, confirmed, version) == (ResetCause.ROLLBACK, 0, True, "1.0.0")
    bench.board.healthy = True  # a fixed image installs afterwards
    result = await update_firmware(link, sign_release(bench.release_key, IMAGE, "2.0.1"))
    assert (result.version, result.slot) == ("2.0.1", 1)


def test_release_file_round_trip_and_garbage() -> None:
    release = sign_release(Ed25519PrivateKey.generate(), b"firmware", "3.0.0")
    assert parse_release(pack_release(release)) == release
    with pytest.raises(UpdateError) as err:
        parse_release(pack_release(release)[:-1])
    assert err.value.update_reason is UpdateErrorReason.BAD_RELEASE
