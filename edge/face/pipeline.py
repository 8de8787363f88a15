"""One small interface over both model packs: detect faces, align one to the recognizer's 112x112 crop, embed it.

Why one interface: the insightface pack (SCRFD + ArcFace MobileFaceNet) is the reference for accuracy, but its
weights are non-commercial; the OpenCV pack (YuNet + SFace) is license-clean. Enrolment, the gallery and the
camera loop must not care which one runs, so they see only `FacePipeline`.

- SCRFD (edge/face/scrfd.py) and both recognizers run on onnxruntime sessions we build (thread counts from
  config, intra-op spinning off: two sessions spinning on two cores slow each other down). The insightface
  package is not imported at run time: it pulls scipy and scikit-image (~38 MB) into the face worker.
- YuNet cannot be loaded by insightface; it runs through `cv2.FaceDetectorYN`. Its five landmarks come in the
  same order as SCRFD's (eyes, nose, mouth corners, image-left first), so one alignment serves both.
- Alignment is a least-squares similarity transform of the five landmarks onto the ArcFace 112x112 template
  (edge/face/align.py), which is also the template SFace was trained on.
- Embeddings come back L2-normalised float32, so cosine similarity is a dot product.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from edge.face.align import ALIGNED_SIZE, align_face
from edge.face.errors import PackError, PackProblem, QualityError, QualityProblem
from edge.face.packs import ModelPack

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

Image = npt.NDArray[Any]  # BGR uint8, HxWx3, as OpenCV reads it (OpenCV's own stubs type it loosely)
Embedding = npt.NDArray[np.float32]  # shape (D,), unit length


def read_image(path: Path) -> Image:
    """A photo as a BGR image; QualityError(UNREADABLE) for a missing, corrupt or non-image file."""
    import cv2

    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise QualityError(QualityProblem.UNREADABLE, f"{path}: {err.strerror}") from err
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise QualityError(QualityProblem.UNREADABLE, f"{path}: not an image OpenCV can decode")
    return np.asarray(image, dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class Face:
    """A detected face: box (x1, y1, x2, y2) in image pixels, detector score, five landmarks (5x2)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: npt.NDArray[np.float32]

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        """The smaller side of the box: how big the face is (a proxy for its distance from the camera)."""
        return min(self.width, self.height)

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)


@dataclass(frozen=True, slots=True)
class Tuning:
    """onnxruntime / OpenCV threading for a small CPU."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    allow_spinning: bool = False


class _Detector(Protocol):
    def detect(self, image: Image) -> list[Face]: ...


def session_options(tuning: Tuning) -> onnxruntime.SessionOptions:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = tuning.intra_op_threads
    options.inter_op_num_threads = tuning.inter_op_threads
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if tuning.allow_spinning else "0")
    options.log_severity_level = 3  # the int8 models carry unused initializers; onnxruntime warns on each
    return options


class _Scrfd:
    def __init__(self, pack: ModelPack, tuning: Tuning) -> None:
        from edge.face.scrfd import Scrfd

        spec = pack.manifest.detector
        self._model = Scrfd(
            str(pack.detector_path), session_options(tuning), spec.input_size, spec.score_threshold
        )

    def detect(self, image: Image) -> list[Face]:
        boxes, scores, points = self._model.detect(image)
        faces = []
        for i in range(boxes.shape[0]):
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            faces.append(Face((x1, y1, x2, y2), float(scores[i]), points[i]))
        return faces


class _Yunet:
    def __init__(self, pack: ModelPack, tuning: Tuning) -> None:
        import cv2

        spec = pack.manifest.detector
        cv2.setNumThreads(tuning.intra_op_threads)
        self._max_side = spec.input_size
        self._model: Any = cv2.FaceDetectorYN.create(
            str(pack.detector_path), "", (spec.input_size, spec.input_size), spec.score_threshold, 0.3, 5000
        )
        self._input: tuple[int, int] = (0, 0)

    def detect(self, image: Image) -> list[Face]:
        import cv2

        h, w = image.shape[:2]
        scale = min(1.0, self._max_side / max(h, w))
        small = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)))
        size = (small.shape[1], small.shape[0])
        if size != self._input:
            self._model.setInputSize(size)
            self._input = size
        _, rows = self._model.detect(small)
        faces: list[Face] = []
        if rows is None:
            return faces
        for row in rows:
            x, y, bw, bh = (float(v) / scale for v in row[:4])
            points = (row[4:14].reshape(5, 2) / scale).astype(np.float32)
            faces.append(Face((x, y, x + bw, y + bh), float(row[14]), points))
        return faces


def _recognizer_graph(path: Path) -> str | bytes:
    """The recognizer's file, or its graph with the large dequantized layers split (edge/face/weights.py)."""
    import onnx

    from edge.face.weights import split_dequantized_gemms

    model = onnx.load(str(path))
    if not split_dequantized_gemms(model):
        return str(path)
    log.info("%s: its large weight-quantized layer runs in parts (less memory per embedding)", path.name)
    graph: bytes = model.SerializeToString()
    return graph


