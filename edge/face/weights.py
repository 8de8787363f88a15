"""Keep a weight-quantized recognizer's float weights small while it runs.

Why: the OpenCV pack's SFace (`…_int8bq.onnx`) stores its weights as int8 blocks and turns each one back into
float32 with a DequantizeLinear node on EVERY run. onnxruntime runs each of those right before the layer that
uses it and frees it after, so the small conv weights cost little; but the last fully connected layer's weight
is 128 x 50,176 values: 25.7 MB of float32 made per run, and the session's memory arena keeps the space (with
its power-of-two growth, +43 MB resident in the face worker after the first embedding, measured).

What: that layer, `Gemm(x, DequantizeLinear(W), b)` with W's rows as outputs (transB = 1), is split into parts
of a few output rows each, `Gemm(x, DequantizeLinear(W[rows]))`, joined by a Concat and followed by `+ b`.
Every output value is the same dot product of the same dequantized numbers, so the embedding does not change
(tests compare it); only one part's float weight (~3 MB) exists at a time. The model file on disk is not
touched (its sha-256 is checked by the pack loader); the rewrite happens in memory when the session is built.
Graphs without such a layer are returned unchanged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

# A layer is split when its float weight would be larger than this; each part stays below it.
SPLIT_ABOVE_BYTES = 4 << 20


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def split_dequantized_gemms(model: onnx.ModelProto, limit: int = SPLIT_ABOVE_BYTES) -> int:
    """Rewrite, in place, every Gemm whose weight is a DequantizeLinear of initializers quantized along the
    input axis and larger than `limit` bytes as float32. Returns how many layers were split."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    split = 0
    for gemm in list(graph.node):
        if gemm.op_type != "Gemm" or len(gemm.input) < 2:
            continue
        a = _attrs(gemm)
        if a.get("transA", 0) != 0 or a.get("transB", 0) != 1 or a.get("beta", 1.0) != 1.0:
            continue
        dq = producer.get(gemm.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or consumers.get(gemm.input[1], 0) != 1:
            continue
        if len(dq.input) != 3 or not all(name in inits for name in dq.input):
            continue
        dq_attrs = _attrs(dq)
        q, scales, zero = (numpy_helper.to_array(inits[name]) for name in dq.input)
        # Blocked (or per-output-row) quantization along the input axis: every array has the output rows first.
        if dq_attrs.get("axis", 1) != 1 or q.ndim != 2 or scales.ndim != 2 or zero.shape != scales.shape:
            continue
        rows, cols = q.shape
        if scales.shape[0] != rows or rows * cols * 4 <= limit:
            continue
        per_part = max(1, limit // (cols * 4))
        outputs = []
        nodes = []
        prefix = f"{gemm.name or gemm.output[0]}__part"
        for k, start in enumerate(range(0, rows, per_part)):
            part = slice(start, min(rows, start + per_part))
            names = [f"{prefix}{k}_{role}" for role in ("q", "scale", "zero", "w", "y")]
            for name, array in zip(names[:3], (q[part], scales[part], zero[part]), strict=True):
                graph.initializer.append(numpy_helper.from_array(array.copy(), name))
            nodes.append(
                helper.make_node("DequantizeLinear", names[:3], [names[3]], name=names[3], **dq_attrs)
            )
            nodes.append(
                helper.make_node(
                    "Gemm",
                    [gemm.input[0], names[3]],
                    [names[4]],
                    name=names[4],
                    alpha=a.get("alpha", 1.0),
                    transB=1,
                )
            )
            outputs.append(names[4])
        joined = f"{prefix}_joined"
        nodes.append(
            helper.make_node("Concat", outputs, [joined if len(gemm.input) > 2 else gemm.output[0]], axis=1)
        )
        if len(gemm.input) > 2 and gemm.input[2]:
            nodes.append(
                helper.make_node("Add", [joined, gemm.input[2]], [gemm.output[0]], name=f"{prefix}_bias")
            )
        graph.node.remove(dq)
        at = list(graph.node).index(gemm)  # the parts run where the layer ran: their inputs come before it
        graph.node.remove(gemm)
        for offset, node in enumerate(nodes):
            graph.node.insert(at + offset, node)
        inputs = {value.name: value for value in graph.input}
        for name in dq.input:
            if consumers.get(name, 0) == 1:
                graph.initializer.remove(inits[name])
                if name in inputs:  # old IR versions list initializers among the inputs too
                    graph.input.remove(inputs[name])
        log.debug("split %s (%d x %d) into %d parts", gemm.name, rows, cols, len(outputs))
        split += 1
    return split
