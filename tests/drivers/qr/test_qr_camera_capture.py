"""The camera's next read taken for a check (capture_next) instead of the door, from a spool folder that real
QR images are dropped into: one capture at a time, cancelled cleanly, failed when the reader stops, and the
reads after it go to the gateway as before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import pytest

from drivers.qr.camera import QrCameraReader, SpoolFolderSource
from drivers.reader import CaptureError, CredentialRead
from drivers.sim.qr import qr_frame
from edge.model import CredentialKind
from edge.passes.claims import PassClaims
from edge.passes.issue import PassSigner

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def signer() -> PassSigner:
    return PassSigner.generate()


def token(signer: PassSigner, pass_id: str) -> str:
    return signer.issue(
        PassClaims(pass_id, "lotus-garden", ("main-gate",), NOW, NOW + timedelta(hours=2), NOW, max_uses=1)
    )


def drop(spool: Path, name: str, text: str) -> None:
    """What a camera uploading snapshots does: write the image elsewhere, then rename it in whole."""
    staging = spool.parent / f"staging-{name}.png"
    assert cv2.imwrite(str(staging), qr_frame(text, module_px=4))
    staging.replace(spool / f"{name}.png")


class Camera:
    def __init__(self, reader: QrCameraReader, spool: Path) -> None:
        self.reader, self.spool = reader, spool
        self.reads: list[CredentialRead] = []
        self.arrived = asyncio.Event()
        reader.bind(self._read)

    def _read(self, read: CredentialRead) -> None:
        self.reads.append(read)
        self.arrived.set()

    async def next_door_read(self) -> CredentialRead:
        await asyncio.wait_for(self.arrived.wait(), 30)
        self.arrived.clear()
        return self.reads[-1]


@pytest.fixture
async def camera(tmp_path: Path) -> AsyncIterator[Camera]:
    spool = tmp_path / "spool"
    spool.mkdir()
    reader = QrCameraReader("gate-cam", lambda: SpoolFolderSource(spool))
    cam = Camera(reader, spool)
    await reader.start()
    yield cam
    await reader.stop()


async def test_the_next_code_goes_to_the_capture_then_to_the_door(camera: Camera, signer: PassSigner) -> None:
    a, b = token(signer, "V-CAP-A"), token(signer, "V-CAP-B")
    captured = camera.reader.capture_next()
    waiting = camera.reader.capturing
    drop(camera.spool, "0001", a)
    read = await asyncio.wait_for(captured, 30)
    assert (read.reader_id, read.kind, read.value) == ("gate-cam", CredentialKind.PASS, a)
    assert waiting is True and camera.reader.capturing is False
    drop(camera.spool, "0002", b)
    assert (await camera.next_door_read()).value == b
    assert [r.value for r in camera.reads] == [b]  # the captured code never reached the door
    assert list(camera.spool.iterdir()) == []  # each dropped image was read once and removed


async def test_one_capture_at_a_time_and_a_cancelled_one_gives_the_reader_back(
    camera: Camera, signer: PassSigner
) -> None:
    first = camera.reader.capture_next()
    with pytest.raises(CaptureError, match="already waiting"):
        camera.reader.capture_next()
    first.cancel()  # the guard gave up
    again = camera.reader.capture_next()  # a new one may start at once
    again.cancel()
    await asyncio.sleep(0)
    assert camera.reader.capturing is False
    c = token(signer, "V-CAP-C")
    drop(camera.spool, "0001", c)
    assert (await camera.next_door_read()).value == c


async def test_a_reader_that_stops_fails_its_pending_capture(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    reader = QrCameraReader("gate-cam", lambda: SpoolFolderSource(spool))
    await reader.start()
    captured = reader.capture_next()
    await reader.stop()
    with pytest.raises(CaptureError, match="stopped"):
        await captured


async def test_a_spool_folder_that_disappears_is_a_failure(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="no such folder"):
        SpoolFolderSource(tmp_path / "missing")