class _Recognizer:
    """An ArcFace-style recognizer: a 112x112 aligned crop in, one embedding out. The crop goes in as RGB,
    (pixel - mean) / std, with the manifest's mean and std (SFace takes raw 0-255 values, ArcFace +-1)."""

    def __init__(self, pack: ModelPack, tuning: Tuning) -> None:
        import onnxruntime

        spec = pack.manifest.recognizer
        graph = _recognizer_graph(pack.recognizer_path)
        self._session = onnxruntime.InferenceSession(
            graph, sess_options=session_options(tuning), providers=["CPUExecutionProvider"]
        )
        if isinstance(graph, bytes) and getattr(self._session, "_model_bytes", None) is graph:
            # onnxruntime's Python session keeps a model given as bytes for as long as it lives (~11 MB here;
            # its own comment calls that bad), only to rebuild itself with other providers, which we never do.
            self._session._model_bytes = None
        del graph
        first = self._session.get_inputs()[0]
        self._input: str = first.name
        self._output: str = self._session.get_outputs()[0].name
        self._mean = float(spec.input_mean)
        self._scale = 1.0 / float(spec.input_std)
        shape = list(first.shape)
        if (
            len(shape) != 4
            or shape[1] != 3
            or any(isinstance(d, int) and d != ALIGNED_SIZE for d in shape[2:])
        ):
            raise ValueError(f"recognizer input is {shape}, expected (N, 3, {ALIGNED_SIZE}, {ALIGNED_SIZE})")

    def embed(self, aligned: Image) -> npt.NDArray[np.float32]:
        import cv2

        blob = cv2.dnn.blobFromImage(
            aligned,
            self._scale,
            (ALIGNED_SIZE, ALIGNED_SIZE),
            (self._mean, self._mean, self._mean),
            swapRB=True,
        )
        out = self._session.run([self._output], {self._input: blob})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)


class FacePipeline:
    """detect -> align -> embed for one verified model pack. Not thread-safe: one per worker."""

    def __init__(self, pack: ModelPack, tuning: Tuning | None = None) -> None:
        tuning = tuning or Tuning()
        self.pack = pack
        spec = pack.manifest.recognizer
        try:
            self._detector: _Detector = (
                _Scrfd(pack, tuning) if pack.manifest.detector.kind == "scrfd" else _Yunet(pack, tuning)
            )
            self._recognizer = _Recognizer(pack, tuning)
        except (OSError, RuntimeError, ValueError) as err:  # onnxruntime and OpenCV raise these on bad models
            raise PackError(PackProblem.LOAD_FAILED, f"{pack.name}: {err}") from err
        probe = self.embed(np.zeros((ALIGNED_SIZE, ALIGNED_SIZE, 3), np.uint8))
        if probe.shape != (spec.embedding_size,):
            raise PackError(
                PackProblem.LOAD_FAILED,
                f"{pack.name}: recognizer gives {probe.shape[0]} values, manifest says {spec.embedding_size}",
            )
        log.info("%s loaded (%d threads per session)", pack.describe(), tuning.intra_op_threads)

    @property
    def embedding_size(self) -> int:
        return self.pack.manifest.recognizer.embedding_size

    def detect(self, image: Image) -> list[Face]:
        """Faces in a BGR image, largest first."""
        return sorted(self._detector.detect(image), key=lambda f: f.width * f.height, reverse=True)

    def align(self, image: Image, face: Face) -> Image:
        return align_face(image, face.landmarks, ALIGNED_SIZE)

    def embed(self, aligned: Image) -> Embedding:
        raw = self._recognizer.embed(aligned)
        norm = float(np.linalg.norm(raw))
        return raw / norm if norm > 0 else raw

    def embed_face(self, image: Image, face: Face) -> Embedding:
        return self.embed(self.align(image, face))
