"""The camera reader: frames from memory, an image folder and a video file; a code seen in consecutive frames
is one read; a source that fails is offline and retried; a scanned pass drives the real gateway."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import pytest
from cv2.typing import MatLike

from drivers.qr.camera import Deduper, FrameSource, QrCameraReader, open_source
from drivers.reader import CredentialRead
from drivers.sim.door_controller import SimulatedDoorController
from drivers.sim.qr import ListSource, qr_frame
from edge.clock import ManualClock
from edge.config import load_config
from edge.demo_data import demo_access_list
from edge.devices import build_devices
from edge.gateway import Gateway
from edge.model import CredentialKind
from edge.passes.claims import PassClaims
from edge.passes.issue import PassSigner

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def claims(pass_id: str = "V-CAM1") -> PassClaims:
    return PassClaims(pass_id, "lotus-garden", ("main-gate",), NOW, NOW + timedelta(hours=2), NOW, max_uses=1)


@pytest.fixture(scope="module")
def signer() -> PassSigner:
    return PassSigner.generate()


async def run(reader: QrCameraReader) -> list[CredentialRead]:
    reads: list[CredentialRead] = []
    reader.bind(reads.append)
    await reader.start()
    await asyncio.wait_for(reader.wait_finished(), 60)
    await asyncio.sleep(0)  # the last hand-over is a call_soon_threadsafe
    await reader.stop()
    return reads


def test_dedupe_reports_a_code_once_per_presentation() -> None:
    d = Deduper(forget_after=2.0)
    assert d.new(["A"], 0.0) == ["A"]
    assert d.new(["A", "B"], 0.5) == ["B"]
    assert d.new(["A"], 2.0) == []  # still in view
    assert d.new([], 3.0) == []
    assert d.new(["A"], 4.5) == ["A"]  # out of view for more than 2 s: shown again
    assert d.new(["B"], 4.6) == ["B"]


async def test_consecutive_frames_give_one_read(signer: PassSigner) -> None:
    a, b = signer.issue(claims("V-A")), signer.issue(claims("V-B"))
    frames = [qr_frame(a), qr_frame(a, blur_sigma=1.0), qr_frame(None), qr_frame(b, module_px=4, scale=0.5)]
    reader = QrCameraReader("cam-1", lambda: ListSource(frames))
    reads = await run(reader)
    assert [(r.reader_id, r.kind, r.value) for r in reads] == [
        ("cam-1", CredentialKind.PASS, a),
        ("cam-1", CredentialKind.PASS, b),
    ]
    assert reader.frames == 4


async def test_image_folder_and_video_file(tmp_path: Path, signer: PassSigner) -> None:
    token = signer.issue(claims())
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0001.png"), qr_frame(None))
    cv2.imwrite(str(folder / "0002.png"), qr_frame(token))
    (folder / "notes.txt").write_text("not an image")
    assert [r.value for r in await run(QrCameraReader("cam-1", folder))] == [token]
    assert [r.value for r in await run(QrCameraReader("cam-1", str(folder / "0002.png")))] == [token]

    video = tmp_path / "gate.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 5, (1280, 720))
    assert writer.isOpened()
    for frame in (qr_frame(None), qr_frame(token, module_px=6), qr_frame(token, module_px=6)):
        writer.write(frame)
    writer.release()
    assert [r.value for r in await run(QrCameraReader("cam-1", video))] == [token]


def test_open_source_refuses_what_is_not_there(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="no such file"):
        open_source(tmp_path / "missing.mp4")


async def test_a_failing_source_is_offline_and_retried(signer: PassSigner) -> None:
    token = signer.issue(claims())
    attempts: list[int] = []

    def flaky() -> FrameSource:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("no camera on /dev/video9")
        return ListSource([qr_frame(token)])

    reader = QrCameraReader("cam-1", flaky)
    reads: list[CredentialRead] = []
    reader.bind(reads.append)
    await reader.start()
    await asyncio.sleep(0.1)
    assert reader.online is False
    await asyncio.wait_for(reader.wait_finished(), 30)  # retried after a second, then read the frame
    await asyncio.sleep(0)
    await reader.stop()
    assert len(attempts) == 2 and [r.value for r in reads] == [token]


async def test_camera_pass_drives_the_gateway(tmp_path: Path, signer: PassSigner) -> None:
    cfg = load_config(ROOT / "config" / "demo.toml")
    cfg = cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"data_dir": tmp_path})})
    devices = build_devices(cfg)
    token = signer.issue(claims())
    frames: list[MatLike] = []  # nothing in view while the gateway starts
    camera = QrCameraReader("main-gate-in", lambda: ListSource(list(frames)))
    devices.readers["main-gate-in"] = camera
    gw = Gateway(cfg, devices, clock=ManualClock(NOW))
    gw.passes.ntp_probe = lambda: True
    await gw.start()
    try:
        await gw.replace_access_list(demo_access_list(1, NOW, "side-door", list(gw.site.doors)))
        gw.passes.apply_trust_list([signer.trusted_key()], 1)
        # The camera started with the gateway and found an empty scene; now the visitor holds up the phone.
        await camera.wait_finished()
        frames.append(qr_frame(token, module_px=4, scale=0.5))
        await camera.start()
        await asyncio.wait_for(camera.wait_finished(), 30)
        for _ in range(5):
            await asyncio.sleep(0)
        assert camera.feedback_log[-1].granted is True
        controller = gw.devices.controllers["sim-1"]
        assert isinstance(controller, SimulatedDoorController) and controller.outputs[1] is True
        assert gw.events is not None
        gw.events.flush()
        with sqlite3.connect(gw.db_path) as conn:
            payloads = [
                json.loads(p) for (p,) in conn.execute("SELECT payload FROM events WHERE type = 'decision'")
            ]
        assert [(p["credential"], p["granted"]) for p in payloads] == [("V-CAM1", True)]
    finally:
        await gw.stop()
