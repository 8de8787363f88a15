"""The 1:N gallery: every enrolled face embedding in one int8 matrix, searched with one matrix product.

Why this shape: a compound may enrol 100,000 faces on a box with 1-4 GB of RAM. At float32 a 512-value
embedding takes 2 KB, 205 MB for 100,000; quantised to 8 bits with one scale per row it takes 512 bytes, 51 MB,
and costs under 0.01 of cosine similarity. The product runs in onnxruntime's MatMulInteger (MLAS int8 GEMM,
about 9 ms for 100,000 x 512 on one x86 core), which numpy cannot do fast: numpy has no int8 BLAS and its
float16 product is 15x slower than this. The best few rows are then re-scored in float32 against the exact
query, so quantising the query costs nothing in the final score.

The decision rule: the best match must reach `threshold` and beat the best row of any *other* person by
`margin`. The margin turns a look-alike (two enrolled people both close to the face) into "no decision"
instead of a coin toss; the camera loop then waits for a better frame or the person uses a card.

For 512-value embeddings a first pass runs on a 128-value sketch of every row (a fixed random orthonormal
projection, which preserves inner products up to noise, Johnson-Lindenstrauss): it reads 13 MB instead of 51 MB
at 100,000 faces and keeps the best `candidates` rows, which are then scored on their full rows. It can only
cost a match whose true score the sketch underestimates by more than the gap to the 128th candidate (a false
reject, never a false accept: every final score is computed on the full row).

Rows are kept packed (removal moves the last row into the hole), so the matrix is always the first `len` rows.
Not thread-safe: one owner (the face worker) adds, removes and searches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.face.pipeline import Embedding

log = logging.getLogger(__name__)

_ZERO_POINT = 128  # rows are stored as uint8 = int8 + 128; MatMulInteger subtracts it back


class Outcome(StrEnum):
    MATCH = "match"
    BELOW_THRESHOLD = "below threshold"
    AMBIGUOUS = "ambiguous"  # two people within the margin of each other
    EMPTY = "gallery empty"


@dataclass(frozen=True, slots=True)
class SearchResult:
    outcome: Outcome
    score: float = -1.0
    face_id: str | None = None
    person_id: str | None = None
    runner_up: float = -1.0  # best score of any other person

    @property
    def matched(self) -> bool:
        return self.outcome is Outcome.MATCH


def quantise(vector: Embedding) -> tuple[npt.NDArray[np.int8], float]:
    scale = float(np.abs(vector).max()) / 127.0 or 1.0
    return np.clip(np.rint(vector / scale), -127, 127).astype(np.int8), scale


class _OrtProduct:
    """rows (N x D uint8, zero point 128) . query (D int8) -> N int32, in onnxruntime."""

    def __init__(self, dim: int, threads: int) -> None:
        import onnxruntime
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["rows", "query", "zero"], ["scores"])],
            "gallery",
            [
                helper.make_tensor_value_info("rows", TensorProto.UINT8, ["n", dim]),
                helper.make_tensor_value_info("query", TensorProto.INT8, [dim, 1]),
            ],
            [helper.make_tensor_value_info("scores", TensorProto.INT32, ["n", 1])],
            [helper.make_tensor("zero", TensorProto.UINT8, [], [_ZERO_POINT])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._ort: Any = onnxruntime
        self._session: Any = onnxruntime.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, rows: npt.NDArray[np.uint8], query: npt.NDArray[np.int8]) -> npt.NDArray[np.int32]:
        feeds = {
            "rows": self._ort.OrtValue.ortvalue_from_numpy(rows),  # no copy: wraps the numpy buffer
            "query": self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(query.reshape(-1, 1))),
        }
        out: npt.NDArray[np.int32] = self._session.run_with_ort_values(["scores"], feeds)[0].numpy()
        return out.reshape(-1)


def _numpy_product(rows: npt.NDArray[np.uint8], query: npt.NDArray[np.int8]) -> npt.NDArray[np.int32]:
    # Fallback without onnxruntime (tools, tests of the core): fine for small galleries only.
    product = (rows.astype(np.float32) - _ZERO_POINT) @ query.astype(np.float32)
    return product.astype(np.int32)


SKETCH_DIM = 128
CANDIDATES = 128


def _projection(dim: int) -> npt.NDArray[np.float32]:
    """A fixed (seeded) random matrix with orthonormal columns, dim x SKETCH_DIM, scaled so that sketches'
    inner products estimate the full ones."""
    gaussian = np.random.default_rng(20260301).standard_normal((dim, SKETCH_DIM))
    q, _ = np.linalg.qr(gaussian)
    return np.asarray(q * np.sqrt(dim / SKETCH_DIM), np.float32)


class Gallery:
    def __init__(
        self,
        dim: int,
        *,
        threads: int = 1,
        capacity: int = 1024,
        use_onnxruntime: bool = True,
        sketch: bool | None = None,
    ) -> None:
        self.dim = dim
        self._threads = threads
        self._use_ort = use_onnxruntime
        self._sketch_on = dim > SKETCH_DIM if sketch is None else sketch
        self._projection = _projection(dim) if self._sketch_on else np.empty((0, 0), np.float32)
        self._sketch = np.empty((capacity if self._sketch_on else 0, SKETCH_DIM), np.uint8)
        self._sketch_scales = np.empty(capacity if self._sketch_on else 0, np.float32)
        self._rows = np.empty((capacity, dim), np.uint8)
        self._scales = np.empty(capacity, np.float32)
        self._person_of_row = np.empty(capacity, np.int32)
        self._face_ids: list[str] = []
        self._people: list[str] = []
        self._person_index: dict[str, int] = {}
        self._rows_of_face: dict[str, list[int]] = {}
        self._product: Any = _numpy_product
        self._sketch_product: Any = _numpy_product
        self.with_threads(threads)

    def with_threads(self, threads: int) -> Gallery:
        """This gallery (same rows, no copy) searched with `threads` onnxruntime threads."""
        if self._use_ort:
            try:
                self._product = _OrtProduct(self.dim, threads)
                if self._sketch_on:
                    self._sketch_product = _OrtProduct(SKETCH_DIM, threads)
            except ImportError:
                self._use_ort = False
                log.warning("onnxruntime or onnx missing: the face gallery searches with numpy (slow)")
        return self

    def __len__(self) -> int:
        return len(self._face_ids)

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays (the matrix at its current capacity, scales, row owners)."""
        arrays = (self._rows, self._scales, self._person_of_row, self._sketch, self._sketch_scales)
        return int(sum(a.nbytes for a in arrays))

    def people(self) -> set[str]:
        return {self._people[i] for i in self._person_of_row[: len(self)]}

    def add(self, face_id: str, person_id: str, embedding: Embedding) -> None:
        """Add one embedding (unit length, `dim` values). A face id may own several rows (several photos)."""
        if embedding.shape != (self.dim,):
            raise ValueError(f"embedding has shape {embedding.shape}, gallery holds {self.dim} values")
        n = len(self)
        if n == self._rows.shape[0]:
            self._grow(max(1024, n * 2))
        q, scale = quantise(embedding)
        self._rows[n] = q.astype(np.int16) + _ZERO_POINT
        self._scales[n] = scale
        if self._sketch_on:
            sq, sscale = quantise(np.asarray(embedding @ self._projection, np.float32))
            self._sketch[n] = sq.astype(np.int16) + _ZERO_POINT
            self._sketch_scales[n] = sscale
        index = self._person_index.get(person_id)
        if index is None:
            index = self._person_index[person_id] = len(self._people)
            self._people.append(person_id)
        self._person_of_row[n] = index
        self._face_ids.append(face_id)
        self._rows_of_face.setdefault(face_id, []).append(n)

    def add_many(
        self, face_ids: list[str], person_ids: list[str], embeddings: npt.NDArray[np.float32]
    ) -> None:
        for face_id, person_id, embedding in zip(face_ids, person_ids, embeddings, strict=True):
            self.add(face_id, person_id, embedding)

    def remove_face(self, face_id: str) -> int:
        """Remove every row of a face id; returns how many."""
        rows = sorted(self._rows_of_face.get(face_id, []), reverse=True)
        for row in rows:
            self._remove_row(row)
        return len(rows)

    def remove_person(self, person_id: str) -> int:
        index = self._person_index.get(person_id)
        if index is None:
            return 0
        rows = np.flatnonzero(self._person_of_row[: len(self)] == index)
        face_ids = {self._face_ids[r] for r in rows}
        return sum(self.remove_face(f) for f in face_ids)

    def search(
        self, embedding: Embedding, *, threshold: float, margin: float, top_k: int = 8
    ) -> SearchResult:
        n = len(self)
        if n == 0:
            return SearchResult(Outcome.EMPTY)
        query = np.asarray(embedding, np.float32)
        if self._sketch_on and n > CANDIDATES:
            sq, sq_scale = quantise(np.asarray(query @ self._projection, np.float32))
            rough = self._sketch_product(self._sketch[:n], sq).astype(np.float32) * (
                self._sketch_scales[:n] * sq_scale
            )
            pool = np.argpartition(rough, n - CANDIDATES)[n - CANDIDATES :]
            rows, scales = self._rows[pool], self._scales[pool]  # 128 rows copied
        else:
            pool = np.arange(n)
            rows, scales = self._rows[:n], self._scales[:n]  # views: the whole matrix is never copied
        q, q_scale = quantise(query)
        coarse_pool = self._product(rows, q).astype(np.float32) * (scales * q_scale)
        coarse = np.full(n, -2.0, np.float32)
        coarse[pool] = coarse_pool
        k = min(top_k, len(pool))
        best = pool[np.argpartition(coarse_pool, len(pool) - k)[len(pool) - k :]] if k < len(pool) else pool
        # Re-score the few best rows in float32 against the exact query.
        exact = ((self._rows[best].astype(np.float32) - _ZERO_POINT) * self._scales[best, None]) @ query
        order = np.argsort(exact)[::-1]
        top = int(best[order[0]])
        score = float(exact[order[0]])
        owner = self._person_of_row[top]
        runner_up = -1.0
        for i in order[1:]:
            if self._person_of_row[best[i]] != owner:
                runner_up = float(exact[i])
                break
        else:
            if k < n:  # every candidate is the same person: take the best other row the passes saw
                others = coarse[self._person_of_row[:n] != owner]
                runner_up = float(others.max()) if others.size else -1.0
                runner_up = max(runner_up, -1.0)
        face_id, person_id = self._face_ids[top], self._people[owner]
        if score < threshold:
            outcome = Outcome.BELOW_THRESHOLD
        elif score - runner_up < margin:
            outcome = Outcome.AMBIGUOUS
        else:
            outcome = Outcome.MATCH
        return SearchResult(outcome, score, face_id, person_id, runner_up)

    def _grow(self, capacity: int) -> None:
        n = len(self)
        rows = np.empty((capacity, self.dim), np.uint8)
        rows[:n] = self._rows[:n]
        scales = np.empty(capacity, np.float32)
        scales[:n] = self._scales[:n]
        owners = np.empty(capacity, np.int32)
        owners[:n] = self._person_of_row[:n]
        self._rows, self._scales, self._person_of_row = rows, scales, owners
        if self._sketch_on:
            sketch = np.empty((capacity, SKETCH_DIM), np.uint8)
            sketch[:n] = self._sketch[:n]
            sketch_scales = np.empty(capacity, np.float32)
            sketch_scales[:n] = self._sketch_scales[:n]
            self._sketch, self._sketch_scales = sketch, sketch_scales

    def _remove_row(self, row: int) -> None:
        last = len(self) - 1
        face_id = self._face_ids[row]
        self._rows_of_face[face_id].remove(row)
        if not self._rows_of_face[face_id]:
            del self._rows_of_face[face_id]
        if row != last:
            moved = self._face_ids[last]
            self._rows[row] = self._rows[last]
            self._scales[row] = self._scales[last]
            self._person_of_row[row] = self._person_of_row[last]
            if self._sketch_on:
                self._sketch[row] = self._sketch[last]
                self._sketch_scales[row] = self._sketch_scales[last]
            self._face_ids[row] = moved
            rows = self._rows_of_face[moved]
            rows[rows.index(last)] = row
        self._face_ids.pop()
