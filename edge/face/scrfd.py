"""SCRFD face detection (the insightface pack's detector) on a bare onnxruntime session.

Why our own decoding: the library's loader imports its whole package (scipy, scikit-image: ~38 MB in the
face worker) to run what is a short piece of arithmetic around one session.

What the network gives: for each feature stride s (8, 16, 32), on a grid of (H/s) x (W/s) cells with A
anchors per cell (row-major, anchors innermost), a face score, four distances (left, top, right, bottom)
from the cell's corner point (x*s, y*s) to the box edges and five landmark offsets (dx, dy) from that
point, all in units of s. The image goes in letterboxed: scaled to fit the square input keeping its aspect
ratio, padded with black at the right and bottom, RGB, (pixel - 127.5) / 128. Overlapping boxes are reduced
by greedy non-maximum suppression (IoU > 0.4) in score order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import onnxruntime

INPUT_MEAN = 127.5
INPUT_STD = 128.0
NMS_IOU = 0.4

Detections = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]


def strides_for(outputs: int) -> tuple[int, ...]:
    """Feature strides of an SCRFD graph with landmarks, from its output count (score, box, landmarks each)."""
    if outputs == 9:
        return (8, 16, 32)
    if outputs == 15:
        return (8, 16, 32, 64, 128)
    raise ValueError(f"not an SCRFD detector with landmarks: {outputs} outputs (expected 9 or 15)")


def nms(
    boxes: npt.NDArray[np.floating[Any]], scores: npt.NDArray[np.floating[Any]], iou: float = NMS_IOU
) -> list[int]:
    """Indices of the boxes (x1, y1, x2, y2) kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]))
        h = np.maximum(0.0, np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]))
        inter = w * h
        union = areas[i] + areas[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou]
    return keep


class Scrfd:
    """One SCRFD graph with landmarks on an onnxruntime session, run at a fixed square input size."""

    def __init__(
        self, path: str, options: onnxruntime.SessionOptions, input_size: int, threshold: float
    ) -> None:
        import onnxruntime

        self._session = onnxruntime.InferenceSession(
            path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]
        self._strides = strides_for(len(self._outputs))
        self._size = input_size
        self._threshold = threshold
        self._centres: dict[tuple[int, int], npt.NDArray[np.float32]] = {}

    def _anchor_points(self, stride: int, count: int) -> npt.NDArray[np.float32]:
        """The (x, y) point of each of `count` predictions at `stride`: cells row-major, anchors innermost."""
        key = (stride, count)
        points = self._centres.get(key)
        if points is None:
            cells = (self._size // stride) ** 2
            if cells == 0 or count % cells:
                raise ValueError(f"stride {stride}: {count} predictions for {cells} cells")
            side = self._size // stride
            ys, xs = np.divmod(np.arange(cells, dtype=np.float32), side)
            grid = np.stack([xs, ys], axis=1) * stride
            points = np.repeat(grid, count // cells, axis=0).astype(np.float32)
            self._centres[key] = points
        return points

    def detect(self, image: npt.NDArray[Any]) -> Detections:
        """Boxes (Nx4: x1, y1, x2, y2), scores (N) and landmarks (Nx5x2) in `image`'s pixels, best first."""
        import cv2

        h, w = image.shape[:2]
        if h > w:  # the long side fills the input exactly; the short side is rounded down
            new_h, new_w = self._size, max(1, int(self._size * w / h))
        else:
            new_w, new_h = self._size, max(1, int(self._size * h / w))
        scale = np.array([new_w / w, new_h / h], dtype=np.float32)  # each axis its own (the rounding)
        canvas = np.zeros((self._size, self._size, 3), dtype=np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
        blob = cv2.dnn.blobFromImage(
            canvas,
            1.0 / INPUT_STD,
            (self._size, self._size),
            (INPUT_MEAN, INPUT_MEAN, INPUT_MEAN),
            swapRB=True,
        )
        outs = self._session.run(self._outputs, {self._input: blob})
        n = len(self._strides)
        all_boxes, all_scores, all_points = [], [], []
        for k, stride in enumerate(self._strides):
            scores = np.asarray(outs[k], dtype=np.float32).reshape(-1)
            dist = np.asarray(outs[k + n], dtype=np.float32).reshape(-1, 4) * stride
            offs = np.asarray(outs[k + 2 * n], dtype=np.float32).reshape(-1, 5, 2) * stride
            hit = scores >= self._threshold
            if not hit.any():
                continue
            centre = self._anchor_points(stride, scores.shape[0])[hit]
            d = dist[hit]
            all_boxes.append(np.concatenate([centre - d[:, :2], centre + d[:, 2:]], axis=1))
            all_scores.append(scores[hit])
            all_points.append(centre[:, None, :] + offs[hit])
        if not all_scores:
            return np.empty((0, 4), np.float32), np.empty(0, np.float32), np.empty((0, 5, 2), np.float32)
        boxes = np.concatenate(all_boxes) / np.tile(scale, 2)
        scores_all = np.concatenate(all_scores)
        points = np.concatenate(all_points) / scale
        keep = nms(boxes, scores_all)
        return (
            boxes[keep].astype(np.float32),
            scores_all[keep].astype(np.float32),
            points[keep].astype(np.float32),
        )
