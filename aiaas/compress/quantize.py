"""int8 quantization of an ONNX model with onnxruntime.quantization.

Dynamic: weights int8 ahead of time, activations quantized per batch at run time;
no data needed. Static: weights and activations int8 in QDQ form, activation
ranges calibrated on the user's data. ONNX Runtime's dynamic quantizer has no
Gemm kernel, and torch exports every 2-D Linear as Gemm, so Gemms are rewritten
as MatMul + Add first or nothing of an MLP would be quantized.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime import quantization as ortq

from aiaas.compress.progress import progress_bar
from aiaas.errors import InvalidArgument

CALIBRATION_METHODS = {
    "minmax": ortq.CalibrationMethod.MinMax,
    "entropy": ortq.CalibrationMethod.Entropy,
    "percentile": ortq.CalibrationMethod.Percentile,
}
#: Calibration batch: big enough to be quick, small enough for Entropy's histograms.
CALIBRATION_BATCH = 16


def quantize_dynamic(
    source: Path,
    destination: Path,
    *,
    per_channel: bool = True,
    exclude_ops: Sequence[str] = (),
    exclude_nodes: Sequence[str] = (),
) -> Path:
    """int8 weights (per output channel where ONNX Runtime supports it)."""
    model = gemm_to_matmul(name_nodes(onnx.load(str(source))))
    ops = [op for op in ("MatMul", "Conv", "Gather", "Attention") if op not in set(exclude_ops)]
    _check_nodes(model, exclude_nodes)
    with tempfile.TemporaryDirectory(prefix="aiaas-quant-") as workdir:
        prepared = Path(workdir) / "prepared.onnx"
        onnx.save_model(model, str(prepared))
        with _quiet_root_logger():
            ortq.quantize_dynamic(
                prepared, destination, op_types_to_quantize=ops, per_channel=per_channel,
                weight_type=ortq.QuantType.QInt8, nodes_to_exclude=list(exclude_nodes),
                extra_options={"MatMulConstBOnly": True},
            )  # fmt: skip
    return destination


def quantize_static(
    source: Path,
    destination: Path,
    calibration: Mapping[str, np.ndarray],
    *,
    method: str = "minmax",
    per_channel: bool = True,
    exclude_ops: Sequence[str] = (),
    exclude_nodes: Sequence[str] = (),
) -> Path:
    """QDQ int8 (signed activations and weights: ONNX Runtime's recommended S8S8 on x86)."""
    if method not in CALIBRATION_METHODS:
        raise InvalidArgument(
            f"calibration method '{method}': use one of {', '.join(CALIBRATION_METHODS)}"
        )
    model = name_nodes(onnx.load(str(source)))
    _check_nodes(model, exclude_nodes)
    _check_calibration(model, calibration)
    ops = [op for op in ortq.registry.QDQRegistry if op not in set(exclude_ops)]
    with tempfile.TemporaryDirectory(prefix="aiaas-quant-") as workdir:
        named, prepared = Path(workdir) / "named.onnx", Path(workdir) / "prepared.onnx"
        onnx.save_model(model, str(named))
        ortq.quant_pre_process(str(named), str(prepared), skip_symbolic_shape=True)
        with _quiet_root_logger():
            ortq.quantize_static(
                prepared, destination, _Reader(calibration), quant_format=ortq.QuantFormat.QDQ,
                op_types_to_quantize=ops, per_channel=per_channel,
                activation_type=ortq.QuantType.QInt8, weight_type=ortq.QuantType.QInt8,
                nodes_to_exclude=list(exclude_nodes), calibrate_method=CALIBRATION_METHODS[method],
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )  # fmt: skip
    return destination


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantizers warn on the root logger about what is deliberate here: no
    pre-processing for dynamic (it would undo the Gemm rewrite: ONNX Runtime's basic
    fusions turn MatMul + Add back into Gemm) and 1-D LayerNorm weights left per tensor."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def int8_node_count(path: Path) -> int:
    """Nodes that compute in or convert to int8: the proof that quantization happened."""
    kinds = {
        "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "QuantizeLinear",
        "DequantizeLinear", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm",
        "QLinearMatMul", "QLinearConv",
    }  # fmt: skip
    return sum(node.op_type in kinds for node in onnx.load(str(path)).graph.node)


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed or duplicate-named node a unique name, in place.

    ONNX allows unnamed nodes, but the quantizers name the nodes they add after the
    node they replace: two unnamed MatMuls both become ``_MatMul_quant`` and ONNX
    Runtime refuses the result. Named nodes keep their names (``--exclude-node``).
    """
    taken = {node.name for node in model.graph.node if node.name}
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if node.name and node.name not in seen:
            seen.add(node.name)
            continue
        stem = f"{node.name or node.op_type}_{index}"
        name, suffix = stem, 0
        while name in taken or name in seen:
            suffix += 1
            name = f"{stem}_{suffix}"
        node.name = name
        seen.add(name)
    return model


def gemm_to_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite Gemm(A, B, C) with constant B, alpha = beta = 1, no transA as MatMul + Add."""
    initializers = {init.name: init for init in model.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        attributes = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
        plain = attributes.get("alpha", 1.0) == 1.0 and attributes.get("beta", 1.0) == 1.0
        if (
            node.op_type != "Gemm"
            or not plain
            or attributes.get("transA", 0)
            or (node.input[1] not in initializers)
        ):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if attributes.get("transB", 0):
            weight = weight.T
        weight_name = f"{node.input[1]}_matmul"
        model.graph.initializer.append(
            numpy_helper.from_array(np.ascontiguousarray(weight), weight_name)
        )
        has_bias = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(
            helper.make_node(
                "MatMul", [node.input[0], weight_name], [product], name=f"{node.name}_MatMul"
            )
        )
        if has_bias:
            nodes.append(
                helper.make_node(
                    "Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_Add"
                )
            )
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


class _Reader(ortq.CalibrationDataReader):  # type: ignore[misc]
    """Feeds the calibration arrays in batches, with a progress bar."""

    def __init__(self, calibration: Mapping[str, np.ndarray]) -> None:
        self.total = len(next(iter(calibration.values())))
        self.arrays = dict(calibration)
        self.batches = self._batches()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        with progress_bar("calibrating", self.total) as advance:
            for start in range(0, self.total, CALIBRATION_BATCH):
                batch = {
                    name: array[start : start + CALIBRATION_BATCH]
                    for name, array in self.arrays.items()
                }
                advance(len(next(iter(batch.values()))))
                yield batch

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def _check_nodes(model: onnx.ModelProto, names: Sequence[str]) -> None:
    present = {node.name for node in model.graph.node}
    unknown = [name for name in names if name not in present]
    if unknown:
        raise InvalidArgument(f"--exclude-node: the model has no node named {', '.join(unknown)}")


def _check_calibration(model: onnx.ModelProto, calibration: Mapping[str, np.ndarray]) -> None:
    initializers = {init.name for init in model.graph.initializer}
    wanted = [value.name for value in model.graph.input if value.name not in initializers]
    missing = [name for name in wanted if name not in calibration]
    if missing:
        raise InvalidArgument(
            f"--calibration: no array for model input {', '.join(repr(m) for m in missing)} "
            f"(the file has {', '.join(repr(n) for n in calibration)})"
        )
