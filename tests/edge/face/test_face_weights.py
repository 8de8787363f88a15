"""Splitting a weight-quantized Gemm into row parts: same outputs, on small graphs and on the real SFace model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.face.packs import load_pack
from edge.face.pipeline import FacePipeline, Tuning, read_image, session_options
from edge.face.weights import split_dequantized_gemms

SFACE = "opencv_yunet_sface"


def blocked_gemm(
    rows: int, cols: int, *, bias: bool = True, trans_b: int = 1, shared: bool = False, alpha: float = 1.0
) -> onnx.ModelProto:
    """y = x . DequantizeLinear(W, blocks of 16 along the input axis)^T (+ b), W int8 rows x cols."""
    rng = np.random.default_rng(rows * 1000 + cols)
    blocks = cols // 16
    inits = [
        numpy_helper.from_array(rng.integers(-127, 128, (rows, cols), dtype=np.int8), "wq"),
        numpy_helper.from_array(rng.uniform(0.001, 0.02, (rows, blocks)).astype(np.float32), "ws"),
        numpy_helper.from_array(rng.integers(-3, 4, (rows, blocks), dtype=np.int8), "wz"),
        numpy_helper.from_array(rng.normal(0, 1, rows).astype(np.float32), "b"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=1, block_size=16),
        helper.make_node(
            "Gemm", ["x", "w"] + (["b"] if bias else []), ["y"], name="fc", transB=trans_b, alpha=alpha
        ),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", rows])]
    if shared:  # the dequantized weight is used elsewhere too
        nodes.append(helper.make_node("Identity", ["w"], ["w_out"]))
        outputs.append(helper.make_tensor_value_info("w_out", TensorProto.FLOAT, [rows, cols]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", cols])], outputs, inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model


def run(model: onnx.ModelProto | str, feed: dict[str, np.ndarray]) -> np.ndarray:
    source = model if isinstance(model, str) else model.SerializeToString()
    session = onnxruntime.InferenceSession(
        source, sess_options=session_options(Tuning()), providers=["CPUExecutionProvider"]
    )
    return np.asarray(session.run(None, feed)[0])


@pytest.mark.parametrize(("rows", "bias", "alpha"), [(40, True, 1.0), (37, False, 1.0), (64, True, 0.5)])
def test_split_gives_the_same_outputs(rows: int, bias: bool, alpha: float) -> None:
    cols = 256
    x = np.random.default_rng(1).normal(0, 1, (3, cols)).astype(np.float32)
    model = blocked_gemm(rows, cols, bias=bias, alpha=alpha)
    before = run(model, {"x": x})
    limit = 10 * cols * 4  # parts of 10 rows: the last one shorter
    assert split_dequantized_gemms(model, limit) == 1
    onnx.checker.check_model(model)
    kinds = [n.op_type for n in model.graph.node]
    assert kinds.count("Gemm") == -(-rows // 10) and kinds.count("Concat") == 1
    assert "wq" not in {t.name for t in model.graph.initializer}  # the whole weight is gone, not duplicated
    np.testing.assert_allclose(run(model, {"x": x}), before, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "model",
    [
        blocked_gemm(400, 256, shared=True),  # weight used by another node too
        blocked_gemm(100, 256),  # small: at the limit
    ],
)
def test_graphs_that_are_left_alone(model: onnx.ModelProto) -> None:
    before = model.SerializeToString()
    assert split_dequantized_gemms(model, limit=256 * 4 * 100) == 0
    assert model.SerializeToString() == before


def test_untransposed_weight_is_left_alone() -> None:
    model = blocked_gemm(256, 256, trans_b=0)
    assert split_dequantized_gemms(model, limit=1024) == 0


def test_sface_embeddings_do_not_change(models_dir: Path, labelled_photos: list[tuple[str, Path]]) -> None:
    pack = load_pack(models_dir / SFACE)
    model = onnx.load(str(pack.recognizer_path))
    assert split_dequantized_gemms(model) == 1  # the 128 x 50,176 fully connected layer
    pipeline = FacePipeline(pack)  # builds its session from the split graph
    assert (
        getattr(pipeline._recognizer._session, "_model_bytes", None) is None
    )  # not kept for the session's life
    original = onnxruntime.InferenceSession(
        str(pack.recognizer_path), sess_options=session_options(Tuning()), providers=["CPUExecutionProvider"]
    )
    name = original.get_inputs()[0].name
    import cv2

    for _, path in labelled_photos[:6]:
        image = read_image(path)
        crop = pipeline.align(image, pipeline.detect(image)[0])
        blob = cv2.dnn.blobFromImage(crop, 1.0, (112, 112), (0, 0, 0), swapRB=True)
        reference = np.asarray(original.run(None, {name: blob})[0], np.float32).reshape(-1)
        reference /= np.linalg.norm(reference)
        ours = pipeline.embed(crop)
        np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_insightface_recognizer_has_nothing_to_split(models_dir: Path) -> None:
    pack = load_pack(models_dir / "insightface_s_int8")
    assert split_dequantized_gemms(onnx.load(str(pack.recognizer_path))) == 0
