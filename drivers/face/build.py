"""Face-camera readers from the config: the [face] section plus each [[readers]] entry of type "face-camera".

Kept out of edge.devices so that file only gains one call, and so the check for the `vision` extra (missing
libraries are a ConfigError at start-up, not a crash in the worker later) sits beside the driver it serves.
"""

from __future__ import annotations

import importlib.util

from drivers.face.loop import LoopSettings
from drivers.face.reader import FaceCameraReader
from drivers.face.snapshots import SNAPSHOT_DIR, SnapshotStore
from drivers.face.worker import WorkerSettings
from drivers.reader import Reader
from edge.config import FaceCameraReader as FaceCameraConfig
from edge.config import GatewayConfig
from edge.errors import ConfigError
from edge.face.pipeline import Tuning


def face_readers(config: GatewayConfig) -> dict[str, Reader]:
    cameras = [r for r in config.readers if isinstance(r, FaceCameraConfig)]
    face = config.face
    if not cameras or face is None:
        return {}
    missing = [m for m in ("cv2", "onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"face-camera readers need {', '.join(missing)}, which is not installed "
            "(install menwei with the 'vision' extra)"
        )
    data_dir = config.gateway.data_dir
    snapshots = SnapshotStore(
        data_dir / SNAPSHOT_DIR,
        max_files=face.snapshots_keep,
        max_age_seconds=face.snapshots_max_age_days * 86400,
    )
    loop = LoopSettings(
        min_face_px=face.min_face_px,
        agree_frames=face.agree_frames,
        cooldown_seconds=face.cooldown_seconds,
        unknown_after_seconds=face.unknown_after_seconds,
        match_threshold=face.match_threshold,
        margin=face.margin,
    )
    readers: dict[str, Reader] = {}
    for camera in cameras:
        settings = WorkerSettings(
            source=str(camera.source),
            pack_dir=face.pack_dir,
            data_dir=data_dir,
            manifest=face.manifest,
            fps=camera.fps,
            tuning=Tuning(intra_op_threads=face.threads),
            loop=loop,
            min_motion=face.min_motion,
            antispoof_dir=face.antispoof_dir,
            antispoof_threshold=face.antispoof_threshold,
        )
        readers[camera.id] = FaceCameraReader(camera.id, settings, snapshots=snapshots)
    return readers
