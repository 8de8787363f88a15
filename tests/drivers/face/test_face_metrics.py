"""Face pipeline timings on the metrics endpoint: a face reader's worker process (real models, a simulated
camera) times detection, embedding, match and liveness in its loop, sends them with its heartbeats, and the
gateway's /metrics serves them per reader and stage; totals carry across a worker restart."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from drivers.face.loop import FACE_STAGES, STAGE_BUCKETS, LoopStats, StageTimes
from drivers.face.reader import FaceCameraReader
from drivers.face.worker import WorkerSettings
from edge.config import load_config
from edge.demo_data import demo_access_list
from edge.devices import build_devices
from edge.face.packs import load_pack
from edge.face.pipeline import FacePipeline, read_image
from edge.face.templates import TemplateStore
from edge.gateway import Gateway
from edge.ops.metrics import MetricsServer

ROOT = Path(__file__).resolve().parents[3]
KEY_HEX = "42" * 32
PACK = "insightface_s_int8"
Frame = Callable[..., np.ndarray]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_stage_timings_reach_the_endpoint(
    tmp_path: Path, shared: Path, make_frame: Frame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MENWEI_SECRET_FACE_KEY", KEY_HEX)
    pipeline = FacePipeline(load_pack(shared / "models" / PACK))
    faces = shared / "data" / "faces" / "obama"
    store = TemplateStore.open(tmp_path / "data", bytes.fromhex(KEY_HEX))
    image = read_image(faces / "obama.jpg")
    store.add("tpl-obama", "obama", PACK, pipeline.embed_face(image, pipeline.detect(image)[0]))
    store.close()
    empty = np.full((480, 640, 3), 90, np.uint8)
    photos = [faces / p for p in ("obama.jpg", "obama1.jpg", "obama2.jpg", "obama3.jpg")]
    frames = [empty] * 2 + [make_frame(pipeline, photos[i % 4]) for i in range(8)]
    camera = tmp_path / "camera"
    camera.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(camera / f"{i:04d}.png"), frame)

    cfg = load_config(ROOT / "config" / "demo.toml")
    cfg = cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"data_dir": tmp_path / "gw"})})
    devices = build_devices(cfg)
    face = FaceCameraReader(
        "lobby-face", WorkerSettings(str(camera), shared / "models" / PACK, tmp_path / "data")
    )
    devices.readers["lobby-face"] = face  # as build_devices adds a [[readers]] type = "face-camera"
    gw = Gateway(cfg, devices)
    await gw.start()
    server = MetricsServer(gw, "127.0.0.1", 0)
    server.start()
    try:
        await gw.replace_access_list(demo_access_list(1, datetime.now(UTC), "side-door", list(gw.site.doors)))
        await asyncio.wait_for(face.ended.wait(), 120)  # the folder ran out: the worker said so and ended
        m = await asyncio.to_thread(scrape, server.port)
    finally:
        await asyncio.to_thread(server.stop)
        await gw.stop()

    def count(stage: str) -> float:
        return m[("menwei_face_stage_seconds_count", (("reader", "lobby-face"), ("stage", stage)))]

    def total(stage: str) -> float:
        return m[("menwei_face_stage_seconds_sum", (("reader", "lobby-face"), ("stage", stage)))]

    assert 1 <= count("detection") <= len(frames)  # still frames skip the detector
    assert count("embedding") >= 3 and count("match") == count("embedding")  # one of each per tracked face
    assert count("liveness") >= 1  # the agreement of 3 frames asked the liveness check
    for stage in FACE_STAGES:
        assert total(stage) > 0, stage
        assert m[
            ("menwei_face_stage_seconds_bucket", (("le", "+Inf"), ("reader", "lobby-face"), ("stage", stage)))
        ] == count(stage)
    assert total("detection") / count("detection") < 10  # seconds: a real model, not a stuck clock


def test_loop_stats_add_up_across_worker_restarts() -> None:
    a, b = LoopStats(frames=3), LoopStats(frames=4, embedded=2)
    a.stages["detection"].observe(0.002)
    b.stages["detection"].observe(0.02)
    b.stages["detection"].observe(9.0)
    both = a.plus(b)
    assert both.frames == 7 and both.embedded == 2
    assert sum(both.stages["detection"].buckets) == 3
    assert both.stages["detection"].buckets[-1] == 1  # 9 s is past the last bound: +Inf
    assert both.stages["detection"].seconds == pytest.approx(9.022)
    assert len(StageTimes().buckets) == len(STAGE_BUCKETS) + 1
