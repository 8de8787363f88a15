"""Firmware update over the link, from the gateway's side: send a release in chunks, resume where the device
says it is after any interruption, commit, and wait for the new image to confirm itself (or be rolled back).

The device is the authority on progress: UPDATE_BEGIN answers how many bytes of *this* image (same size,
digest, signature and version) it already holds, so a transfer cut by a pulled cable, a reset board or a
restarted gateway goes on from there, not from zero. Everything that matters is checked on the device:
each chunk's CRC-32 read back from flash, then the SHA-256 and the release signature over the whole slot.
"""

from __future__ import annotations

import asyncio
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass

from firmware_bridge import protocol as p
from firmware_bridge.errors import BridgeError, BridgeErrorReason, UpdateError, UpdateErrorReason
from firmware_bridge.link import Link
from firmware_bridge.protocol import NakCode, Op, ResetCause
from firmware_bridge.release import Release

ProgressCallback = Callable[[int, int], None]  # (bytes the device holds, image size)


@dataclass(frozen=True, slots=True)
class UpdateResult:
    version: str
    slot: int
    resumes: int  # how many times the transfer was taken up again after an interruption
    chunks_sent: int
    seconds: float


_REFUSALS = {
    NakCode.BAD_SIGNATURE: UpdateErrorReason.BAD_SIGNATURE,
    NakCode.BAD_HASH: UpdateErrorReason.BAD_HASH,
}


async def update_firmware(
    link: Link,
    release: Release,
    *,
    progress: ProgressCallback | None = None,
    chunk_size: int = p.CHUNK_SIZE,
    resume_within_s: float = 30.0,
    confirm_within_s: float = 30.0,
) -> UpdateResult:
    started = time.monotonic()
    report = progress or (lambda held, total: None)
    total = len(release.image)
    resumes = 0
    chunks = 0
    if not await link.wait_up(resume_within_s):
        raise UpdateError(UpdateErrorReason.INTERRUPTED, "the device is not answering")
    offset = await _begin(link, release)
    report(offset, total)
    old_boot = link.boot_id
    while True:
        try:
            while offset < total:
                data = release.image[offset : offset + chunk_size]
                reply = await link.request(Op.UPDATE_CHUNK, p.pack_chunk(offset, binascii.crc32(data), data))
                chunks += 1
                offset = p.read_u32(reply)
                report(offset, total)
            old_boot = link.boot_id
            await link.request(Op.UPDATE_COMMIT)
            break
        except BridgeError as err:
            if err.reason is BridgeErrorReason.NAK:
                code = err.nak_code
                if code in _REFUSALS:
                    raise UpdateError(_REFUSALS[code], "the device refused the image") from err
                if code in (NakCode.OFFSET, NakCode.INCOMPLETE) and len(err.nak_detail) >= 4:
                    offset = p.read_u32(err.nak_detail)  # the device says where it is
                    continue
                if code == NakCode.NO_UPDATE and offset >= total:
                    break  # the commit ran but its ack was lost with the reset: see what booted
                if code == NakCode.NO_UPDATE:
                    offset = await _begin(link, release)
                    continue
                raise UpdateError(UpdateErrorReason.REFUSED, f"NAK code {code}") from err
            resumes += 1
            if not await link.wait_up(resume_within_s):
                raise UpdateError(UpdateErrorReason.INTERRUPTED, str(err)) from err
            offset = await _begin(link, release)
            report(offset, total)
    slot = await _wait_confirmed(link, release, old_boot, confirm_within_s)
    return UpdateResult(release.version, slot, resumes, chunks, time.monotonic() - started)


async def _begin(link: Link, release: Release) -> int:
    payload = p.pack_begin(len(release.image), release.sha256, release.signature, release.version)
    try:
        return p.read_u32(await link.request(Op.UPDATE_BEGIN, payload))
    except BridgeError as err:
        if err.reason is BridgeErrorReason.NAK:
            why = {
                NakCode.TOO_LARGE: "image larger than a slot",
                NakCode.UPDATE_IN_TRIAL: "an update is on trial",
            }
            raise UpdateError(UpdateErrorReason.REFUSED, why.get(err.nak_code or 0, str(err))) from err
        raise


async def _wait_confirmed(link: Link, release: Release, old_boot: int | None, within_s: float) -> int:
    """After commit the device resets into the new slot on trial. Success is the new version running and
    confirmed; a boot with reset cause ROLLBACK means the image never confirmed itself."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if link.boot_id == old_boot or not link.up:
            continue
        try:
            _, _, cause, slot, confirmed, _, _, version = p.unpack_status(await link.request(Op.STATUS))
        except BridgeError:
            continue
        if cause == ResetCause.ROLLBACK:
            raise UpdateError(UpdateErrorReason.ROLLED_BACK, f"the device runs {version} again")
        if version == release.version and confirmed:
            return slot
    raise UpdateError(UpdateErrorReason.INTERRUPTED, "the new image did not confirm in time")
