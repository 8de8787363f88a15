"""The face reader end to end: a worker process on a simulated camera (a folder of frames), real models, the
sealed template store; reads reach the gateway as FACE credentials, strangers and replayed photos do not."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers.face.loop import LoopSettings, Outcome, OutcomeKind
from drivers.face.reader import FaceCameraReader
from drivers.face.snapshots import SnapshotStore
from drivers.face.worker import WorkerSettings
from drivers.reader import CredentialRead, ReaderCondition
from edge.face.pipeline import FacePipeline, read_image
from edge.face.templates import TemplateStore
from edge.model import CredentialKind

KEY_HEX = "42" * 32
Frame = Callable[..., np.ndarray]


def write_frames(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), frame)
    return folder


async def run_reader(
    reader: FaceCameraReader, limit: float = 60.0
) -> tuple[list[CredentialRead], list[Outcome]]:
    reads: list[CredentialRead] = []
    events: list[Outcome] = []
    reader.bind(reads.append)
    reader.on_face_event = lambda _reader, outcome, _snapshot: events.append(outcome)
    await reader.start()
    await asyncio.wait_for(reader.ended.wait(), limit)
    await asyncio.sleep(0)  # let the last call_soon_threadsafe callbacks run
    await reader.stop()
    return reads, events


@pytest.fixture
def enrolled(
    tmp_path: Path, door_pipeline: FacePipeline, shared: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("MENWEI_SECRET_FACE_KEY", KEY_HEX)
    store = TemplateStore.open(tmp_path / "data", bytes.fromhex(KEY_HEX))
    image = read_image(shared / "data" / "faces" / "obama" / "obama.jpg")
    embedding = door_pipeline.embed_face(image, door_pipeline.detect(image)[0])
    store.add("tpl-obama", "obama", door_pipeline.pack.name, embedding)
    store.close()
    return tmp_path / "data"


async def test_a_resident_at_the_door_becomes_a_face_credential_read(
    enrolled: Path, door_pipeline: FacePipeline, shared: Path, make_frame: Frame, tmp_path: Path
) -> None:
    faces = shared / "data" / "faces"
    obama = [faces / "obama" / p for p in ("obama.jpg", "obama1.jpg", "obama2.jpg", "obama3.jpg")]
    empty = np.full((480, 640, 3), 90, np.uint8)
    frames = [empty] * 3 + [make_frame(door_pipeline, obama[i % 4]) for i in range(10)] + [empty] * 3
    source = write_frames(tmp_path / "camera", frames)
    settings = WorkerSettings(str(source), shared / "models" / door_pipeline.pack.name, enrolled)
    reads, events = await run_reader(FaceCameraReader("lobby-face", settings))
    assert reads == [CredentialRead("lobby-face", CredentialKind.FACE, "tpl-obama")]
    assert events == []


async def test_stranger_and_replayed_photo_are_reported_with_snapshots_and_never_read(
    enrolled: Path, door_pipeline: FacePipeline, shared: Path, make_frame: Frame, tmp_path: Path
) -> None:
    faces = shared / "data" / "faces"
    still = make_frame(door_pipeline, faces / "obama" / "obama.jpg")
    rose = [make_frame(door_pipeline, faces / "rose_leslie" / p) for p in ("img1.jpg", "img2.jpg")]
    empty = np.full((480, 640, 3), 90, np.uint8)
    frames = [still] * 30 + [empty] * 15 + [rose[i % 2] for i in range(40)]
    source = write_frames(tmp_path / "camera", frames)
    settings = WorkerSettings(
        str(source),
        shared / "models" / door_pipeline.pack.name,
        enrolled,
        loop=LoopSettings(liveness_timeout_seconds=2.0, unknown_after_seconds=3.0),
    )
    snapshots = SnapshotStore(tmp_path / "snapshots", max_files=10)
    reads, events = await run_reader(FaceCameraReader("lobby-face", settings, snapshots=snapshots))
    assert reads == []
    assert [e.kind for e in events] == [OutcomeKind.SPOOF, OutcomeKind.UNKNOWN]
    assert [p.name.split("-", 1)[1] for p in snapshots.files()] == [
        "spoof-lobby-face.jpg",
        "unknown-lobby-face.jpg",
    ]


async def test_a_worker_that_cannot_start_leaves_the_reader_offline_and_gives_up(
    tmp_path: Path, shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MENWEI_SECRET_FACE_KEY", KEY_HEX)
    settings = WorkerSettings(
        str(tmp_path / "no-such-camera.mp4"), shared / "models" / "opencv_yunet_sface", tmp_path
    )
    reader = FaceCameraReader("gate-face", settings, backoff=(0.05, 0.1), max_fast_failures=2)
    conditions: list[tuple[str, ReaderCondition, bool]] = []
    reader.bind_condition(lambda rid, condition, active, _detail: conditions.append((rid, condition, active)))
    reads, _ = await run_reader(reader)
    assert reads == []
    assert not reader.online
    assert conditions == [("gate-face", ReaderCondition.OFFLINE, True)]  # reported once, not per retry


def test_snapshot_retention(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, max_files=3, max_age_seconds=100)
    for i in range(5):
        store.save("unknown-x", b"jpeg", at=1000.0 + i)
    assert len(store.files()) == 3
    store.save("unknown-x", b"jpeg", at=1200.0)
    assert [p.name for p in store.files()] == ["000000001200000-unknown-x.jpg"]
    assert (tmp_path / "000000001200000-unknown-x.jpg").stat().st_mode & 0o077 == 0
