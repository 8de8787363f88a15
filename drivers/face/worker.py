"""The face worker: a child process that owns the camera, the models and the gallery, and sends outcomes back.

Why a process: detection and embedding take tens of milliseconds of CPU per frame and onnxruntime holds the
GIL-free cores for itself; a model that hangs or crashes (a bad frame, out of memory) must not stall card,
QR or BLE decisions on the gateway's event loop. The parent (drivers.face.reader) only reads small messages
from a pipe, and restarts this process if it dies or stops sending heartbeats.

Messages to the parent: Ready (the pack in use and its license), drivers.face.loop.Outcome, Heartbeat (loop
statistics), Ended (a file or folder source ran out), Failed (cannot start: bad pack, no camera, no key).
Messages from the parent: "stop", "reload" (templates changed: rebuild the gallery).

Time: a live camera runs on the monotonic clock at up to `fps`; a file or folder source (the simulated camera
of tests, the demo and replays) runs as fast as it can on a synthetic clock of 1/fps per frame, so a
recorded approach gives the same outcomes on any machine.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from drivers.face.loop import LoopSettings, LoopStats
from edge.face.pipeline import Tuning

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    source: str  # device index ("0"), RTSP/HTTP URL, video file, image file or folder of images
    pack_dir: Path
    data_dir: Path  # where faces.db is
    manifest: str | None = None
    fps: float = 10.0
    tuning: Tuning = field(default_factory=Tuning)
    loop: LoopSettings = field(default_factory=LoopSettings)
    min_motion: float = 0.05  # liveness: edge.face.liveness.LandmarkMotion
    consenting: frozenset[str] | None = None  # people whose templates may be used; None: all stored
    antispoof_dir: Path | None = None  # MiniFASNet models: a second liveness signal (edge.face.antispoof)
    antispoof_threshold: float = 0.5


@dataclass(frozen=True, slots=True)
class Ready:
    pack: str
    description: str
    templates: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    stats: LoopStats


@dataclass(frozen=True, slots=True)
class Ended:
    frames: int


@dataclass(frozen=True, slots=True)
class Failed:
    reason: str


def worker_main(conn: Connection, settings: WorkerSettings) -> None:
    """Entry point of the child process."""
    with contextlib.suppress(EOFError, BrokenPipeError, ConnectionResetError):  # the parent went away
        _run(conn, settings)


def _run(conn: Connection, settings: WorkerSettings) -> None:
    from drivers.face.loop import FaceLoop
    from drivers.qr.camera import open_source
    from edge.errors import MenweiError
    from edge.face.antispoof import MiniFasnet
    from edge.face.gallery import Gallery
    from edge.face.liveness import AllOf, LandmarkMotion, LivenessCheck
    from edge.face.packs import load_pack
    from edge.face.pipeline import FacePipeline
    from edge.face.templates import TemplateStore
    from edge.heap import release_free_memory

    try:  # the camera first: a missing one fails in milliseconds, without loading the models each retry
        source = open_source(settings.source)
    except OSError as err:
        conn.send(Failed(str(err)))
        return
    try:
        pack = load_pack(settings.pack_dir, settings.manifest)
        pipeline = FacePipeline(pack, settings.tuning)
        store = TemplateStore.open(settings.data_dir)
    except (MenweiError, OSError) as err:
        source.close()
        conn.send(Failed(str(err)))
        return

    def build_gallery() -> Gallery:
        gallery = Gallery(pipeline.embedding_size, threads=settings.tuning.intra_op_threads)
        for t in store.load(pack.name):
            if settings.consenting is None or t.person_id in settings.consenting:
                gallery.add(t.face_id, t.person_id, t.embedding)
        return gallery

    gallery = build_gallery()
    release_free_memory()  # the decrypted templates are gone: give their pages back (edge/heap.py)
    liveness: LivenessCheck = LandmarkMotion(min_motion=settings.min_motion)
    if settings.antispoof_dir is not None:
        try:
            texture = MiniFasnet(settings.antispoof_dir, settings.antispoof_threshold, tuning=settings.tuning)
        except MenweiError as err:
            conn.send(Failed(str(err)))
            return
        liveness = AllOf((liveness, texture))
    loop = FaceLoop(pipeline, gallery, settings.loop, liveness)
    conn.send(Ready(pack.name, pack.describe(), len(gallery)))
    period = 1.0 / settings.fps
    started = time.monotonic()
    last_beat = 0.0
    frames = 0
    try:
        while True:
            if conn.poll():
                command = conn.recv()
                if command == "stop":
                    return
                if command == "reload":
                    loop.gallery = build_gallery()
                    release_free_memory()
            tick = time.monotonic()
            try:
                frame = source.read()
            except OSError as err:  # a live camera stopped: the parent restarts us with backoff
                conn.send(Failed(f"camera: {err}"))
                return
            if frame is None:
                conn.send(Heartbeat(loop.stats))  # the last frames' figures, which no beat carried yet
                conn.send(Ended(frames))
                return
            now = tick - started if source.live else frames * period
            frames += 1
            for outcome in loop.process(frame, now):
                conn.send(outcome)
            if tick - last_beat >= HEARTBEAT_SECONDS:
                conn.send(Heartbeat(loop.stats))
                last_beat = tick
            if source.live:
                time.sleep(max(0.0, period - (time.monotonic() - tick)))
    finally:
        source.close()
        store.close()
